# Tagging new audio (optional): one job per entry of the config's `predict` section, over a whole
# folder. GPU-tagged like training, so a cluster sends it to a GPU node; with gpu=0 it runs on the
# CPU. The model is a run folder (trained first when this workflow makes it) or an exported model.


rule predict:
    input:
        unpack(predict_inputs),
    output:
        directory(f"{R}/predict/{{name}}"),
    log:
        f"{R}/predict/{{name}}.log",
    wildcard_constraints:
        name=r"[A-Za-z0-9_\-]+",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        job=predict_settings,
    shell:
        "python3 -m merflow predict --model {params.job[model]:q} --out {output:q}"
        " --format {params.job[format]:q} {params.job[plot]} --gpu {resources.gpu}"
        " --threads {threads} {input.audio:q} > {log:q} 2>&1"
