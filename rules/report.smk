# Report stage: tables, figures, the check of the paper's claims and the results page
# (results/README.md). Computed by `python -m jsarag.report` (jsarag/report/). `snakemake --report results/report.html` collects the
# report() outputs.
REPORT_JSON = as_json(report_params(config))


rule report_tables:
    input:
        unpack(report_inputs),
        # the methods timed interleaved: the rows of the cost table that the cost claims read (jsarag/report/cost.py)
        step_cost=[L.step_cost(d) for d in DATASETS] if len(config["methods"]) > 1 else [],
    output:
        [report(L.table(t), caption="../report/tables.rst", category="Tables", labels={"table": t}) for t in TABLES],
        [L.table(t, fmt) for t in TABLES for fmt in TABLE_FORMATS if fmt != "csv"],
    params:
        cfg=REPORT_JSON,
    log:
        L.log("report", "tables"),
    benchmark:
        L.benchmark("report", "tables")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.report tables --params {params.cfg:q} 2> {log:q}"


rule report_figures:
    input:
        unpack(report_inputs),
    output:
        [report(L.figure(f), caption="../report/figures.rst", category="Figures", labels={"figure": f}) for f in FIGURES],
    params:
        cfg=REPORT_JSON,
    log:
        L.log("report", "figures"),
    benchmark:
        L.benchmark("report", "figures")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.report figures --params {params.cfg:q} 2> {log:q}"


rule claims_check:
    input:
        # relative to the working directory: the path lands in report.html, which holds no machine path
        claims=os.path.relpath(os.path.join(workflow.basedir, "jsarag", "report", "claims.yaml")),
        tables=[L.table(t) for t in TABLES],
        estimators=L.estimators(),
    output:
        report(L.claims_check(), caption="../report/claims.rst", category="Claims"),
        L.claims_json(),
    log:
        L.log("report", "claims_check"),
    benchmark:
        L.benchmark("report", "claims_check")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.report claims --claims {input.claims:q} > {log:q} 2>&1"


# the config file(s) the results come from (as the Snakefile validates them): the page records their sha256
PAGE_CONFIGS = [str(f) for f in workflow.overwrite_configfiles or ["config.yaml"]]


rule report_page:
    input:
        tables=[L.table(t, fmt) for t in TABLES for fmt in ("csv", "md")],
        figures=[L.figure(f) for f in FIGURES],
        claims=L.claims_json(),
        estimators=L.estimators(),
        config=PAGE_CONFIGS,
    output:
        L.page(),
    params:
        cfg=REPORT_JSON,
    log:
        L.log("report", "page"),
    benchmark:
        L.benchmark("report", "page")
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.report page --params {params.cfg:q} --config {input.config:q} 2> {log:q}"


ALL_TARGETS.extend([L.figure(f) for f in FIGURES] + [L.claims_check(), L.page()])
