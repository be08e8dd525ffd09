# Training stage: one job per dataset x method x seed. The loss of each method is computed by
# jsarag/trainers/{rag,vrag,jsa}.py (loss_from_scores), on top of jsarag/objectives.py.
wildcard_constraints:
    method="rag|vrag|jsa",
    seed=r"\d+",

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
