# Training stage: one job per dataset x method x seed. `python -m jsarag.train` builds the trainer
# of the method; its loss is `loss_from_scores` in jsarag/train/{rag,vrag,jsa}.py, on top of
# jsarag/train/objectives.py (and jsarag/train/mis.py for JSA-RAG's E-step).
wildcard_constraints:
    method="rag|vrag|jsa",
    seed=r"\d+",


rule train:
    input:
        unpack(model_inputs),
        examples=L.split("{dataset}", "train"),
        valid=L.split("{dataset}", "valid"),
    output:
        model=directory(RUN.model),
        metrics=RUN.train_log,
        summary=RUN.summary,
    params:
        json=run_json,
        run=RUN.dir,
        launch=TRAIN_LAUNCH,
    threads: config["train"]["common"]["threads"]
    resources:
        **res("train", config["train"]["common"]["threads"]),
    log:
        L.log("train", "{dataset}", "{method}", "seed{seed}"),
    benchmark:
        L.benchmark("train", "{dataset}", "{method}", "seed{seed}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        # {params.launch} ends in `exec`: no shell between Snakemake and the trainer, which checkpoints on
        # SIGTERM (jsarag/train/preemption.py); with several GPUs, srun starts one rank per GPU (jsarag/resources.py)
        "{params.launch} --params {params.json:q} --train {input.examples:q} --valid {input.valid:q} --passages {input.passages:q} "
        "--index {input.index:q} --retriever {input.retriever:q} --generator {input.generator:q} --out {params.run:q} 2> {log:q}"
