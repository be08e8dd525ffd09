# Helpers shared by the rule files (no rules here).
import json
import os
import re
import sys

from jsarag.download import download_filename

# Without --use-conda, `python` in the rules is the Python that runs Snakemake (e.g. .venv/bin).
if not workflow.deployment_settings.deployment_method:
    _path = os.environ["PATH"]
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), _path])

DOWNLOAD_FILE = {k: download_filename(k, v) for k, v in config["downloads"].items()}
KEY_OF_FILE = {f: k for k, f in DOWNLOAD_FILE.items()}
DATASETS = list(config["datasets"])


def as_json(obj):
    """A config section as a stable JSON string: a params value, so editing one section reruns
    only the jobs that read it."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def download_path(key):
    return f"resources/downloads/{DOWNLOAD_FILE[key]}"


def dataset_corpus_dir(dataset):
    return f"resources/corpora/{config['datasets'][dataset]['corpus']}"


def dataset_downloads(wildcards):
    d = config["datasets"][wildcards.dataset]
    keys = {d["download"]} if "download" in d else set()
    keys |= {m["download"] for m in d["members"].values() if isinstance(m, dict)}
    return {k: download_path(k) for k in sorted(keys)}


def dataset_download_args(wildcards, input):
    return " ".join(f"--download {k}={p}" for k, p in dataset_downloads(wildcards).items())


def dataset_corpus(wildcards):
    d = config["datasets"][wildcards.dataset]
    if d.get("filter_answerable"):
        return f"resources/corpora/{d['corpus']}/collection/passages.jsonl"
    return []


# -- train / evaluate -----------------------------------------------------------------------
RUN = "runs/{dataset}/{method}/seed{seed}"


def corpus_of(w):
    return config["datasets"][w.dataset]["corpus"]


def params_for(dataset, method, seed, evaluate=False):
    """Everything a train (or, with evaluate, an evaluate) job reads from the config, as one JSON
    string: a changed evaluate section reruns evaluation only, not training."""
    return as_json({
        "method": method, "dataset": dataset, "task": config["datasets"][dataset]["task"],
        "train": {**config["train"]["common"], **config["train"].get(method, {}), "seed": int(seed)},
        "retriever": config["models"]["retriever"], "generator": config["models"]["generator"],
        **({"evaluate": config["evaluate"]} if evaluate else {}),
    })


def method_params(w):
    return params_for(w.dataset, w.method, w.seed)


def eval_params(w):
    return params_for(w.dataset, w.method, w.seed, evaluate=True)


def model_inputs(w):
    c = corpus_of(w)
    return {
        "passages": f"resources/corpora/{c}/collection/passages.jsonl",
        "index": f"resources/indexes/{c}/dense",
        "retriever": "resources/models/retriever",
        "generator": "resources/models/generator",
    }


# -- report -------------------------------------------------------------------------------
REPORT_TABLES = ["generation", "retrieval_prior", "retrieval_posterior", "cost", "grad_norm", "mis", "significance"]
REPORT_FIGURES = ["grad_norm_posterior", "loss_curves", "acceptance_rate", "recall_at_k", "estimators"]
# Only the config sections the report reads: editing another section does not rerun the report.
REPORT_CONFIG = json.dumps({k: config[k] for k in ("datasets", "methods", "seeds", "evaluate", "train") if k in config},
                            sort_keys=True, separators=(",", ":"))


def report_inputs(wildcards):
    """Every run file the report reads, for the configured datasets x methods x seeds."""
    runs = [f"runs/{d}/{m}/seed{s}" for d in config["datasets"] for m in config["methods"] for s in config["seeds"]]
    return {
        "predictions": [f"{r}/eval/predictions.jsonl" for r in runs],
        "eval_metrics": [f"{r}/eval/metrics.json" for r in runs],
        "train_logs": [f"{r}/metrics.jsonl" for r in runs],
        "summaries": [f"{r}/train_summary.json" for r in runs],
        "mis_sweeps": [f"runs/{d}/jsa/seed{s}/mis_sweep.jsonl" for d in config["datasets"] for s in config["seeds"]
                       if "jsa" in config["methods"]],
        "baselines": [f"runs/{d}/baselines/{b}.jsonl" for d in config["datasets"] for b in ("bm25", "dense")],
        "estimators": "runs/verify/estimators.jsonl",
    }
