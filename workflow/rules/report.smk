# Stage 6: aggregation over seeds into tables and figures laid out like the papers'.


rule aggregate:
    input:
        metrics=experiment_metrics,
        quarantine=experiment_quarantine,
    output:
        index=report(
            f"{R}/{{dataset}}/{{experiment}}/report/index.md",
            caption="../report/index.rst",
            category="{experiment}",
        ),
    log:
        f"{R}/logs/aggregate/{{dataset}}/{{experiment}}.log",
    conda:
        ENV
    params:
        experiment=experiment_json,
        dataset=dataset_spec_json,
        out=output_folder,
    shell:
        "merflow aggregate --experiment {wildcards.experiment:q} --spec {params.experiment:q}"
        " --dataset {params.dataset:q} --out {params.out:q} --metrics {input.metrics:q}"
        " --quarantine {input.quarantine:q} > {log:q} 2>&1"


rule report_index:
    input:
        experiment_reports,
    output:
        f"{R}/report/index.md",
    log:
        f"{R}/logs/aggregate/index.log",
    conda:
        ENV
    shell:
        "merflow report-index --out {output:q} {input:q} > {log:q} 2>&1"
