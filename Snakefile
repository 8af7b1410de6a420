# merflow: music emotion recognition from raw audio to the tables of two papers.
#   snakemake --cores 8 --resources gpu=1            (the default experiment, on synthetic data)
#   snakemake --profile profiles/slurm --configfile config/<preset>.yaml
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/splits.smk"


rule all:
    input:
        all_targets(),
    default_target: True
