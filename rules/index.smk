# Index stage: BM25 and dense indexes per corpus, and the retrieval baselines per dataset.
# Computed by `python -m jsarag.index` (jsarag/index/).


rule bm25_index:
    input:
        L.passages("{corpus}"),
    output:
        directory(L.bm25_index("{corpus}")),
    params:
        collection=lambda w: L.collection(w.corpus),
        spec=as_json(config["index"]),
        prebuilt=lambda w: f"--prebuilt {config['corpora'][w.corpus]['bm25_prebuilt']}" if "bm25_prebuilt" in config["corpora"][w.corpus] else "",
    threads: config["index"]["threads"]
    resources:
        **res("bm25_index", config["index"]["threads"]),
    log:
        L.log("bm25_index", "{corpus}"),
    benchmark:
        L.benchmark("bm25_index", "{corpus}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.index bm25 --collection {params.collection:q} --params {params.spec:q} {params.prebuilt} --out {output:q} 2> {log:q}"


DENSE_SHARDS = IndexConfig.from_dict(config["index"], "index").shards


rule dense_shard:
    # one slice of passages.jsonl per job: a killed job redoes only its own shard
    input:
        passages=L.passages("{corpus}"),
        model=L.model("retriever"),
    output:
        L.dense_shard("{corpus}", "{shard}"),
    wildcard_constraints:
        shard=r"\d+",
    params:
        spec=as_json(index_params(config)),
    threads: config["index"]["threads"]
    resources:
        **res("dense_shard", config["index"]["threads"]),
    log:
        L.log("dense_shard", "{corpus}", "{shard}"),
    benchmark:
        L.benchmark("dense_shard", "{corpus}", "{shard}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.index dense-shard --shard {wildcards.shard} --passages {input.passages:q} --model {input.model:q} "
        "--params {params.spec:q} --out {output:q} 2> {log:q}"


rule dense_index:
    input:
        passages=L.passages("{corpus}"),
        shards=expand(L.dense_shard("{{corpus}}", "{shard}"), shard=range(DENSE_SHARDS)),
    output:
        directory(L.dense_index("{corpus}")),
    resources:
        **res("dense_index", 1),
    log:
        L.log("dense_index", "{corpus}"),
    benchmark:
        L.benchmark("dense_index", "{corpus}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.index dense-merge --passages {input.passages:q} --shards {input.shards:q} --out {output:q} 2> {log:q}"


rule retrieval_baselines:
    input:
        examples=L.split("{dataset}", "test"),
        passages=lambda w: L.passages(corpus_of(w)),
        bm25=lambda w: L.bm25_index(corpus_of(w)),
        dense=lambda w: L.dense_index(corpus_of(w)),
        model=L.model("retriever"),
    output:
        **{b: L.baseline("{dataset}", b) for b in BASELINES},
        metrics=L.baseline_metrics("{dataset}"),
    params:
        spec=as_json(index_params(config)),
    threads: config["index"]["threads"]
    resources:
        **res("retrieval_baselines", config["index"]["threads"]),
    log:
        L.log("retrieval_baselines", "{dataset}"),
    benchmark:
        L.benchmark("retrieval_baselines", "{dataset}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.index baselines --dataset {wildcards.dataset} --examples {input.examples:q} "
        "--passages {input.passages:q} --bm25 {input.bm25:q} --dense {input.dense:q} --model {input.model:q} "
        "--params {params.spec:q} --k 20 2> {log:q}"


ALL_TARGETS.extend(L.baseline_metrics(d) for d in DATASETS)
