"""Read a named member out of a downloaded file: a plain or gzipped file, a zip/wheel/jar (also one
nested inside another, like the Anserini jar inside the pyserini wheel) or a tar archive."""
from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from jsarag import InputError

_NESTED = (".jar", ".zip", ".whl")


def _find_in_zip(zf: zipfile.ZipFile, member: str, where: str) -> IO[bytes]:
    names = set(zf.namelist())
    if member in names:
        return zf.open(member)
    for n in sorted(names):
        if n.lower().endswith(_NESTED):
            inner = zipfile.ZipFile(io.BytesIO(zf.read(n)))
            if member in inner.namelist():
                return inner.open(member)
    raise InputError(f"{where}: no member {member!r} (also searched nested jars/zips)")


@contextlib.contextmanager
def open_binary(path: str | Path, member: str | None = None) -> Iterator[IO[bytes]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if member is None:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            yield f
        return
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            f = _find_in_zip(zf, member, str(path))
            with f:
                yield gzip.GzipFile(fileobj=f) if member.endswith(".gz") else f
        return
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            try:
                f = tf.extractfile(member)
            except KeyError:
                f = None
            if f is None:
                raise InputError(f"{path}: no member {member!r}")
            with f:
                yield gzip.GzipFile(fileobj=f) if member.endswith(".gz") else f
        return
    raise InputError(f"{path}: not a zip or tar archive, cannot read member {member!r}")


@contextlib.contextmanager
def open_text(path: str | Path, member: str | None = None) -> Iterator[IO[str]]:
    with open_binary(path, member) as f:
        yield io.TextIOWrapper(f, encoding="utf-8", newline="")


def where(path: str | Path, member: str | None) -> str:
    """How errors name a location: file, or file!member."""
    return f"{path}!{member}" if member else str(path)
