"""What a derived file was made from, recorded beside it and checked by its reader.

A derived file (passages.jsonl's offsets, a dense shard, the dense or BM25 index) gets a record,
`NAME.source.json` beside a file or `source.json` inside a folder, holding its own row count and
the fingerprint of each input it was made from. Its reader recomputes the input's fingerprint and
refuses a mismatch with both values and the command that rebuilds the derived file.

The fingerprint is cheap at any size (passages.jsonl is 13 GB at paper scale, and every shard,
training and evaluation job checks it): the size in bytes and a sha256 over the first and the last
MiB and 30 evenly spaced 64 KiB blocks, 4 MiB read whatever the size (a file of at most 4 MiB is
hashed whole). It catches any change of length (a cut, an appended or removed line) and any edit
within the sampled blocks; an edit of the same length elsewhere in a file of more than 4 MiB goes
unseen (a full hash, as in corpus stats.json, reads the whole file: minutes at 13 GB). The check is
independent of mtimes, so a copied or touched file still matches.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from jsarag import InputError

HEAD = TAIL = 1 << 20
BLOCK, N_BLOCKS = 1 << 16, 30
WHOLE = HEAD + TAIL + BLOCK * N_BLOCKS  # files up to this size are hashed whole
RECORD = "source.json"


def fingerprint(path: str | os.PathLike) -> dict:
    """{"size": bytes, "sha256_sampled": hex} of a file (see the module doc for what is sampled)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= WHOLE:
            h.update(f.read())
        else:
            starts = [0, *(HEAD + i * (size - HEAD - TAIL - BLOCK) // (N_BLOCKS - 1) for i in range(N_BLOCKS)), size - TAIL]
            for s, n in zip(starts, [HEAD, *([BLOCK] * N_BLOCKS), TAIL]):
                f.seek(s)
                h.update(f.read(n))
    return {"size": size, "sha256_sampled": h.hexdigest()}


def record_path(derived: str | os.PathLike) -> Path:
    """Where the record of `derived` lives: inside it when it is a folder, beside it otherwise."""
    derived = Path(derived)
    return derived / RECORD if derived.is_dir() else derived.with_name(derived.name + "." + RECORD)


def forget(derived: str | os.PathLike) -> None:
    """Drop the record of a file about to be rewritten, so that a job killed between writing the
    file and its record leaves a file without a record (refused), never a new file beside an old record."""
    derived = Path(derived)
    if not derived.is_dir():
        record_path(derived).unlink(missing_ok=True)


def stamp(derived: str | os.PathLike, sources: dict[str, str | os.PathLike], rows: int, into: str | os.PathLike | None = None,
          **extra) -> dict:
    """Record that `derived` (holding `rows` rows) was made from `sources` ({role: path}). A folder
    written in a temp directory passes that directory as `into`; a file's record is written atomically
    beside it, after the file (call `forget` before writing the file)."""
    from jsarag.io import write_json

    rec = {"rows": int(rows), "sources": {role: {"name": Path(p).name, **fingerprint(p)} for role, p in sources.items()}, **extra}
    write_json(Path(into) / RECORD if into is not None else record_path(derived), rec)
    return rec


def read_record(derived: str | os.PathLike, rebuild: str) -> dict:
    rp = record_path(derived)
    try:
        with open(rp, encoding="utf-8") as f:
            rec = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{derived}: no record of what it was made from ({rp} is missing: written by an older version, or "
                         f"its job was killed); rebuild it: {rebuild}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{rp}:{e.lineno}: malformed JSON ({e.msg}); rebuild {derived}: {rebuild}") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("sources"), dict) or "rows" not in rec:
        raise InputError(f"{rp}: not a source record (needs rows and sources); rebuild {derived}: {rebuild}")
    return rec


def check(derived: str | os.PathLike, sources: dict[str, str | os.PathLike], rebuild: str, rows: int | None = None) -> dict:
    """Refuse `derived` unless each of `sources` has the fingerprint recorded when it was made
    and, when `rows` is given, the record holds that many rows. The message gives both values and
    `rebuild`, the command that rebuilds it. Returns the record."""
    rec = read_record(derived, rebuild)
    for role, path in sources.items():
        was = rec["sources"].get(role)
        if was is None:
            raise InputError(f"{derived}: its record ({record_path(derived)}) names no {role} input; rebuild it: {rebuild}")
        now = fingerprint(path)
        if (was.get("size"), was.get("sha256_sampled")) != (now["size"], now["sha256_sampled"]):
            what = (f"{was.get('size')} bytes then, {now['size']} now" if was.get("size") != now["size"]
                    else f"same size ({now['size']} bytes), sampled sha256 {str(was.get('sha256_sampled'))[:12]} then, "
                         f"{now['sha256_sampled'][:12]} now")
            raise InputError(f"{derived} was made from another {path} ({what}): {path} changed since; rebuild it: {rebuild}")
    if rows is not None and rows != rec["rows"]:
        raise InputError(f"{derived}: holds {rows} rows but its record says {rec['rows']} (overwritten or truncated); "
                         f"rebuild it: {rebuild}")
    return rec


def faiss_rows(index_file: str | os.PathLike) -> int:
    """ntotal from the header every FAISS index file starts with (fourcc, int32 d, int64 ntotal)."""
    with open(index_file, "rb") as f:
        head = f.read(16)
    if len(head) < 16:
        raise InputError(f"{index_file}: not a FAISS index ({len(head)} bytes)")
    return int.from_bytes(head[8:16], "little", signed=True)


def dense_rebuild(index_dir: str | os.PathLike, passages: str | os.PathLike) -> str:
    return (f"snakemake --forcerun dense_shard dense_index (or: python -m jsarag.index dense --passages {passages} --model MODEL "
            f"--params PARAMS --shard-dir SHARDS --out {index_dir})")


def stamp_index(index_dir: str | os.PathLike, passages: str | os.PathLike, into: str | os.PathLike | None = None) -> dict:
    """Record the passages a dense index (`index` + `docid`, FaissSearcher layout) was built from.
    Written by dense-merge; a writer of a small index (jsarag.model.dense_index.build_small_index)
    calls it after writing the two files, with `into` the folder being written."""
    folder = Path(into if into is not None else index_dir)
    docid = folder / "docid"
    return stamp(index_dir, {"passages": passages}, faiss_rows(folder / "index"), into=folder,
                 docid={"name": docid.name, **fingerprint(docid)} if docid.exists() else None)


def check_index_against_passages(index_dir: str | os.PathLike, passages: str | os.PathLike) -> int:
    """Refuse a dense index unless it was built from this passages.jsonl, as it is now (size and
    sampled hash), holds the rows its record says, and its docid file is the one written with it.
    For DenseIndex to call at load; returns the row count."""
    index_dir = Path(index_dir)
    rebuild = dense_rebuild(index_dir, passages)
    index_file = index_dir / "index"
    if not index_file.exists():
        raise InputError(f"{index_file}: dense index not found; build it: {rebuild}")
    rows = faiss_rows(index_file)
    rec = check(index_dir, {"passages": passages}, rebuild, rows=rows)
    docid = index_dir / "docid"
    if rec.get("docid") is not None:
        now = fingerprint(docid)
        if (now["size"], now["sha256_sampled"]) != (rec["docid"]["size"], rec["docid"]["sha256_sampled"]):
            raise InputError(f"{docid}: not the docid file written with {index_file} ({rec['docid']['size']} bytes then, "
                             f"{now['size']} now); rebuild it: {rebuild}")
    return rows


def check_bm25_against_collection(index_dir: str | os.PathLike, collection: str | os.PathLike) -> int:
    """Refuse a BM25 index (built by `python -m jsarag.index bm25`) unless the *.jsonl files of
    `collection` are the ones it was built from; returns its passage count. A linked Pyserini
    prebuilt index has no record and is not checked."""
    index_dir, collection = Path(index_dir), Path(collection)
    if index_dir.is_symlink():
        return -1
    files = {f.name: f for f in sorted(collection.glob("*.jsonl"))}
    rebuild = (f"snakemake --forcerun bm25_index (or: python -m jsarag.index bm25 --collection {collection} --params PARAMS "
               f"--out {index_dir})")
    rec = check(index_dir, files, rebuild)
    extra = sorted(set(rec["sources"]) - set(files))
    if extra:
        raise InputError(f"{index_dir} was built from {', '.join(extra)}, no longer in {collection}; rebuild it: {rebuild}")
    return rec["rows"]


def stamp_split(split: str | os.PathLike, rows: int, sources: dict[str, str | os.PathLike]) -> dict:
    """Record a prepared split: its own fingerprint and row count, and those of what it was made
    from (the downloads, and the corpus when the answerable filter or a target rule read it)."""
    return stamp(split, sources, rows, split={"name": Path(split).name, **fingerprint(split)})


def check_split(split: str | os.PathLike, corpus: str | os.PathLike | None = None) -> int:
    """Refuse a prepared split edited since it was written, or made from another corpus than
    `corpus` (when given and the split was made from one); returns its row count."""
    split = Path(split)
    rebuild = "snakemake --forcerun prepare_dataset"
    rec = read_record(split, rebuild)
    now = fingerprint(split)
    was = rec.get("split") or {}
    if (was.get("size"), was.get("sha256_sampled")) != (now["size"], now["sha256_sampled"]):
        raise InputError(f"{split}: changed since it was prepared ({was.get('size')} bytes then, {now['size']} now); "
                         f"rebuild it: {rebuild}")
    if corpus is not None and "corpus" in rec["sources"]:
        check(split, {"corpus": corpus}, rebuild)
    return rec["rows"]
