# Stage 2: features. One job per (dataset, feature, shard) so that `--cores N` keeps N
# processes busy and a changed feature parameter re-runs that feature only; shards are then
# merged into one table per feature.


rule extract_features:
    input:
        clips=indexed_shard,
        weights=pretrained_weights,
    output:
        table=f"{R}/{{dataset}}/features/{{feature}}/shard-{{shard}}.parquet",
        quarantine=f"{R}/{{dataset}}/features/{{feature}}/shard-{{shard}}.quarantine.parquet",
    log:
        f"{R}/logs/features/{{dataset}}/{{feature}}/shard-{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/features/{{dataset}}/{{feature}}/shard-{{shard}}.tsv"
    wildcard_constraints:
        feature=COMPUTED_FEATURES,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=feature_gpus,  # pretrained networks (musicnn) infer on a GPU when there is one
    params:
        feature_params=feature_params_json,
        on_bad_audio=config["on_bad_audio"],
    shell:
        "python3 -m merflow features --clips {input.clips:q} --feature {wildcards.feature:q}"
        " --params {params.feature_params:q} --shard {wildcards.shard}"
        " --out {output.table:q} --quarantine {output.quarantine:q}"
        " --on-bad-audio {params.on_bad_audio} --gpu {resources.gpu} > {log:q} 2>&1"


# Your own embeddings (features embeddings / embeddings_500ms), read from features.<name>.path and
# checked against the index; the path's content is a parameter, so a new export re-imports.
rule import_embeddings:
    input:
        clips=f"{R}/{{dataset}}/clips.parquet",
    output:
        table=f"{R}/{{dataset}}/features/{{feature}}.parquet",
        quarantine=f"{R}/{{dataset}}/features/{{feature}}.quarantine.parquet",
    log:
        f"{R}/logs/features/{{dataset}}/{{feature}}/import.log",
    wildcard_constraints:
        feature=IMPORTED_FEATURES,
    conda:
        ENV
    params:
        feature_params=feature_params_json,
        content=imported_fingerprint,
    shell:
        "python3 -m merflow import-embeddings --clips {input.clips:q} --feature {wildcards.feature:q}"
        " --params {params.feature_params:q} --out {output.table:q}"
        " --quarantine {output.quarantine:q} > {log:q} 2>&1"


# Pretrained weights come from a package registry (the musicnn wheel on PyPI) into the user's
# cache ($MERFLOW_CACHE): a local rule, so that on a cluster it runs where the network is.
localrules:
    fetch_pretrained,


# One job writes both taggers: a job per model would convert the same wheel twice, at once.
rule fetch_pretrained:
    output:
        [
            f"{PRETRAINED_CACHE}/musicnn/{model}.safetensors"
            for model in PRETRAINED_MODELS
        ],
    log:
        f"{R}/logs/pretrained/musicnn.log",
    conda:
        ENV
    shell:
        "python3 -m merflow pretrained fetch musicnn > {log:q} 2>&1"


rule merge_features:
    input:
        tables=feature_shards,
        quarantine=feature_quarantine_shards,
    output:
        table=f"{R}/{{dataset}}/features/{{feature}}.parquet",
        quarantine=f"{R}/{{dataset}}/features/{{feature}}.quarantine.parquet",
    log:
        f"{R}/logs/features/{{dataset}}/{{feature}}/merge.log",
    wildcard_constraints:
        feature=COMPUTED_FEATURES,
    conda:
        ENV
    shell:
        "python3 -m merflow merge-features --out {output.table:q} --quarantine {output.quarantine:q}"
        " --shards {input.tables:q} --quarantine-shards {input.quarantine:q} > {log:q} 2>&1"


# DEAM ships the MediaEval baseline features it was annotated with; the Malik protocol can run on
# exactly those (feature `deam_opensmile`, datasets with `adapter: deam`).
rule provided_features:
    input:
        clips=f"{R}/{{dataset}}/clips.parquet",
    output:
        table=f"{R}/{{dataset}}/features/deam_opensmile.parquet",
        quarantine=f"{R}/{{dataset}}/features/deam_opensmile.quarantine.parquet",
    log:
        f"{R}/logs/features/{{dataset}}/deam_opensmile.log",
    conda:
        ENV
    params:
        root=dataset_root,
    shell:
        "python3 -m merflow provided-features --clips {input.clips:q} --root {params.root:q}"
        " --out {output.table:q} --quarantine {output.quarantine:q} > {log:q} 2>&1"


# Views fused in one experiment (features: [[musicnn, essentia]]): their tables joined into one
# clip-level table, so a change to one view re-runs exactly the runs that fuse it.
rule fuse_features:
    input:
        views=view_tables,
    output:
        table=f"{R}/{{dataset}}/features/{{feature}}.parquet",
    log:
        f"{R}/logs/features/{{dataset}}/{{feature}}/fuse.log",
    wildcard_constraints:
        feature=FUSED_FEATURES,
    conda:
        ENV
    threads: 1
    shell:
        "python3 -m merflow fuse-features --views {input.views:q} --out {output.table:q}"
        " > {log:q} 2>&1"
