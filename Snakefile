# merflow: music emotion recognition from raw audio to the tables of two papers.
#   snakemake --cores 8 --resources gpu=1            (the default experiment, on synthetic data)
#   snakemake --profile profiles/slurm --configfile config/<preset>.yaml
from snakemake.utils import min_version

min_version("9.0")


# A preset given with --configfile replaces the demo instead of being merged into it (merged, the
# demo's experiments would run beside the preset's).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        predict_targets(),  # empty unless the config has a `predict` section
