# Evaluation stage: generation and retrieval metrics of each trained model, the MIS sweep of
# JSA-RAG, and the estimator check on an enumerable knowledge base. Computed by
# `python -m jsarag.evaluate` (jsarag/evaluate/).
from jsarag.config import step_cost_params

rule evaluate:
    input:
        unpack(model_inputs),
        model=RUN.model,
        examples=L.split("{dataset}", "test"),
    output:
        predictions=RUN.predictions,
        metrics=RUN.eval_metrics,
    params:
        json=lambda w: run_json(w, evaluate=True),
        run=lambda w: L.run(w.dataset, w.method, w.seed).dir,
    threads: config["train"]["common"]["threads"]
    resources:
        **res("evaluate", config["train"]["common"]["threads"]),
    log:
        L.log("evaluate", "{dataset}", "{method}", "seed{seed}"),
    benchmark:
        L.benchmark("evaluate", "{dataset}", "{method}", "seed{seed}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.evaluate run --params {params.json:q} --examples {input.examples:q} --passages {input.passages:q} "
        "--index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} --run {params.run:q} 2> {log:q}"


rule mis_sweep:
    input:
        unpack(model_inputs),
        model=L.run("{dataset}", "jsa", "{seed}").model,
        examples=L.split("{dataset}", "valid"),
    output:
        L.run("{dataset}", "jsa", "{seed}").mis_sweep,
    params:
        json=lambda w: run_json(w, evaluate=True, method="jsa"),
        run=lambda w: L.run(w.dataset, "jsa", w.seed).dir,
    threads: config["train"]["common"]["threads"]
    resources:
        **res("mis_sweep", config["train"]["common"]["threads"]),
    log:
        L.log("mis_sweep", "{dataset}", "seed{seed}"),
    benchmark:
        L.benchmark("mis_sweep", "{dataset}", "seed{seed}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.evaluate mis-sweep --params {params.json:q} --examples {input.examples:q} --passages {input.passages:q} "
        "--index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} --run {params.run:q} 2> {log:q}"


# The optimizer steps of the configured methods, timed interleaved in one process at the shapes of the runs,
# what the cost claims are judged on (jsarag/evaluate/step_cost.py).
rule step_cost:
    input:
        unpack(model_inputs),
        examples=L.split("{dataset}", "train"),
    output:
        L.step_cost("{dataset}"),
    params:
        json=lambda w: as_json(step_cost_params(config, w.dataset)),
    threads: config["train"]["common"]["threads"]
    resources:
        **res("step_cost", config["train"]["common"]["threads"]),
    log:
        L.log("step_cost", "{dataset}"),
    benchmark:
        L.benchmark("step_cost", "{dataset}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.evaluate step-cost --params {params.json:q} --dataset {wildcards.dataset:q} --examples {input.examples:q} "
        "--passages {input.passages:q} --index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} "
        "--out {output:q} 2> {log:q}"


rule verify_estimators:
    output:
        L.estimators(),
    params:
        spec=as_json(config["verify"]),
    threads: 2
    resources:
        **res("verify_estimators", 2),
    log:
        L.log("verify", "estimators"),
    benchmark:
        L.benchmark("verify", "estimators")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.evaluate verify --params {params.spec:q} --threads {threads} --out {output:q} 2> {log:q}"


rule zero_shot:
    input:
        unpack(model_inputs),
        examples=L.split("{dataset}", "test"),
        **{f"baseline_{b}": L.baseline("{dataset}", b) for b in BASELINES},
    output:
        **{z: L.zero_shot("{dataset}", z) for z in ZERO_SHOT},
        metrics=L.zero_shot_metrics("{dataset}"),
    params:
        json=lambda w: as_json(run_params(config, w.dataset, "rag", config["seeds"][0], evaluate=True)),
        baselines=lambda w, input: " ".join(f"--baseline {b}={input['baseline_' + b]}" for b in BASELINES),
        outs=lambda w, output: " ".join(f"--out {k}={output[k]}" for k in (*ZERO_SHOT, "metrics")),
    threads: config["train"]["common"]["threads"]
    resources:
        **res("zero_shot", config["train"]["common"]["threads"]),
    log:
        L.log("zero_shot", "{dataset}"),
    benchmark:
        L.benchmark("zero_shot", "{dataset}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.evaluate zero-shot --params {params.json:q} --examples {input.examples:q} --passages {input.passages:q} "
        "--index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} {params.baselines} {params.outs} 2> {log:q}"


# Before training: does the dataset give posterior sampling something to learn from (docs/signal.md)?
# Not in `all`; ask for it: snakemake runs/nq/signal.json
rule signal:
    input:
        unpack(model_inputs),
        examples=L.split("{dataset}", "train"),
    output:
        L.signal("{dataset}"),
    params:
        json=lambda w: as_json(run_params(config, w.dataset, "jsa", config["seeds"][0], evaluate=True)),
    threads: config["train"]["common"]["threads"]
    resources:
        **res("zero_shot", config["train"]["common"]["threads"]),  # the same kind of job: the untrained models, no decoding
    log:
        L.log("signal", "{dataset}"),
    benchmark:
        L.benchmark("signal", "{dataset}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.evaluate signal --params {params.json:q} --examples {input.examples:q} --passages {input.passages:q} "
        "--index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} --out {output:q} --no-progress 2> {log:q}"


ALL_TARGETS.extend(L.zero_shot_metrics(d) for d in DATASETS)
