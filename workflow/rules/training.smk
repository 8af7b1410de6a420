# Stage 4: training, one job per (dataset, experiment, feature, model, seq_len, split, seed).
# Neural models ask for a GPU (`--resources gpu=1` serializes them on a workstation; Slurm gets
# `--gpus=1`); with gpu=0 the same job runs on the CPU. Baselines are CPU fits.

# RUN (common.smk) is merflow.runs.RUN_PATTERN under the results folder; the file names too.


rule train:
    input:
        unpack(run_inputs),
    output:
        history=f"{RUN}/{mfruns.HISTORY_FILE}",
        run=f"{RUN}/{mfruns.RUN_FILE}",
    log:
        f"{RUN}/{mfruns.TRAIN_LOG}",
    benchmark:
        f"{RUN}/{mfruns.TRAIN_BENCHMARK}"
    wildcard_constraints:
        model=NETWORKS,
    conda:
        ENV
    threads: train_threads
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        model_options=model_options_json,
        train=train_settings_json,
        fusion=fusion_json,
        run_dir=output_folder,
    shell:
        "python3 -m merflow train --run-dir {params.run_dir:q} --model {wildcards.model:q}"
        " --features {input.features:q} --clips {input.clips:q} --targets {input.targets:q}"
        " --split {input.split:q} --seq-len {wildcards.seq_len:q} --seed {wildcards.seed}"
        " --model-options {params.model_options:q} --train {params.train:q}"
        " --fusion {params.fusion:q}"
        " --gpu {resources.gpu} --threads {threads} > {log:q} 2>&1"


rule fit_baseline:
    input:
        unpack(run_inputs),
    output:
        history=f"{RUN}/{mfruns.HISTORY_FILE}",
        run=f"{RUN}/{mfruns.RUN_FILE}",
    log:
        f"{RUN}/{mfruns.TRAIN_LOG}",
    wildcard_constraints:
        model=BASELINES,
    conda:
        ENV
    threads: 1
    params:
        model_options=model_options_json,
        fusion=fusion_json,
        run_dir=output_folder,
    shell:
        "python3 -m merflow train --run-dir {params.run_dir:q} --model {wildcards.model:q}"
        " --features {input.features:q} --clips {input.clips:q} --targets {input.targets:q}"
        " --split {input.split:q} --seq-len {wildcards.seq_len:q} --seed {wildcards.seed}"
        " --model-options {params.model_options:q} --fusion {params.fusion:q}"
        " --gpu 0 --threads {threads} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(run_inputs),
        run=f"{RUN}/{mfruns.RUN_FILE}",
    output:
        predictions=f"{RUN}/{mfruns.predictions_file()}",
        metrics=f"{RUN}/{mfruns.metrics_file()}",
        train_metrics=f"{RUN}/{mfruns.metrics_file('train')}",
    log:
        f"{RUN}/{mfruns.EVALUATE_LOG}",
    conda:
        ENV
    threads: 1
    params:
        run_dir=output_folder,
    shell:
        "python3 -m merflow evaluate --run-dir {params.run_dir:q}"
        " --features {input.features:q} --clips {input.clips:q} --targets {input.targets:q}"
        " --split {input.split:q} --parts test train > {log:q} 2>&1"
