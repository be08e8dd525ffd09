"""Debian packages: the `deb` download kind (`apt-get download NAME=VERSION`) and reading the
files a .deb holds.

A .deb is an `ar` archive (magic `!<arch>\\n`) whose data.tar.{xz,zst,gz} holds the installed
files, named `./usr/...`. `dpkg-deb --fsys-tarfile` decompresses whichever one it is, so the
files are read from its stdout as one tar stream (`tarfile` mode `r|*`): one pass over the
package reads any number of members (`members`), and finding one member (`open_member`) stops as
soon as it is read. Member names are accepted with or without the leading `./`.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from jsarag import InputError

log = logging.getLogger("jsarag.download")
AR_MAGIC = b"!<arch>\n"


def is_deb(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(AR_MAGIC)) == AR_MAGIC


def fetch_deb(key: str, spec: dict, tmp: Path) -> str:
    """`apt-get download NAME=VERSION` into a fresh directory, the one .deb moved to `tmp`;
    returns how the source is named in errors. apt-get missing, no network or no such version:
    an InputError naming downloads.<key>."""
    name, version = spec["deb"], spec["version"]
    apt = shutil.which("apt-get")
    if apt is None:
        raise InputError(f"downloads.{key}: the deb kind needs apt-get (a Debian or Ubuntu system) to fetch {name}={version}; "
                         f"elsewhere download the .deb by hand and give it as a path: entry (path: FILE.deb, sha256: ...)")
    with tempfile.TemporaryDirectory(prefix=f"jsarag-dl-{key}-") as d:
        # As root, apt fetches as the user _apt, who cannot write into this 0700 directory; apt then warns
        # ("Download is performed unsandboxed as root") and fetches as root: harmless, so the warning stays at debug level.
        cmd = [apt, "download", f"{name}={version}"]
        log.info("downloads.%s: %s", key, " ".join(cmd))
        res = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
        files = [p for p in Path(d).iterdir() if p.is_file()]
        if res.stderr.strip():
            log.debug("downloads.%s: apt-get: %s", key, res.stderr.strip())
        if res.returncode != 0 or len(files) != 1:
            tail = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if "unsandboxed" not in ln][-3:]
            got = f"; it left {len(files)} files" if res.returncode == 0 else ""
            raise InputError(f"downloads.{key}: apt-get download {name}={version} failed (exit {res.returncode}{got}; "
                             f"no network, no such version, or apt-get update not run?): {' | '.join(tail)}")
        shutil.move(str(files[0]), tmp)
    return f"apt-get download {name}={version}"


def _norm(name: str) -> str:
    """`./usr/x`, `usr/x` and `/usr/x` are one name: `usr/x`."""
    return os.path.normpath(name.lstrip("/"))


@contextlib.contextmanager
def _tar_stream(path: str | Path) -> Iterator[tarfile.TarFile]:
    """The .deb's data.tar as a stream (dpkg-deb --fsys-tarfile); a failing dpkg-deb names the file."""
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        raise InputError(f"{path}: reading a .deb needs dpkg-deb (the dpkg package), which is not on PATH")
    proc = subprocess.Popen([dpkg, "--fsys-tarfile", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    bad = None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tf:
            yield tf
    except tarfile.TarError as e:
        bad = e
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()  # stopped early (the member was found, or an error): dpkg-deb would block on the closed pipe
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        rc = proc.wait()
    if bad is not None or rc not in (0, -9):  # -9: killed by us once we had read what we wanted
        raise InputError(f"{path}: not a readable .deb (dpkg-deb --fsys-tarfile exit {rc}): {err or bad}")


def members(path: str | Path, want: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(name without `./`, bytes) of every regular file whose name `want` accepts, in archive
    order, in one pass over the package."""
    with _tar_stream(path) as tf:
        for m in tf:
            name = _norm(m.name)
            if m.isfile() and want(name):
                f = tf.extractfile(m)
                yield name, f.read()


@contextlib.contextmanager
def open_member(path: str | Path, member: str) -> Iterator[io.BytesIO]:
    """One file of the package, by its name with or without `./`; the stream stops once it is read."""
    want = _norm(member)
    with contextlib.closing(members(path, lambda n: n == want)) as found:
        hit = next(found, None)
    if hit is None:
        raise InputError(f"{path}: no member {member!r} in the .deb's data.tar")
    yield io.BytesIO(hit[1])


def under(prefix: str) -> Callable[[str], bool]:
    """A `want` for `members`: the files under the directory `prefix` (with or without `./`)."""
    p = _norm(prefix).rstrip("/") + "/"
    return lambda n: n.startswith(p)
