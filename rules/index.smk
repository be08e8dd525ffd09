# Index stage: BM25 and dense indexes per corpus, and the retrieval baselines per dataset.


rule bm25_index:
    input:
        "resources/corpora/{corpus}/collection/passages.jsonl",
    output:
        directory("resources/indexes/{corpus}/bm25"),
    threads: config["index"]["threads"]
    log:
        "logs/bm25_index/{corpus}.log",
    benchmark:
        "benchmarks/out/bm25_index/{corpus}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.index bm25 --collection resources/corpora/{wildcards.corpus}/collection "
        "--out {output:q} --threads {threads} 2> {log:q}"


rule dense_index:
    input:
        passages="resources/corpora/{corpus}/collection/passages.jsonl",
        model="resources/models/retriever",
    output:
        directory("resources/indexes/{corpus}/dense"),
    params:
        spec=as_json({**config["models"]["retriever"], "dense_batch_size": config["index"]["dense_batch_size"]}),
    threads: config["index"]["threads"]
    log:
        "logs/dense_index/{corpus}.log",
    benchmark:
        "benchmarks/out/dense_index/{corpus}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.index dense --passages {input.passages:q} --model {input.model:q} "
        "--params {params.spec:q} --out {output:q} --threads {threads} 2> {log:q}"


rule retrieval_baselines:
    input:
        examples="resources/datasets/{dataset}/test.jsonl",
        passages=lambda w: f"resources/corpora/{config['datasets'][w.dataset]['corpus']}/collection/passages.jsonl",
        bm25=lambda w: f"resources/indexes/{config['datasets'][w.dataset]['corpus']}/bm25",
        dense=lambda w: f"resources/indexes/{config['datasets'][w.dataset]['corpus']}/dense",
        model="resources/models/retriever",
    output:
        bm25="runs/{dataset}/baselines/bm25.jsonl",
        dense="runs/{dataset}/baselines/dense.jsonl",
        metrics="runs/{dataset}/baselines/metrics.json",
    params:
        spec=as_json({**config["models"]["retriever"], "dense_batch_size": config["index"]["dense_batch_size"]}),
    threads: config["index"]["threads"]
    log:
        "logs/retrieval_baselines/{dataset}.log",
    benchmark:
        "benchmarks/out/retrieval_baselines/{dataset}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.retrieval baselines --examples {input.examples:q} --passages {input.passages:q} "
        "--bm25 {input.bm25:q} --dense {input.dense:q} --model {input.model:q} --params {params.spec:q} "
        "--out-dir runs/{wildcards.dataset}/baselines --k 20 --threads {threads} 2> {log:q}"


ALL_TARGETS.extend(expand("runs/{dataset}/baselines/metrics.json", dataset=DATASETS))
