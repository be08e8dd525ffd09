# Report stage: tables, figures and the check of the paper's claims (helper-B owned).
# Reads runs/ as laid out in the contracts doc; writes results/tables, results/figures,
# results/claims_check.txt. `snakemake --report results/report.html` collects the report() outputs.
import json as _json

REPORT_TABLES = ["generation", "retrieval_prior", "retrieval_posterior", "cost", "grad_norm", "mis", "significance"]
REPORT_FIGURES = ["grad_norm_posterior", "loss_curves", "acceptance_rate", "recall_at_k", "estimators"]
# Only the config sections the report reads: editing another section does not rerun the report.
REPORT_CONFIG = _json.dumps({k: config[k] for k in ("datasets", "methods", "seeds", "evaluate", "train") if k in config},
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


rule report_tables:
    input:
        unpack(report_inputs),
    output:
        [report(f"results/tables/{t}.csv", caption="../report/tables.rst", category="Tables", labels={"table": t})
         for t in REPORT_TABLES],
        [f"results/tables/{t}.{ext}" for t in REPORT_TABLES for ext in ("md", "tex")],
    params:
        cfg=REPORT_CONFIG,
    log:
        "logs/report/tables.log",
    benchmark:
        "benchmarks/out/report/tables.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.report tables --runs runs --config-json {params.cfg:q} --out results 2> {log:q}"


rule report_figures:
    input:
        unpack(report_inputs),
    output:
        [report(f"results/figures/{f}.png", caption="../report/figures.rst", category="Figures", labels={"figure": f})
         for f in REPORT_FIGURES],
    params:
        cfg=REPORT_CONFIG,
    log:
        "logs/report/figures.log",
    benchmark:
        "benchmarks/out/report/figures.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.report figures --runs runs --config-json {params.cfg:q} --out results 2> {log:q}"


rule claims_check:
    input:
        claims="jsarag/claims.yaml",
        tables=[f"results/tables/{t}.csv" for t in REPORT_TABLES],
    output:
        report("results/claims_check.txt", caption="../report/claims.rst", category="Claims"),
    log:
        "logs/report/claims_check.log",
    benchmark:
        "benchmarks/out/report/claims_check.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.claims --claims {input.claims:q} --tables results/tables --out {output:q} > {log:q} 2>&1"


ALL_TARGETS.extend([f"results/figures/{f}.png" for f in REPORT_FIGURES] + ["results/claims_check.txt"])
