"""Example splits of a dataset: read its train/dev/test sources, filter, split with a fixed seed,
and write train/valid/test JSONL plus stats.json (`python -m jsarag.data prepare-dataset`)."""
from __future__ import annotations

import contextlib
import json
import logging
import random
import time

from jsarag import InputError
from jsarag.data.archive import where
from jsarag.data.integrity import check_count, check_gold, content_hash
from jsarag.data.targets import apply_rule
from jsarag.fingerprint import stamp_split
from jsarag.io import atomic_open, write_json
from jsarag.layout import LAYOUT, SPLITS, Layout

log = logging.getLogger("jsarag.data")
SOURCES = ("train", "dev", "test")
SEED = 0
DEFAULT_HELDOUT = 0.1  # share of a pooled source used for valid/test when no n_* is given


# --- reading the sources ---------------------------------------------------------------------
def _member(cfg: dict, name: str, files: dict[str, str]) -> tuple[str, str | None]:
    """A member value: "path/in/archive" (in the dataset's download) or {download, member?}."""
    m = cfg["members"][name]
    key, member = (m["download"], m.get("member")) if isinstance(m, dict) else (cfg.get("download"), m)
    if key is None:
        raise InputError(f"datasets.{cfg['_name']}.members.{name}: no download given")
    if key not in files:
        raise InputError(f"datasets.{cfg['_name']}.members.{name}: download {key!r} was not passed (--download {key}=PATH)")
    return files[key], member


DEFAULT_TARGET = {"triviaqa_release": "canonical"}  # every other format: first


def target_rule(cfg: dict) -> str:
    rule = cfg.get("target", DEFAULT_TARGET.get(cfg["format"], "first"))
    if rule == "canonical" and cfg["format"] != "triviaqa_release":
        raise InputError(f"datasets.{cfg['_name']}.target: canonical needs a format with a canonical answer "
                         f"(triviaqa_release), not {cfg['format']}")
    return rule


def _optional(cfg: dict, files: dict, src: str, kind: str):
    """(path, member, location) of `<src>_<kind>` or else `<kind>` (qrels, answers), or None."""
    members = cfg["members"]
    name = f"{src}_{kind}" if f"{src}_{kind}" in members else kind if kind in members else None
    if name is None:
        return None
    path, member = _member(cfg, name, files)
    return path, member, where(path, member)


def _triviaqa_rows(cfg, files, src, path, member, loc, cache: dict, notes: dict):
    from jsarag.data import triviaqa

    if (path, member) not in cache:  # train and dev index the same file: read it once
        cache[path, member] = triviaqa.read_release(path, member, loc)
    index, index_loc = None, None
    if f"{src}_index" in cfg["members"]:  # FiD's split: positions into this file
        ipath, imember = _member(cfg, f"{src}_index", files)
        index_loc = where(ipath, imember)
        index = triviaqa.read_index(ipath, imember, index_loc)
    return triviaqa.select(cache[path, member], index, loc, index_loc, target_rule(cfg) == "canonical", notes.setdefault(src, {}))


MEMBER_KINDS = ("qrels", "answers", "index")  # <source>_<kind>; qrels and answers may also be shared by all sources
MEMBER_NAMES = {*SOURCES, "qrels", "answers", *(f"{s}_{k}" for s in SOURCES for k in MEMBER_KINDS)}


