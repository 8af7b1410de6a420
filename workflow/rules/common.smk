# Everything that is not a rule: config validation, wildcard constraints, and the small
# functions that turn the config into targets and parameters. Logic lives in merflow.config.
import json

from snakemake.exceptions import WorkflowError

from merflow import config as mfconfig
from merflow import features as mffeatures
from merflow import splits as mfsplits
from merflow.errors import ConfigError

try:
    mfconfig.validate(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

R = config["results_dir"]
N_SHARDS = config["features"]["shards"]
ENV = "../../envs/merflow.yaml"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_\-]+",
    experiment=r"[A-Za-z0-9_\-]+",
    feature="|".join(mffeatures.FEATURES),
    shard=r"\d+",
    seed=r"\d+",
    split=r"[A-Za-z0-9_\-]+",


def as_json(obj):
    """Structured parameters travel to the CLI as one (quoted) JSON argument."""
    return json.dumps(obj, sort_keys=True)


def dataset_spec_json(wildcards):
    return as_json(mfconfig.dataset_spec(config, wildcards.dataset))


SYNTH_DEFAULTS = {"n_clips": 60, "duration_s": 30.0, "n_classes": 3, "clips_per_song": 1, "seed": 0}


def synth_spec(wildcards):
    return SYNTH_DEFAULTS | config["datasets"][wildcards.dataset]


def shard_lists():
    return [f"{R}/{{dataset}}/shards/shard-{i}.parquet" for i in range(N_SHARDS)]


def feature_params_json(wildcards):
    """Resolved with defaults, so a changed default re-runs the feature like a changed key."""
    overrides = config["features"].get(wildcards.feature, {})
    return as_json(mffeatures.resolve_params(wildcards.feature, overrides))


def indexed_shard(wildcards):
    checkpoints.index.get(dataset=wildcards.dataset)
    return f"{R}/{wildcards.dataset}/shards/shard-{wildcards.shard}.parquet"


def source_files(wildcards):
    """A synthetic dataset is generated first; a real one is read where it lies."""
    if config["datasets"][wildcards.dataset]["adapter"] == "synth":
        return [f"{R}/{wildcards.dataset}/source/clips.csv"]
    return []


def feature_shards(wildcards, suffix="parquet"):
    folder = f"{R}/{wildcards.dataset}/features/{wildcards.feature}"
    return [f"{folder}/shard-{i}.{suffix}" for i in range(N_SHARDS)]


def feature_quarantine_shards(wildcards):
    return feature_shards(wildcards, suffix="quarantine.parquet")


def experiment_split_ids(name):
    s = mfconfig.split_settings(config["experiments"][name])
    return mfsplits.split_ids(s["method"], s["seed"], s["n_folds"])


def split_settings_json(wildcards):
    return as_json(mfconfig.split_settings(config["experiments"][wildcards.experiment]))


def used_features():
    """(dataset, feature) pairs that some experiment trains on."""
    pairs = set()
    for exp in config["experiments"].values():
        pairs.update((exp["dataset"], f) for f in exp["features"])
    return sorted(pairs)


def all_targets():
    targets = [f"{R}/{d}/features/{f}.parquet" for d, f in used_features()]
    for name, exp in config["experiments"].items():
        targets += [
            f"{R}/{exp['dataset']}/splits/{name}/{s}.parquet" for s in experiment_split_ids(name)
        ]
    return targets
