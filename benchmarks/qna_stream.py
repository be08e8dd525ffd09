"""Peak memory of reading MS MARCO QnA v2.1 answers: streamed (jsarag.data.json_stream) against one
json.load, on a synthetic file in the real columnar layout (10 passages of 80 words per query).

Prints one JSON line: rows, file MiB, peak RSS MiB and seconds of each, and the RSS ratio.
Usage: python benchmarks/qna_stream.py [--rows 60000]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def make(path: str, n: int) -> None:
    passages = json.dumps([{"is_selected": 0, "passage_text": "word " * 80, "url": f"http://example.org/{j}"} for j in range(10)])
    with open(path, "w") as f:
        f.write('{"answers": {' + ",".join(f'"{i}": ["answer number {i}"]' for i in range(n)) + "}, ")
        f.write('"passages": {' + ",".join(f'"{i}": {passages}' for i in range(n)) + "}, ")
        f.write('"query_id": {' + ",".join(f'"{i}": {1000000 + i}' for i in range(n)) + "}, ")
        f.write('"wellFormedAnswers": {' + ",".join(f'"{i}": "[]"' for i in range(n)) + "}}")


def measure(mode: str, path: str) -> None:
    t = time.perf_counter()
    if mode == "stream":
        from jsarag.data.questions import read_msmarco_answers

        out = read_msmarco_answers(path, None, path)
    else:
        with open(path, "rb") as f:
            d = json.load(f)
        out = {str(q): d["answers"][k] for k, q in d["query_id"].items()}
    print(json.dumps({"rows": len(out), "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - t}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        make(args.measure[1], args.rows) if args.measure[0] == "make" else measure(*args.measure)
        sys.exit()
    with tempfile.TemporaryDirectory() as tmp:
        # each step in its own process: Linux keeps a process's peak RSS across fork and exec
        path = os.path.join(tmp, "qna.json")
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--measure", "make", path], check=True)
        res = {}
        for mode in ("stream", "json_load"):
            out = subprocess.run([sys.executable, __file__, "--measure", mode, path], capture_output=True, text=True, check=True)
            res[mode] = json.loads(out.stdout)
        print(json.dumps({"rows": args.rows, "file_mib": round(os.path.getsize(path) / 2**20),
                          **{f"{m}_{k}": round(v, 1) for m, r in res.items() for k, v in r.items() if k != "rows"},
                          "rss_ratio_load_over_stream": round(res["json_load"]["rss_mib"] / res["stream"]["rss_mib"], 1)}))
