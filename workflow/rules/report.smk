# Stage 6: aggregation over seeds into tables and figures laid out like the papers', each one
# marked for `snakemake --report results/report.html` (captions in workflow/report/).


report: "../report/workflow.rst"


rule aggregate:
    input:
        metrics=experiment_metrics,
        quarantine=experiment_quarantine,
    output:
        report(
            directory(f"{R}/{{dataset}}/{{experiment}}/report"),
            patterns=REPORT_FILES,
            caption="../report/experiment.rst",
            category="{experiment} ({dataset})",
            subcategory=report_section,
            labels=report_labels,
        ),
    log:
        f"{R}/logs/aggregate/{{dataset}}/{{experiment}}.log",
    conda:
        ENV
    params:
        experiment=experiment_json,
        dataset=dataset_spec_json,
    shell:
        "python3 -m merflow aggregate --experiment {wildcards.experiment:q} --spec {params.experiment:q}"
        " --dataset {params.dataset:q} --out {output:q} --metrics {input.metrics:q}"
        " --quarantine {input.quarantine:q} > {log:q} 2>&1"


rule report_index:
    input:
        experiment_reports,
    output:
        report(
            f"{R}/report/index.md",
            caption="../report/report_index.rst",
            category="Overview",
            labels={"file": "index", "format": "Markdown"},
        ),
    log:
        f"{R}/logs/aggregate/index.log",
    conda:
        ENV
    params:
        indexes=experiment_indexes,
    shell:
        "python3 -m merflow report-index --out {output:q} {params.indexes:q} > {log:q} 2>&1"