def read_sources(cfg: dict, files: dict[str, str], dropped: dict | None = None,
                 notes: dict | None = None) -> dict[str, list[tuple[str, dict]]]:
    """{source: [(location, example)]} for the train/dev/test sources present in members;
    `dropped` gets {source: {reason: count}} for readers that skip examples (msmarco, orquac,
    doqa), `notes` {source: {what: count}} for readers that change what they keep (triviaqa)."""
    from jsarag.data import questions as F

    fmt, members = cfg["format"], cfg["members"]
    dropped = {} if dropped is None else dropped
    notes = {} if notes is None else notes
    names = [s for s in SOURCES if s in members]
    if not names:
        raise InputError(f"datasets.{cfg['_name']}.members: needs at least one of {', '.join(SOURCES)}")
    unknown = set(members) - MEMBER_NAMES
    if unknown:
        raise InputError(f"datasets.{cfg['_name']}.members.{sorted(unknown)[0]}: unknown member name")
    if fmt != "triviaqa_release" and any(m.endswith("index") for m in members):
        raise InputError(f"datasets.{cfg['_name']}.members: a split index is read by the triviaqa_release format only")
    keep = bool(cfg.get("keep_unanswerable", False))
    if fmt == "perlfaq" and cfg.get("task") != "dialog":
        raise InputError(f"datasets.{cfg['_name']}.task: the perlfaq format is a dialog task (long answers, no answer list)")
    if "target_words" in cfg and fmt != "perlfaq":
        raise InputError(f"datasets.{cfg['_name']}.target_words: only the perlfaq format cuts its targets")
    if "keep_unanswerable" in cfg and fmt not in ("orquac", "doqa"):
        raise InputError(f"datasets.{cfg['_name']}.keep_unanswerable: only the orquac and doqa formats have unanswerable turns")
    cache: dict = {}
    out = {}
    for src in names:
        path, member = _member(cfg, src, files)
        loc = where(path, member)
        if fmt == "dpr_topics":
            rows = F.read_dpr_topics(path, member, loc, f"{cfg['_name']}-{src}")
        elif fmt in ("msmarco", "orquac"):
            qn = _optional(cfg, files, src, "qrels")
            qrels = F.read_qrels(*qn) if qn else None
            if fmt == "orquac":
                rows = F.read_orquac(path, member, loc, qrels, keep, dropped.setdefault(src, {}))
            else:
                an = _optional(cfg, files, src, "answers")
                if an is None:
                    raise InputError(f"datasets.{cfg['_name']}.members: the msmarco format needs {src}_answers or answers "
                                     "(the QnA v2.1 JSON): a query without an answer has no training target")
                rows = F.read_msmarco(path, member, loc, qrels or {}, F.read_msmarco_answers(*an), dropped.setdefault(src, {}))
        elif fmt == "doqa":
            rows = F.read_doqa(path, member, loc, keep, dropped.setdefault(src, {}))
        elif fmt == "triviaqa_release":
            rows = _triviaqa_rows(cfg, files, src, path, member, loc, cache, notes)
        elif fmt == "perlfaq":
            from jsarag.data.perlfaq import DEFAULT_TARGET_WORDS, read_perlfaq

            rows = read_perlfaq(path, member, loc, cfg.get("target_words", DEFAULT_TARGET_WORDS), dropped.setdefault(src, {}))
        elif fmt == "jsonl":
            from jsarag.data.generic import read_jsonl_examples

            rows = read_jsonl_examples(path, member, loc, cfg["task"], f"{cfg['_name']}-{src}", cfg.get("fields"))
        else:
            raise InputError(f"datasets.{cfg['_name']}.format: unknown format {fmt!r}")
        out[src] = [(_at(loc, n), ex) for n, ex in rows]
    for d in (dropped, notes):
        for src in [s for s, v in d.items() if not v]:
            del d[src]
    return out


def _at(loc: str, n) -> str:
    """How an example's source is named: file:line, file Data[i] (TriviaQA), or the file."""
    if isinstance(n, str):
        return f"{loc} {n}"
    return f"{loc}:{n}" if n else loc


def _check_ids(sources) -> None:
    seen: dict[str, str] = {}
    for rows in sources.values():
        for loc, ex in rows:
            if ex["id"] in seen:
                raise InputError(f"{loc}: duplicate example id {ex['id']!r} (first at {seen[ex['id']]})")
            seen[ex["id"]] = loc


# --- splits ----------------------------------------------------------------------------------
def _shuffled(rows: list, tag: str) -> list:
    rows = list(rows)
    random.Random(f"{SEED}-{tag}").shuffle(rows)
    return rows


def _n_heldout(n_cfg, pool: int) -> int:
    return min(pool, n_cfg) if n_cfg is not None else max(1, int(round(pool * DEFAULT_HELDOUT)))


