"""Every path of the project's file tree, written down once.

- `resources/`: downloads, passage collections, example splits, exported models, indexes;
- `runs/`: one folder per training run (model, logs, checkpoint, evaluation), the retrieval
  baselines, the MIS sweeps and the estimator check;
- `results/`: the tables, figures, claims check and results page (README.md) that are committed;
- `logs/` and `benchmarks/out/`: one log and one benchmark file per workflow job.

The rules build their inputs and outputs here (with `{wildcard}` strings in place of names), and
the code that writes or reads a file asks the same functions, so the tree is defined in one place.
A `Layout` is rooted at the project folder; paths are strings relative to it unless `root` is set.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

SPLITS = ("train", "valid", "test")
BASELINES = ("bm25", "dense")
# zero-shot rows: the untrained generator reading each baseline's top-1, and the untrained posterior retriever
ZERO_SHOT = (*BASELINES, "posterior")
TABLES = ("generation", "retrieval_prior", "retrieval_posterior", "cost", "grad_norm", "mis", "significance")
TABLE_FORMATS = ("csv", "md", "tex")
FIGURES = ("grad_norm_posterior", "loss_curves", "acceptance_rate", "recall_at_k", "estimators", "validation_curves")


def _in_run(*parts: str) -> property:
    return property(lambda self: os.path.join(self.dir, *parts))


@dataclass(frozen=True)
class RunFiles:
    """The files of one training run, rooted at its folder."""
    dir: str

    model = _in_run("model")  # the trained parameters (a folder: Snakemake's output)
    weights = _in_run("model", "trainable.pt")
    model_config = _in_run("model", "config.json")
    train_log = _in_run("metrics.jsonl")
    summary = _in_run("train_summary.json")
    checkpoint_dir = _in_run("checkpoint")
    checkpoint = _in_run("checkpoint", "last.pt")
    eval_dir = _in_run("eval")
    predictions = _in_run("eval", "predictions.jsonl")
    eval_metrics = _in_run("eval", "metrics.json")
    mis_sweep = _in_run("mis_sweep.jsonl")


@dataclass(frozen=True)
class Layout:
    root: str = ""

    def _p(self, *parts) -> str:
        return os.path.join(self.root, *map(str, parts)) if self.root else os.path.join(*map(str, parts))

    # -- resources/ ------------------------------------------------------------------------------
    def download(self, filename: str) -> str:
        return self._p("resources", "downloads", filename)

    def collection(self, corpus: str) -> str:
        """The folder holding a corpus's passages.jsonl (what Lucene's JsonCollection reads)."""
        return self._p("resources", "corpora", corpus, "collection")

    def passages(self, corpus: str) -> str:
        return self._p("resources", "corpora", corpus, "collection", "passages.jsonl")

    def passage_offsets(self, corpus: str) -> str:
        return offsets_of(self.passages(corpus))

    def corpus_stats(self, corpus: str) -> str:
        """Counts and content hash of a collection (beside collection/, which Lucene reads whole)."""
        return self._p("resources", "corpora", corpus, "stats.json")

    def dataset_dir(self, dataset: str) -> str:
        return self._p("resources", "datasets", dataset)

    def split(self, dataset: str, split: str) -> str:
        return self._p("resources", "datasets", dataset, f"{split}.jsonl")

    def dataset_stats(self, dataset: str) -> str:
        return self._p("resources", "datasets", dataset, "stats.json")

    def model(self, role: str) -> str:
        return self._p("resources", "models", role)

    def bm25_index(self, corpus: str) -> str:
        return self._p("resources", "indexes", corpus, "bm25")

    def dense_index(self, corpus: str) -> str:
        return self._p("resources", "indexes", corpus, "dense")

    def dense_shards_dir(self, corpus: str) -> str:
        return self._p("resources", "indexes", corpus, "dense_shards")

    def dense_shard(self, corpus: str, shard) -> str:
        """One shard's fp16 passage embeddings (jsarag.index.shards)."""
        return self._p("resources", "indexes", corpus, "dense_shards", f"{shard}.f16.npy")

    # -- runs/ ---------------------------------------------------------------------------------
    def run(self, dataset: str, method: str, seed) -> RunFiles:
        return RunFiles(self._p("runs", dataset, method, f"seed{seed}"))

    def baselines_dir(self, dataset: str) -> str:
        return self._p("runs", dataset, "baselines")

    def baseline(self, dataset: str, name: str) -> str:
        return self._p("runs", dataset, "baselines", f"{name}.jsonl")

    def baseline_metrics(self, dataset: str) -> str:
        return self._p("runs", dataset, "baselines", "metrics.json")

    def zero_shot_dir(self, dataset: str) -> str:
        return self._p("runs", dataset, "zero_shot")

    def zero_shot(self, dataset: str, name: str) -> str:
        return self._p("runs", dataset, "zero_shot", f"{name}.jsonl")

    def zero_shot_metrics(self, dataset: str) -> str:
        return self._p("runs", dataset, "zero_shot", "metrics.json")

    def step_cost(self, dataset: str) -> str:
        """The methods' optimizer steps timed interleaved (jsarag.evaluate.step_cost)."""
        return self._p("runs", dataset, "step_cost.json")
    def signal(self, dataset: str) -> str:
        """The untrained models' signal for posterior sampling on the train split (jsarag.evaluate.signal)."""
        return self._p("runs", dataset, "signal.json")

    def estimators(self) -> str:
        return self._p("runs", "verify", "estimators.jsonl")

    # -- results/ --------------------------------------------------------------------------------
    def tables_dir(self) -> str:
        return self._p("results", "tables")

    def table(self, name: str, fmt: str = "csv") -> str:
        return self._p("results", "tables", f"{name}.{fmt}")

    def figures_dir(self) -> str:
        return self._p("results", "figures")

    def figure(self, name: str) -> str:
        return self._p("results", "figures", f"{name}.png")

    def claims_check(self) -> str:
        return self._p("results", "claims_check.txt")

    def claims_json(self) -> str:
        """The claims check's numbers, one record per line of claims_check.txt (jsarag.report.claims)."""
        return self._p("results", "claims_check.json")

    def page(self) -> str:
        """The results page a repository host shows (jsarag.report.page)."""
        return self._p("results", "README.md")

    # -- per-job logs and benchmarks -----------------------------------------------------------
    def log(self, rule: str, *parts: str) -> str:
        return self._p("logs", rule, *parts[:-1], f"{parts[-1] if parts else rule}.log")

    def benchmark(self, rule: str, *parts: str) -> str:
        return self._p(self.benchmark_dir(), rule, *parts[:-1], f"{parts[-1] if parts else rule}.tsv")

    def benchmark_dir(self) -> str:
        """Where every job's benchmark file lies, one folder per rule (jsarag.report.budget sums them)."""
        return self._p("benchmarks", "out")


def offsets_of(passages_jsonl: str | os.PathLike) -> str:
    """The byte-offset index written beside a passage file (jsarag.model.passages)."""
    return f"{passages_jsonl}.offsets.npy"


LAYOUT = Layout()
