"""Downloads that survive a bad network (resume, retry, mirrors, md5/sha256 pins) against a local
HTTP server that drops connections; archive members with or without `./`; gated hub models."""
from __future__ import annotations

import copy
import hashlib
import http.server
import io
import logging
import random
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from jsarag import InputError
from jsarag.data import http_resume
from jsarag.data.archive import open_text
from jsarag.data.corpora import prepare_corpus
from jsarag.data.download import fetch

ROOT = Path(__file__).resolve().parents[1]
DATA = random.Random(18).randbytes(300_000)
MD5 = hashlib.md5(DATA).hexdigest()


class Flaky:
    """A local HTTP server for one file. `drops[i]` cuts request i's body after that many bytes
    (the connection is closed, as a dropped network does); `honor_range=False` answers every request
    with 200 and the whole file; `fail` maps a path to an HTTP status. `served` logs one
    (Range header, If-Range header, status, body bytes sent) per request."""

    def __init__(self, data=DATA, drops=(), honor_range=True, fail=None, range_from_zero=False):
        self.data, self.drops, self.honor_range, self.fail = data, list(drops), honor_range, dict(fail or {})
        self.range_from_zero = range_from_zero  # a 206 whose Content-Range starts at 0, whatever was asked
        self.etag = f'"{hashlib.md5(data).hexdigest()}"'
        self.served: list[tuple[str | None, str | None, int, int]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                owner.handle(self)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.srv.server_port}/file.bin"

    def handle(self, h):
        rng, if_range = h.headers.get("Range"), h.headers.get("If-Range")
        if h.path in self.fail:  # each answer is logged before it is sent: the client may check the log as soon as it has it
            self.served.append((rng, if_range, self.fail[h.path], 0))
            h.send_error(self.fail[h.path])
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and self.honor_range and (if_range is None or if_range == self.etag):
            start = int(m.group(1))
        partial = bool(start)
        if partial and self.range_from_zero:
            start = 0
        body = self.data[start:]
        h.send_response(206 if partial else 200)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("ETag", self.etag)
        h.send_header("Accept-Ranges", "bytes" if self.honor_range else "none")
        if partial:
            h.send_header("Content-Range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        cut = self.drops.pop(0) if self.drops else len(body)
        self.served.append((rng, if_range, 206 if partial else 200, min(cut, len(body))))
        h.end_headers()
        h.wfile.write(body[:cut])
        h.wfile.flush()
        h.close_connection = True

    @property
    def served_twice(self) -> int:
        """Body bytes sent beyond one copy of the file."""
        return sum(s[3] for s in self.served) - len(self.data)

    def __enter__(self):
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def waits(monkeypatch):
    """The back-off waits, recorded instead of slept."""
    got: list[float] = []
    monkeypatch.setattr(http_resume, "_sleep", got.append)
    return got


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# --- resume and retry ----------------------------------------------------------------------------
def test_resume_after_drops_serves_no_byte_twice(tmp_path, waits, capsys):
    out = tmp_path / "dl" / "wiki.bin"
    with Flaky(drops=[100_000, 70_000]) as srv:
        fetch("wiki", {"url": srv.url, "md5": MD5}, out)
    assert out.read_bytes() == DATA
    assert [(s[0], s[2]) for s in srv.served] == [(None, 200), ("bytes=100000-", 206), ("bytes=170000-", 206)]
    assert {s[1] for s in srv.served[1:]} == {srv.etag}  # each resume is validated with If-Range
    assert srv.served_twice == 0
    assert waits == [http_resume.BACKOFF_S, 2 * http_resume.BACKOFF_S]
    assert leftovers(out.parent) == ["wiki.bin"]
    err = capsys.readouterr().err
    assert "downloads.wiki" in err and "293k/293k" in err  # the tqdm bar counts bytes (300,000 B = 293 KiB)


def test_server_ignoring_range_restarts_from_zero(tmp_path, waits, caplog):
    out = tmp_path / "dl" / "c.bin"
    with Flaky(drops=[100_000], honor_range=False) as srv, caplog.at_level(logging.WARNING, "jsarag.download"):
        fetch("c", {"url": srv.url, "md5": MD5}, out)
    assert out.read_bytes() == DATA
    assert [(s[0], s[2]) for s in srv.served] == [(None, 200), ("bytes=100000-", 200)]
    assert srv.served_twice == 100_000
    assert "ignored the Range request or the file changed (HTTP 200): restarting from byte 0" in caplog.text


def test_a_partial_answer_from_elsewhere_in_the_file_restarts_the_part(tmp_path, waits, caplog):
    out = tmp_path / "dl" / "c.bin"
    with Flaky(drops=[100_000], range_from_zero=True) as srv, caplog.at_level(logging.WARNING, "jsarag.download"):
        fetch("c", {"url": srv.url, "md5": MD5}, out)
    assert out.read_bytes() == DATA
    assert [(s[0], s[2]) for s in srv.served] == [(None, 200), ("bytes=100000-", 206), (None, 200)]
    assert "answered Range bytes=100000- with Content-Range 'bytes 0-299999/300000'; restarting from byte 0" in caplog.text


def test_changed_file_is_not_spliced_onto_the_old_part(tmp_path, waits):
    out = tmp_path / "dl" / "c.bin"
    with Flaky(drops=[100_000]) as srv:
        new = DATA[::-1]
        orig = srv.handle

        def swap_then_handle(h):
            if srv.served:  # the file changes on the server after the first (dropped) request
                srv.data, srv.etag = new, '"v2"'
            orig(h)

        srv.handle = swap_then_handle
        fetch("c", {"url": srv.url, "md5": hashlib.md5(new).hexdigest()}, out)
    assert out.read_bytes() == new
    assert srv.served[1][1] != '"v2"' and srv.served[1][2] == 200  # If-Range carried the old ETag: a full answer


def test_retries_are_bounded_with_exponential_back_off(tmp_path, waits):
    out = tmp_path / "dl" / "x.bin"
    with Flaky(fail={"/file.bin": 503}) as srv:
        with pytest.raises(InputError, match=r"downloads\.x: cannot fetch http://127\.0\.0\.1:\d+/file\.bin "
                                             r"\(no network\?\): HTTP 503 .*\(3 attempts\)"):
            fetch("x", {"url": srv.url, "retries": 3}, out)
    assert len(srv.served) == 3 and waits == [2.0, 4.0]
    assert leftovers(out.parent) == []


def test_a_failed_run_keeps_its_part_and_the_rerun_resumes_it(tmp_path, waits):
    out = tmp_path / "dl" / "x.bin"
    with Flaky(drops=[40_000, 0, 0]) as srv:
        with pytest.raises(InputError, match=r"Kept the 40,000 bytes received from .* in .*x\.bin\.part: a rerun resumes there"):
            fetch("x", {"url": srv.url, "md5": MD5, "retries": 3}, out)
        assert leftovers(out.parent) == ["x.bin.part", "x.bin.part.json"] and not out.exists()
        fetch("x", {"url": srv.url, "md5": MD5}, out)  # the next run
    assert out.read_bytes() == DATA and srv.served[-1][0] == "bytes=40000-"
    assert srv.served_twice == 0 and leftovers(out.parent) == ["x.bin"]


def test_mirrors_are_tried_in_order(tmp_path, waits, caplog):
    out = tmp_path / "dl" / "m.bin"
    with Flaky() as good, Flaky(fail={"/file.bin": 404}) as gone:
        dead = "http://127.0.0.1:9/file.bin"  # nothing listens there: not retried, the next source is tried
        with caplog.at_level(logging.WARNING, "jsarag.download"):
            fetch("m", {"url": dead, "mirrors": [gone.url, good.url], "sha256": hashlib.sha256(DATA).hexdigest()}, out)
        assert out.read_bytes() == DATA and len(gone.served) == 1 and len(good.served) == 1 and waits == []
        assert "fetched from " + good.url + " after 2 other source(s) failed" in caplog.text
        with pytest.raises(InputError, match=r"downloads\.m: no source worked: cannot fetch http://127\.0\.0\.1:9/file\.bin "
                                             r"\(no network\?\): .*; the server answered HTTP 404 .* for http://127\.0\.0\.1"):
            fetch("m", {"url": dead, "mirrors": [gone.url]}, tmp_path / "dl" / "m2.bin")
    assert leftovers(out.parent) == ["m.bin"]


def test_file_url_is_fetched_whole(tmp_path, waits):
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    out = tmp_path / "dl" / "f.bin"
    fetch("f", {"url": src.as_uri(), "md5": MD5}, out)
    assert out.read_bytes() == DATA and leftovers(out.parent) == ["f.bin"]


def test_hash_mismatch_names_the_download_and_both_hashes(tmp_path, waits):
    out = tmp_path / "dl" / "h.bin"
    with Flaky(drops=[50_000]) as srv:
        with pytest.raises(InputError) as e:
            fetch("h", {"url": srv.url, "md5": "0" * 32}, out)
    assert re.match(rf"downloads\.h\.md5: expected 0{{32}}, got {MD5} for the file fetched from {re.escape(srv.url)}", str(e.value))
    assert leftovers(out.parent) == []  # no final file, no part (its bytes cannot be trusted)


def test_md5_and_mirrors_in_the_schema():
    from jsarag.config import load_config, validate_config

    cfg = load_config(ROOT / "config.yaml")
    good = copy.deepcopy(cfg)
    good["downloads"]["x"] = {"url": "https://a/x.tsv", "mirrors": ["https://b/x.tsv"], "md5": MD5, "retries": 2}
    validate_config(good)
    bad = copy.deepcopy(cfg)
    bad["downloads"]["x"] = {"url": "https://a/x.tsv", "md5": MD5[:-1]}
    with pytest.raises(InputError, match=r"downloads\.x\.md5: '[0-9a-f]{31}' does not match"):
        validate_config(bad)


# --- archive members -----------------------------------------------------------------------------
COLLECTION = "0\tThe first passage.\n1\tThe second passage.\n"


def test_tar_member_stored_with_dot_slash_is_found(tmp_path):
    tgz = tmp_path / "collection.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:  # what `tar -czf collection.tar.gz ./collection.tsv` writes
        info = tarfile.TarInfo("./collection.tsv")
        info.size = len(COLLECTION.encode())
        t.addfile(info, io.BytesIO(COLLECTION.encode()))
    assert tarfile.open(tgz).getnames() == ["./collection.tsv"]
    out = tmp_path / "p" / "passages.jsonl"
    assert prepare_corpus({"format": "msmarco_tsv", "download": "c", "member": "collection.tsv"}, tgz, out) == 2
    with open_text(tgz, "./collection.tsv") as f:
        assert f.read() == COLLECTION


def test_zip_member_with_and_without_dot_slash(tmp_path):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("data/collection.tsv", COLLECTION)
        zf.writestr("./x.tsv", "a\tb\n")
        zf.writestr("x.tsv", "c\td\n")
    with open_text(z, "./data/collection.tsv") as f:
        assert f.read() == COLLECTION
    with open_text(z, "x.tsv") as f:  # an exact name wins over a normalized one
        assert f.read() == "c\td\n"
    with pytest.raises(InputError, match=r"a\.zip: no member 'collection\.tsv'"):
        with open_text(z, "collection.tsv"):
            pass


# --- gated models --------------------------------------------------------------------------------
GATED_ID = "mistralai/Mistral-7B-Instruct-v0.2"


def hub_refusal(status: int, error_code: str | None, message: str):
    """The exception huggingface_hub raises for this hub answer (built by its own hf_raise_for_status)."""
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    req = httpx2.Request("GET", f"https://huggingface.co/{GATED_ID}/resolve/main/config.json")
    headers = {"X-Error-Message": message} | ({"X-Error-Code": error_code} if error_code else {})
    try:
        hf_raise_for_status(httpx2.Response(status, request=req, headers=headers))
    except Exception as e:
        return e
    raise AssertionError("hf_raise_for_status did not raise")


@pytest.mark.parametrize("status, code, token, kind", [
    (401, "GatedRepo", None, "GatedRepoError"),  # no token: the hub asks to log in
    (403, "GatedRepo", "hf_x", "GatedRepoError"),  # a token whose account did not accept the licence
    (403, None, "hf_x", "HfHubHTTPError"),  # a fine-grained token without access to gated repos
])
def test_gated_model_says_licence_and_hf_token(monkeypatch, status, code, token, kind):
    import transformers.utils.hub as tf_hub

    from jsarag.model.sources import load_model

    err = hub_refusal(status, code, f"Access to model {GATED_ID} is restricted.")
    assert type(err).__name__ == kind
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", token) if token else monkeypatch.delenv("HF_TOKEN", raising=False)

    def refuse(*a, **k):
        raise err

    monkeypatch.setattr(tf_hub, "hf_hub_download", refuse)  # transformers wraps it in an OSError, as it does online
    with pytest.raises(InputError) as e:
        load_model(GATED_ID, "causal")
    msg = str(e.value)
    assert f"cannot load model {GATED_ID!r}" in msg and f"(HTTP {status})" in msg
    assert f"Accept its licence at https://huggingface.co/{GATED_ID}" in msg
    assert ("it is a gated model" in msg) == (kind == "GatedRepoError")
    assert ("HF_TOKEN is set" if token else "HF_TOKEN is not set: after accepting the licence, set HF_TOKEN") in msg
    assert "is the model hub reachable" not in msg and f"Access to model {GATED_ID} is restricted." in msg


def test_hub_outage_is_still_a_network_error(monkeypatch):
    import transformers.utils.hub as tf_hub

    from jsarag.model.sources import load_tokenizer

    err = hub_refusal(500, None, "Internal Error")

    def fail(*a, **k):
        raise err

    monkeypatch.setattr(tf_hub, "hf_hub_download", fail)
    with pytest.raises(InputError, match=r"the hub failed \(HF_HUB_OFFLINE=1 is set\)") as e:
        load_tokenizer(GATED_ID)
    assert "licence" not in str(e.value)


# --- the paper config ----------------------------------------------------------------------------
def test_paper_retriever_is_named_alike_in_config_readme_and_method():
    import yaml

    paper = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    r = paper["models"]["retriever"]
    assert r == {"source": "BAAI/bge-large-en", "pooling": "cls", "normalize": True, "max_length": 512}
    for doc in ("README.md", "docs/method.md"):
        text = (ROOT / doc).read_text()
        assert "`BAAI/bge-large-en`" in text and "bge-large-en-v1.5" not in text, doc
