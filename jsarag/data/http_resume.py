"""HTTP(S) downloads that survive a bad network: resumed with Range requests, retried with
exponential back-off, mirrors tried in order, a progress bar in bytes (tqdm).

The bytes go to `<out>.part`, kept across attempts and across runs (a rerun resumes it), beside
`<out>.part.json`, which records where they came from: the URL, the total size and the server's
validator (ETag, else Last-Modified). A resumed request sends `Range: bytes=N-` and
`If-Range: <validator>`. The part is extended only when the server answers 206 with a
Content-Range that starts at N and has the recorded total (and the recorded ETag, when it sends
one). A 200 answer (the server ignores Range, or the file changed) restarts from byte 0; so does a
206 that does not fit. A part is tied to its URL: moving on to a mirror restarts it.

Retried (up to `retries` attempts per URL, waiting BACKOFF_S, 2x, 4x, ... at most BACKOFF_MAX_S):
a connection that drops or stalls (TIMEOUT_S without a byte), HTTP 408/425/429/5xx, and a refused
connection once this URL has sent bytes. Not retried (the next mirror is tried): any other HTTP
error, and a host that cannot be reached before it sent anything (offline, wrong name, refused), so
that an offline run fails at once with a clear error.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from jsarag import InputError
from jsarag.io import atomic_open

log = logging.getLogger("jsarag.download")
RETRIES = 5
BACKOFF_S = 2.0
BACKOFF_MAX_S = 60.0
TIMEOUT_S = 60
CHUNK = 1 << 20
_RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}
_sleep = time.sleep  # tests replace it


class _Transient(Exception):
    """This attempt failed in a way worth retrying (the bytes received so far are kept)."""


class _Unreachable(Exception):
    """The host could not be reached at all: try the next source."""


class _Refused(Exception):
    """The server answered with an error: try the next source."""


class _Restart(_Transient):
    """The server cannot continue the part (HTTP 416): it is discarded, the next attempt starts at 0."""


@dataclass
class _Meta:
    url: str
    total: int | None = None
    etag: str | None = None
    last_modified: str | None = None


def part_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".part"), out.with_name(out.name + ".part.json")


def _load(meta_path: Path) -> _Meta | None:
    """The record of the partial download beside it, if any."""
    try:
        return _Meta(**json.loads(meta_path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _has_part_from(url: str, part: Path, meta_path: Path) -> bool:
    meta = _load(meta_path)
    return meta is not None and meta.url == url and part.exists() and part.stat().st_size > 0


def _discard(part: Path, meta_path: Path) -> None:
    for p in (part, meta_path):
        p.unlink(missing_ok=True)


def _save(meta_path: Path, meta: _Meta) -> None:
    with atomic_open(meta_path) as f:
        json.dump(asdict(meta), f)


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(first byte, total or None) of `Content-Range: bytes A-B/T`."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    return (int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))) if m else None


def _open(url: str, have: int, meta: _Meta | None, sent_bytes: bool):
    headers = {"User-Agent": "jsarag", "Accept-Encoding": "identity"}
    if have and meta is not None:
        headers["Range"] = f"bytes={have}-"
        strong_etag = meta.etag if meta.etag and not meta.etag.startswith("W/") else None
        if strong_etag or meta.last_modified:
            headers["If-Range"] = strong_etag or meta.last_modified
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            raise _Restart(f"HTTP 416 {e.reason} for bytes={have}-") from None
        if e.code in _RETRY_HTTP:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise _Refused(f"the server answered HTTP {e.code} {e.reason}") from None
    except (TimeoutError, http.client.HTTPException) as e:
        raise _Transient(f"{type(e).__name__}: {e}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        if sent_bytes and not isinstance(e, ValueError):
            raise _Transient(str(reason)) from None
        raise _Unreachable(str(reason)) from None


def _attempt(key: str, url: str, part: Path, meta_path: Path, sent_bytes: bool) -> None:
    """One request: extend `part` (or restart it from byte 0). Raises when it is still incomplete."""
    meta = _load(meta_path)
    if meta is not None and (meta.url != url or not part.exists()):
        meta = None
    have = part.stat().st_size if meta is not None else 0
    if meta is not None and meta.total is not None and have == meta.total:
        return
    try:
        r = _open(url, have, meta, sent_bytes)
    except _Restart:
        _discard(part, meta_path)
        raise
    with r:
        status = r.status or 200  # file:// and ftp:// answers have no status: a whole file, like a 200
        length = r.headers.get("Content-Length")
        etag, last_mod = r.headers.get("ETag"), r.headers.get("Last-Modified")
        if status == 206:
            cr = _content_range(r.headers.get("Content-Range"))
            fits = (meta is not None and cr is not None and cr[0] == have and (meta.total is None or cr[1] == meta.total)
                    and (not meta.etag or not etag or etag == meta.etag)
                    and (not meta.last_modified or not last_mod or last_mod == meta.last_modified))
            if not fits:
                log.warning("downloads.%s: %s answered Range bytes=%d- with Content-Range %r; restarting from byte 0",
                            key, url, have, r.headers.get("Content-Range"))
                _discard(part, meta_path)
                raise _Transient("a partial answer that does not continue the part")
            mode = "ab"
        elif status == 200:
            if have:
                log.warning("downloads.%s: %s ignored the Range request or the file changed (HTTP 200): "
                            "restarting from byte 0; the %d bytes received before are discarded", key, url, have)
            elif part.exists() and part.stat().st_size:
                log.warning("downloads.%s: replacing the partial download %s (%d bytes from another source)",
                            key, part, part.stat().st_size)
            have, mode = 0, "wb"
            meta = _Meta(url, int(length) if length and length.isdigit() else None, etag, last_mod)
            _save(meta_path, meta)
        else:
            raise _Refused(f"the server answered HTTP {status} {getattr(r, 'reason', '')}")
        bar = tqdm(total=meta.total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=f"downloads.{key}", mininterval=10, file=sys.stderr)
        with bar, open(part, mode) as f:
            while True:
                try:
                    block = r.read(CHUNK)
                except http.client.IncompleteRead as e:  # chunked transfer cut short: keep what came
                    f.write(e.partial)
                    raise _Transient(f"the connection closed after byte {f.tell():,}") from None
                except (OSError, http.client.HTTPException) as e:
                    raise _Transient(f"{type(e).__name__}: {e}") from None
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
    got = part.stat().st_size
    if meta.total is not None and got != meta.total:
        raise _Transient(f"the connection closed at byte {got:,} of {meta.total:,}")


def fetch_urls(key: str, urls: list[str], out: Path, retries: int = RETRIES) -> str:
    """Download the first source that works into `<out>.part` (complete on return) and return its
    URL. The source a kept part came from is tried first. When none works, raises InputError
    naming `downloads.<key>` and each source's failure."""
    part, meta_path = part_paths(out)
    meta = _load(meta_path)
    if meta is not None and meta.url in urls and part.exists():
        urls = [meta.url] + [u for u in urls if u != meta.url]
    failures: list[tuple[str, str, str]] = []  # (kind, url, text), one per source
    for i, url in enumerate(urls):
        sent = _has_part_from(url, part, meta_path)
        for attempt in range(1, retries + 1):
            log.info("downloads.%s: GET %s (attempt %d of %d)", key, url, attempt, retries)
            try:
                _attempt(key, url, part, meta_path, sent)
            except (_Refused, _Unreachable) as e:
                failures.append(("refused" if isinstance(e, _Refused) else "unreachable", url, str(e)))
                break
            except _Transient as e:
                sent = sent or _has_part_from(url, part, meta_path)
                if attempt == retries:
                    failures.append(("transient", url, f"{e} ({retries} attempts)"))
                    break
                wait = min(BACKOFF_S * 2 ** (attempt - 1), BACKOFF_MAX_S)
                have = part.stat().st_size if part.exists() else 0
                log.warning("downloads.%s: %s: %s; retrying in %.1f s from byte %d", key, url, e, wait, have)
                _sleep(wait)
            else:
                if i:
                    log.warning("downloads.%s: fetched from %s after %d other source(s) failed", key, url, i)
                meta_path.unlink(missing_ok=True)
                return url
    raise InputError(_failure_message(key, failures, part, meta_path))


def _failure_message(key: str, failures: list[tuple[str, str, str]], part: Path, meta_path: Path) -> str:
    def one(kind: str, url: str, text: str) -> str:
        return f"{text} for {url}" if kind == "refused" else f"cannot fetch {url} (no network?): {text}"

    if len(failures) == 1:
        kind, url, text = failures[0]
        msg = f"downloads.{key}{'.url' if kind == 'refused' else ''}: {one(kind, url, text)}"
    else:
        msg = f"downloads.{key}: no source worked: " + "; ".join(one(*f) for f in failures)
    meta = _load(meta_path)
    if part.exists() and part.stat().st_size and meta is not None:
        msg += f". Kept the {part.stat().st_size:,} bytes received from {meta.url} in {part}: a rerun resumes there"
    else:
        _discard(part, meta_path)
    return msg


def finish(out: Path, dst: Path) -> None:
    """Move the complete part of `out` onto `dst` (the atomic temp file of the final output)."""
    part, meta_path = part_paths(out)
    os.replace(part, dst)
    meta_path.unlink(missing_ok=True)
