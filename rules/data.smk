# Data stage: downloads -> passage collections and example splits; exported models.
# Computed by `python -m jsarag.data` (jsarag/data/).
wildcard_constraints:
    dlfile="|".join(re.escape(f) for f in KEY_OF_FILE) or "NONE",
    corpus="|".join(re.escape(c) for c in config["corpora"]),
    dataset="|".join(re.escape(d) for d in config["datasets"]),
    role="retriever|generator",


rule download:
    output:
        L.download("{dlfile}"),
    params:
        key=lambda w: KEY_OF_FILE[w.dlfile],
        spec=lambda w: as_json(config["downloads"][KEY_OF_FILE[w.dlfile]]),
    log:
        L.log("download", "{dlfile}"),
    benchmark:
        L.benchmark("download", "{dlfile}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.data download --key {params.key:q} --params {params.spec:q} --out {output:q} 2> {log:q}"


rule prepare_corpus:
    input:
        lambda w: L.download(DOWNLOAD_FILE[config["corpora"][w.corpus]["download"]]),
    output:
        passages=L.passages("{corpus}"),
        offsets=L.passage_offsets("{corpus}"),
        stats=L.corpus_stats("{corpus}"),
    params:
        spec=lambda w: as_json(config["corpora"][w.corpus]),
    resources:
        **res("prepare_corpus", 1),
    log:
        L.log("prepare_corpus", "{corpus}"),
    benchmark:
        L.benchmark("prepare_corpus", "{corpus}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.data prepare-corpus --params {params.spec:q} --download {input:q} --out {output.passages:q} "
        "--stats {output.stats:q} 2> {log:q}"


rule prepare_dataset:
    input:
        unpack(dataset_downloads),
        corpus=dataset_corpus,
    output:
        **{s: L.split("{dataset}", s) for s in SPLITS},
        stats=L.dataset_stats("{dataset}"),
    params:
        spec=lambda w: as_json(config["datasets"][w.dataset]),
        downloads=dataset_download_args,
        corpus=lambda w, input: f"--corpus {input.corpus}" if input.corpus else "",
    resources:
        **res("prepare_dataset", 1),
    log:
        L.log("prepare_dataset", "{dataset}"),
    benchmark:
        L.benchmark("prepare_dataset", "{dataset}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.data prepare-dataset --name {wildcards.dataset} --params {params.spec:q} "
        "{params.downloads} {params.corpus} 2> {log:q}"


rule export_models:
    output:
        directory(L.model("{role}")),
    params:
        source=lambda w: config["models"][w.role]["source"],
        kind=lambda w: "encoder" if w.role == "retriever" else config["models"]["generator"].get("kind", "causal"),
        dtype=lambda w: export_dtype(config, w.role),
    resources:
        **res("export_models", 1),
    log:
        L.log("export_models", "{role}"),
    benchmark:
        L.benchmark("export_models", "{role}")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.data export-model --source {params.source:q} --kind {params.kind} --dtype {params.dtype} --out {output:q} 2> {log:q}"


ALL_TARGETS.extend(L.dataset_stats(d) for d in DATASETS)
