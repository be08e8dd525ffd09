# Helpers shared by the rule files (no rules here). Every path comes from jsarag.layout; every
# job's params come from jsarag.config.
import os
import re
import sys

from jsarag.config import IndexConfig, as_json, export_dtype, index_params, report_params, run_params
from jsarag.data.download import download_filename
from jsarag.layout import BASELINES, FIGURES, LAYOUT as L, SPLITS, TABLES, TABLE_FORMATS, ZERO_SHOT
from jsarag.resources import rule_resources, train_launcher

# Without --use-conda, `python` in the rules is the Python that runs Snakemake (e.g. .venv/bin).
if not workflow.deployment_settings.deployment_method:
    _path = os.environ["PATH"]
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), _path])

# Jobs that need the network (downloads, often impossible on compute nodes) or take seconds run
# where Snakemake runs, also under --executor slurm; every other rule asks for res(rule, threads).
localrules:
    all,
    download,
    report_tables,
    report_figures,
    claims_check,


def res(rule, threads=1):
    """The rule's cluster resources (runtime, mem_mb, cpus_per_task, gpu, ...): the config's
    `resources` section over the defaults of jsarag.config.ResourcesConfig, sized in one place."""
    return rule_resources(config, rule, threads)


TRAIN_LAUNCH = train_launcher(config)  # python; several GPUs: srun tasks under SLURM, torchrun --standalone outside it (jsarag/resources.py)

DOWNLOAD_FILE = {k: download_filename(k, v) for k, v in config["downloads"].items()}
KEY_OF_FILE = {f: k for k, f in DOWNLOAD_FILE.items()}
DATASETS = list(config["datasets"])
# a run's folder, with its wildcards
RUN = L.run("{dataset}", "{method}", "{seed}")


def corpus_of(w):
    return config["datasets"][w.dataset]["corpus"]


def dataset_downloads(wildcards):
    d = config["datasets"][wildcards.dataset]
    keys = {d["download"]} if "download" in d else set()
    keys |= {m["download"] for m in d["members"].values() if isinstance(m, dict)}
    return {k: L.download(DOWNLOAD_FILE[k]) for k in sorted(keys)}


def dataset_download_args(wildcards, input):
    return " ".join(f"--download {k}={p}" for k, p in dataset_downloads(wildcards).items())


def dataset_corpus(wildcards):
    d = config["datasets"][wildcards.dataset]
    # read for the answerable filter, the `contained` target rule, and the gold-passage check of jsonl and perlfaq
    need = d.get("filter_answerable") or d.get("target") == "contained" or d["format"] in ("jsonl", "perlfaq")
    return L.passages(d["corpus"]) if need else []


def run_json(w, evaluate=False, method=None):
    return as_json(run_params(config, w.dataset, method or w.method, w.seed, evaluate=evaluate))


def model_inputs(w):
    c = corpus_of(w)
    return {"passages": L.passages(c), "index": L.dense_index(c), "retriever": L.model("retriever"),
            "generator": L.model("generator")}


def report_inputs(wildcards):
    """Every run file the report reads, for the configured datasets x methods x seeds."""
    runs = [L.run(d, m, s) for d in config["datasets"] for m in config["methods"] for s in config["seeds"]]
    return {
        "predictions": [r.predictions for r in runs],
        "eval_metrics": [r.eval_metrics for r in runs],
        "train_logs": [r.train_log for r in runs],
        "summaries": [r.summary for r in runs],
        "mis_sweeps": [L.run(d, "jsa", s).mis_sweep for d in config["datasets"] for s in config["seeds"]
                       if "jsa" in config["methods"]],
        "baselines": [L.baseline(d, b) for d in config["datasets"] for b in BASELINES],
        "zero_shot": [L.zero_shot(d, z) for d in config["datasets"] for z in ZERO_SHOT],
        "estimators": L.estimators(),
    }
