# Stage 3: song-level, stratified, seeded splits, one set per experiment. Each job derives the
# whole (deterministic) partition and writes its own split, so k folds are k small files.


rule make_split:
    input:
        clips=f"{R}/{{dataset}}/clips.parquet",
        targets=f"{R}/{{dataset}}/targets.parquet",
    output:
        f"{R}/{{dataset}}/splits/{{experiment}}/{{split}}.parquet",
    log:
        f"{R}/logs/splits/{{dataset}}/{{experiment}}/{{split}}.log",
    conda:
        ENV
    params:
        settings=split_settings_json,
    shell:
        "python3 -m merflow splits --clips {input.clips:q} --targets {input.targets:q}"
        " --settings {params.settings:q} --split-id {wildcards.split:q} --out {output:q}"
        " > {log:q} 2>&1"
