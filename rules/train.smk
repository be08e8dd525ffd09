# Training stage: one job per dataset x method x seed. The loss of each method is computed by
# jsarag/trainers/{rag,vrag,jsa}.py (loss_from_scores), on top of jsarag/objectives.py.
wildcard_constraints:
    method="rag|vrag|jsa",
    seed=r"\d+",


rule train:
    input:
        unpack(model_inputs),
        examples="resources/datasets/{dataset}/train.jsonl",
    output:
        model=directory(f"{RUN}/model"),
        metrics=f"{RUN}/metrics.jsonl",
        summary=f"{RUN}/train_summary.json",
    params:
        json=method_params,
        run=RUN,
    threads: config["train"]["common"]["threads"]
    log:
        "logs/train/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/out/train/{dataset}/{method}/seed{seed}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.train --params {params.json:q} --train {input.examples:q} --passages {input.passages:q} "
        "--index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} --out {params.run:q} 2> {log:q}"
