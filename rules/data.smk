# Data stage: downloads -> passage collections and example splits; exported models.
wildcard_constraints:
    dlfile="|".join(re.escape(f) for f in KEY_OF_FILE) or "NONE",
    corpus="|".join(re.escape(c) for c in config["corpora"]),
    dataset="|".join(re.escape(d) for d in config["datasets"]),
    role="retriever|generator",


rule download:
    output:
        "resources/downloads/{dlfile}",
    params:
        key=lambda w: KEY_OF_FILE[w.dlfile],
        spec=lambda w: as_json(config["downloads"][KEY_OF_FILE[w.dlfile]]),
    log:
        "logs/download/{dlfile}.log",
    benchmark:
        "benchmarks/out/download/{dlfile}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.data download --key {params.key:q} --params {params.spec:q} --out {output:q} 2> {log:q}"


rule prepare_corpus:
    input:
        lambda w: download_path(config["corpora"][w.corpus]["download"]),
    output:
        passages="resources/corpora/{corpus}/collection/passages.jsonl",
        offsets="resources/corpora/{corpus}/collection/passages.jsonl.offsets.npy",
    params:
        spec=lambda w: as_json(config["corpora"][w.corpus]),
    log:
        "logs/prepare_corpus/{corpus}.log",
    benchmark:
        "benchmarks/out/prepare_corpus/{corpus}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.data prepare-corpus --params {params.spec:q} --download {input:q} --out {output.passages:q} 2> {log:q}"


rule prepare_dataset:
    input:
        unpack(dataset_downloads),
        corpus=dataset_corpus,
    output:
        train="resources/datasets/{dataset}/train.jsonl",
        valid="resources/datasets/{dataset}/valid.jsonl",
        test="resources/datasets/{dataset}/test.jsonl",
        stats="resources/datasets/{dataset}/stats.json",
    params:
        spec=lambda w: as_json(config["datasets"][w.dataset]),
        downloads=dataset_download_args,
        corpus=lambda w, input: f"--corpus {input.corpus}" if input.corpus else "",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/out/prepare_dataset/{dataset}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.data prepare-dataset --name {wildcards.dataset} --params {params.spec:q} "
        "{params.downloads} {params.corpus} --out-dir resources/datasets/{wildcards.dataset} 2> {log:q}"


rule export_models:
    output:
        directory("resources/models/{role}"),
    params:
        source=lambda w: config["models"][w.role]["source"],
        kind=lambda w: "encoder" if w.role == "retriever" else config["models"]["generator"].get("kind", "causal"),
    log:
        "logs/export_models/{role}.log",
    benchmark:
        "benchmarks/out/export_models/{role}.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.models export --source {params.source:q} --kind {params.kind} --out {output:q} 2> {log:q}"


ALL_TARGETS.extend(expand("resources/datasets/{dataset}/stats.json", dataset=DATASETS))
