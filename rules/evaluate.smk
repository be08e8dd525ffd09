# Evaluation stage: generation and retrieval metrics of each trained model, the MIS sweep of
# JSA-RAG, and the estimator verification on an enumerable knowledge base.


rule evaluate:
    input:
        unpack(model_inputs),
        model=f"{RUN}/model",
        examples="resources/datasets/{dataset}/test.jsonl",
    output:
        predictions=f"{RUN}/eval/predictions.jsonl",
        metrics=f"{RUN}/eval/metrics.json",
    params:
        json=eval_params,
        out=f"{RUN}/eval",
    threads: config["train"]["common"]["threads"]
    log:
        "logs/evaluate/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/out/evaluate/{dataset}/{method}/seed{seed}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.evaluate run --params {params.json:q} --test {input.examples:q} --passages {input.passages:q} "
        "--index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} "
        "--model {input.model:q} --out {params.out:q} 2> {log:q}"


rule mis_sweep:
    input:
        unpack(model_inputs),
        model="runs/{dataset}/jsa/seed{seed}/model",
        examples="resources/datasets/{dataset}/valid.jsonl",
    output:
        "runs/{dataset}/jsa/seed{seed}/mis_sweep.jsonl",
    params:
        json=lambda w: params_for(w.dataset, "jsa", w.seed, evaluate=True),
    threads: config["train"]["common"]["threads"]
    log:
        "logs/mis_sweep/{dataset}/seed{seed}.log",
    benchmark:
        "benchmarks/out/mis_sweep/{dataset}/seed{seed}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.evaluate mis-sweep --params {params.json:q} --test {input.examples:q} --passages {input.passages:q} "
        "--index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} "
        "--model {input.model:q} --out {output:q} 2> {log:q}"


rule verify_estimators:
    output:
        "runs/verify/estimators.jsonl",
    params:
        draws=config["verify"]["draws"],
    threads: 2
    log:
        "logs/verify/estimators.log",
    benchmark:
        "benchmarks/out/verify/estimators.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.verify --draws {params.draws} --threads {threads} --out {output:q} > /dev/null 2> {log:q}"
