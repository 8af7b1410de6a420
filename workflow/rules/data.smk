# Stage 1: datasets. A synthetic dataset is generated; every dataset is indexed into one
# clips table (+ time-continuous targets), a quarantine table, and one clip list per shard.


rule synthesize:
    output:
        clips=f"{R}/{{dataset}}/source/clips.csv",
        targets=f"{R}/{{dataset}}/source/targets.csv",
    log:
        f"{R}/logs/synthesize/{{dataset}}.log",
    conda:
        ENV
    params:
        spec=synth_spec,
        out=output_folder,
    shell:
        "python3 -m merflow synth --out {params.out:q} --n-clips {params.spec[n_clips]}"
        " --duration {params.spec[duration_s]} --n-classes {params.spec[n_classes]}"
        " --clips-per-song {params.spec[clips_per_song]} --seed {params.spec[seed]}"
        " --sample-rate {params.spec[sample_rate]}"
        " > {log:q} 2>&1"


# A checkpoint: after it runs, feature jobs are re-evaluated against the new shard lists, so a
# shard whose clips did not change (same content, checksummed) is not extracted again.
checkpoint index:
    input:
        source_files,
    output:
        clips=f"{R}/{{dataset}}/clips.parquet",
        targets=f"{R}/{{dataset}}/targets.parquet",
        quarantine=f"{R}/{{dataset}}/quarantine.parquet",
        shards=shard_lists(),
    log:
        f"{R}/logs/index/{{dataset}}.log",
    conda:
        ENV
    params:
        spec=index_spec_json,
        sources=source_fingerprint,
        out=output_folder,
        shards=N_SHARDS,
        on_bad_audio=config["on_bad_audio"],
    shell:
        "python3 -m merflow index --spec {params.spec:q} --out {params.out:q} --shards {params.shards}"
        " --on-bad-audio {params.on_bad_audio} > {log:q} 2>&1"
