"""File I/O shared by every stage: validated JSONL streaming and atomic writes.

Atomic writes go to a temp name beside the output, `.NAME.~TAG.HOST.PID.RANDOM.tmp`, renamed onto
NAME only on success. The name says whose temp file it is: when a job starts writing NAME, the temp
files of NAME left by a killed job (another host's, or a dead process's on this host) are removed
first, so a SIGKILL'd job's temp file goes with its rerun. A SIGTERM'd job removes its own
(`jsarag.cli.run_cli` turns SIGTERM into an exception, so the `finally` below runs).
"""
from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import secrets
import shutil
import socket
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from jsarag import InputError

log = logging.getLogger("jsarag.io")
# what a truncated or corrupt gzip stream raises while it is read
COMPRESSED_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:32] or "host"


def temp_name(out: Path, tag: str = "w") -> Path:
    """A fresh temp path beside `out` that names its output, its use (`tag`), host and process."""
    return out.parent / f".{out.name}.~{tag}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


_TEMP = re.compile(r"^\.(?P<name>.+)\.~(?P<tag>[a-z]+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temps(out: str | os.PathLike) -> list[Path]:
    """Temp files and folders of `out` left by a killed writer: those of another host (a workflow
    runs one job per output at a time) or of a process of this host that is gone."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    found = []
    for p in out.parent.glob(f".{glob_escape(out.name)}.~*.tmp"):
        m = _TEMP.match(p.name)
        if not m or m["name"] != out.name:
            continue
        pid = int(m["pid"])
        if m["host"] != _host() or (pid != os.getpid() and not _alive(pid)):
            found.append(p)
    return found


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def remove_stale_temps(out: str | os.PathLike) -> list[Path]:
    """Remove the temp files of `out` that a killed job left behind; returns what was removed."""
    gone = stale_temps(out)
    for p in gone:
        log.warning("removing %s, left by a killed job", p)
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    return gone


def _follow_umask(root: Path) -> None:
    """Give every file under `root` the umask's permissions (some writers, e.g. safetensors, make 0600)."""
    mask = current_umask()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, (0o777 if os.stat(p).st_mode & 0o100 else 0o666) & ~mask)
        for n in dirnames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o777 & ~mask)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's data, or a folder's entries (a rename in it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False):
    """Yield a temporary path beside `path`; rename it onto `path` only on success. Stale temp
    files of `path` are removed first. `fsync`: the file is on the disk before the rename and the
    rename after it (a node that dies then leaves the old file or the whole new one, never a torn one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
    os.close(fd)
    try:
        yield tmp
        if fsync:
            fsync_path(tmp)
        os.replace(tmp, path)
        if fsync:
            fsync_path(path.parent)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike):
    """Yield a temporary directory beside `out`; it replaces `out` only on success. The directory
    and every file in it get the umask's permissions. Stale temp folders of `out` are removed first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = temp_name(out)
    tmp.mkdir()
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
        _follow_umask(tmp)
        if out.is_symlink():
            out.unlink()
        elif out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(out: str | os.PathLike, tag: str):
    """A scratch folder beside `out`, removed afterwards (and, if a killed job left one, by the next)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = temp_name(out, tag)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f


def save_torch(obj, path: str | os.PathLike) -> None:
    """torch.save, atomically and byte-reproducibly: saved to a path, torch names the zip's record
    folder after the file (here a random temp name); saved to a file object it is always `archive`."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def json_lines(lines: Iterable[str], loc: str) -> Iterator[tuple[int, object]]:
    """(1-based line number, parsed value) for each non-blank line; malformed JSON, or a gzip
    stream that ends early or is corrupt, raises InputError naming `loc` and the line."""
    it = iter(lines)
    lineno = 0
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except COMPRESSED_ERRORS as e:
            raise InputError(f"{loc}:{lineno + 1}: truncated or corrupt compressed data ({e})") from None
        lineno += 1
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            cut = "" if line.endswith("\n") else "; the file ends in the middle of this line (truncated?)"
            raise InputError(f"{loc}:{lineno}: malformed JSON ({e.msg}){cut}") from None
        yield lineno, value


def read_jsonl(path: str | os.PathLike, required: Sequence[str] = (), unique: str | None = None) -> Iterator[dict]:
    """Stream a JSONL file. Malformed lines, missing fields and duplicate `unique` values raise
    InputError naming the file and the 1-based line number."""
    seen: set | None = set() if unique else None
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    with f:
        for lineno, row in json_lines(_utf8(f, str(path)), str(path)):
            if not isinstance(row, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise InputError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            if seen is not None:
                key = row.get(unique)
                if key in seen:
                    raise InputError(f"{path}:{lineno}: duplicate {unique} {key!r}")
                seen.add(key)
            yield row


def _utf8(f: IO[bytes], loc: str) -> Iterator[str]:
    """The lines of a binary file as UTF-8 text; a bad byte names its line."""
    for n, raw in enumerate(f, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{loc}:{n}: not UTF-8 (bad byte 0x{raw[e.start]:02x})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows atomically; returns the number written."""
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def read_json(path: str | os.PathLike):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
