# Report stage: tables, figures and the check of the paper's claims.
# Reads runs/; writes results/tables, results/figures, results/claims_check.txt.
# `snakemake --report results/report.html` collects the report() outputs.


rule report_tables:
    input:
        unpack(report_inputs),
    output:
        [report(f"results/tables/{t}.csv", caption="../report/tables.rst", category="Tables", labels={"table": t})
         for t in REPORT_TABLES],
        [f"results/tables/{t}.{ext}" for t in REPORT_TABLES for ext in ("md", "tex")],
    params:
        cfg=REPORT_CONFIG,
    log:
        "logs/report/tables.log",
    benchmark:
        "benchmarks/out/report/tables.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.report tables --runs runs --config-json {params.cfg:q} --out results 2> {log:q}"


rule report_figures:
    input:
        unpack(report_inputs),
    output:
        [report(f"results/figures/{f}.png", caption="../report/figures.rst", category="Figures", labels={"figure": f})
         for f in REPORT_FIGURES],
    params:
        cfg=REPORT_CONFIG,
    log:
        "logs/report/figures.log",
    benchmark:
        "benchmarks/out/report/figures.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.report figures --runs runs --config-json {params.cfg:q} --out results 2> {log:q}"


rule claims_check:
    input:
        claims=os.path.join(workflow.basedir, "jsarag", "claims.yaml"),
        tables=[f"results/tables/{t}.csv" for t in REPORT_TABLES],
    output:
        report("results/claims_check.txt", caption="../report/claims.rst", category="Claims"),
    log:
        "logs/report/claims_check.log",
    benchmark:
        "benchmarks/out/report/claims_check.tsv"
    conda:
        "../envs/jsarag.yaml"
    shell:
        "python -m jsarag.claims --claims {input.claims:q} --tables results/tables --out {output:q} > {log:q} 2>&1"


ALL_TARGETS.extend([f"results/figures/{f}.png" for f in REPORT_FIGURES] + ["results/claims_check.txt"])