def assign_splits(sources: dict[str, list], cfg: dict) -> dict[str, list]:
    """train/dev/test sources -> train/valid/test splits, then a seeded subset of each."""
    have = set(sources)
    if have == {"train", "dev", "test"}:
        split = {"train": sources["train"], "valid": sources["dev"], "test": sources["test"]}
    elif "test" in have and len(have) == 2:
        pool = _shuffled(sources[next(iter(have - {"test"}))], "pool")
        nv = _n_heldout(cfg.get("n_valid"), len(pool))
        split = {"train": pool[nv:], "valid": pool[:nv], "test": sources["test"]}
    elif len(have) == 1:
        pool = _shuffled(sources[next(iter(have))], "pool")
        nt = _n_heldout(cfg.get("n_test"), len(pool))
        nv = _n_heldout(cfg.get("n_valid"), len(pool) - nt)
        split = {"test": pool[:nt], "valid": pool[nt : nt + nv], "train": pool[nt + nv :]}
    else:  # train + dev, no test: dev is the test set, valid comes out of train
        pool = _shuffled(sources["train"], "pool")
        nv = _n_heldout(cfg.get("n_valid"), len(pool))
        split = {"train": pool[nv:], "valid": pool[:nv], "test": sources["dev"]}
    out = {}
    for s in SPLITS:
        n = cfg.get(f"n_{s}")
        rows = split[s]
        if n is not None and n < len(rows):
            keep = set(map(id, _shuffled(rows, s)[:n]))
            rows = [r for r in rows if id(r) in keep]  # subset, source order kept
        out[s] = rows
    return out


def prepare_dataset(name: str, cfg: dict, files: dict[str, str], corpus: str | None, layout: Layout = LAYOUT) -> dict:
    t0 = time.time()
    cfg = {**cfg, "_name": name}
    rule = target_rule(cfg)
    dropped: dict = {}
    notes: dict = {}
    sources = read_sources(cfg, files, dropped, notes)
    _check_ids(sources)
    stats: dict = {"dataset": name, "read": {s: len(r) for s, r in sources.items()}}
    if dropped:
        stats["dropped_by_reader"] = dropped
    if notes:
        stats["reader"] = notes
    for src, n in (cfg.get("expect") or {}).items():
        check_count(f"datasets.{name}.expect.{src}", n, stats["read"].get(src, 0), f"{src} examples read")
    if corpus is not None:
        stats["gold_passages_checked"] = check_gold(sources, corpus)
    elif cfg["format"] == "perlfaq":  # its gold ids name sections; the corpus says which passages they are
        raise InputError(f"datasets.{name}: the perlfaq format needs --corpus (the perl_pod passages its gold sections resolve to)")
    if cfg.get("filter_answerable"):
        if corpus is None:
            raise InputError(f"datasets.{name}.filter_answerable: needs --corpus")
        from jsarag.data.answerable import answerable

        flat = [ex for rows in sources.values() for _, ex in rows]
        ok = iter(answerable(flat, corpus))
        kept = {s: [r for r in rows if next(ok)] for s, rows in sources.items()}
        stats["answerable"] = {s: len(kept[s]) for s in sources}
        stats["dropped"] = {s: len(sources[s]) - len(kept[s]) for s in sources}
        for s in sources:
            log.info("%s/%s: kept %d answerable questions, dropped %d", name, s, len(kept[s]), len(sources[s]) - len(kept[s]))
        sources = kept
    splits = assign_splits(sources, cfg)
    for s in SPLITS:  # every split is read by a rule (train: train, valid; evaluation: test); n_<split>: 0 (API only) asks for none
        if not splits[s] and cfg.get(f"n_{s}") != 0:
            raise InputError(f"{layout.split(name, s)}: the {s} split would hold 0 examples (read {stats['read']}, after "
                             f"the filter {stats.get('answerable', stats['read'])}, split sizes from datasets.{name}.n_*); nothing written")
    stats["targets"] = apply_rule([ex for s in SPLITS for _, ex in splits[s]], rule, corpus)
    with contextlib.ExitStack() as stack:  # all splits renamed into place only if all succeed
        files_out = {s: stack.enter_context(atomic_open(layout.split(name, s))) for s in SPLITS}
        for s in SPLITS:
            for _, ex in splits[s]:
                files_out[s].write(json.dumps(ex, ensure_ascii=False) + "\n")
    stats["written"] = {s: len(splits[s]) for s in SPLITS}
    for s in SPLITS:  # each split records what it was made from (jsarag.fingerprint.check_split reads it)
        stamp_split(layout.split(name, s), len(splits[s]), {**files, **({"corpus": corpus} if corpus else {})})
    stats["sha256"] = {s: content_hash(layout.split(name, s)) for s in SPLITS}
    stats["seconds"] = round(time.time() - t0, 2)
    write_json(layout.dataset_stats(name), stats)
    log.info("%s: wrote %s in %.1fs", name, stats["written"], stats["seconds"])
    return stats
