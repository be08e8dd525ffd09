# Evaluation stage: generation and retrieval metrics of each trained model, the MIS sweep of
# JSA-RAG, and the estimator check on an enumerable knowledge base. Computed by
# `python -m jsarag.evaluate` (jsarag/evaluate/).
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
