# Everything that is not a rule: config validation, wildcard constraints, and the small
# functions that turn the config into targets and parameters. Logic lives in merflow.config.
import hashlib
import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from merflow import config as mfconfig
from merflow import runs as mfruns
from merflow import schema as mfschema
from merflow.audio import SUPPORTED_SUFFIXES
from merflow.errors import ConfigError
from merflow.features import imported as mfimported
from merflow.features import registry as features
from merflow.features import views as mfviews
from merflow.models import registry as models
from merflow.pretrained import cache as mfpretrained

try:
    mfconfig.validate(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

for name, missing in mfconfig.experiments_lacking_weights(config).items():
    print(
        f"merflow: experiment '{name}' left out: the {', '.join(missing)} weights are not "
        "cached; run `merflow pretrained fetch musicnn` to include it",
        file=sys.stderr,
    )
    del config["experiments"][name]
if not config["experiments"]:
    raise WorkflowError(
        "every experiment was left out (above): run `merflow pretrained fetch musicnn`"
    )

R = config["results_dir"]
# Every rule runs `python3 -m merflow` with the interpreter of the environment it runs in and the
# workflow's own src/ first on the path: the Snakemake interpreter's (a venv or a system
# Snakemake with merflow installed, activated or not), or the conda environment's (--sdm conda,
# whose env file holds the dependencies only; conda puts its python3 first on the PATH).
CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
SRC = shlex.quote(os.path.join(workflow.basedir, "src"))
INTERPRETER = (
    ""
    if CONDA
    else f"export PATH={shlex.quote(os.path.dirname(sys.executable))}:$PATH; "
)
# (the prefix is formatted by Snakemake too: its literal braces are doubled)
# (and it replaces Snakemake's own "set -euo pipefail; ", which it keeps)
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {INTERPRETER}"
)
N_SHARDS = config["features"]["shards"]
ENV = "../../envs/merflow.yaml"
COMPUTED_FEATURES = "|".join(features.computed())
IMPORTED_FEATURES = "|".join(features.imported())
FUSED_FEATURES = mfviews.fused_wildcard()
NETWORKS = "|".join(models.names(baseline=False))
BASELINES = "|".join(models.names(baseline=True))
RUN = f"{R}/{mfruns.RUN_PATTERN}"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_\-]+",
    experiment=r"[A-Za-z0-9_\-]+",
    feature=mfviews.wildcard(),
    shard=r"\d+",
    seed=r"\d+",
    split=r"[A-Za-z0-9_\-]+",
    seq_len=rf"\d+|{mfruns.NO_SEQ_LEN}",
    model="|".join(models.MODELS),


def as_json(obj):
    """Structured parameters travel to the CLI as one (quoted) JSON argument."""
    return json.dumps(obj, sort_keys=True)


def dataset_spec_json(wildcards):
    return as_json(mfconfig.dataset_spec(config, wildcards.dataset))


# Dataset keys the index does not read: changing them must not re-index (and re-run) everything.
NOT_INDEXED = ("download", "paper_dataset", "provided_features")


def index_spec_json(wildcards):
    spec = mfconfig.dataset_spec(config, wildcards.dataset)
    return as_json({k: v for k, v in spec.items() if k not in NOT_INDEXED})


def dataset_root(wildcards):
    return mfconfig.dataset_spec(config, wildcards.dataset)["root"]


def synth_spec(wildcards):
    return mfschema.synth_settings(config["datasets"][wildcards.dataset])


def shard_lists():
    return [f"{R}/{{dataset}}/shards/shard-{i}.parquet" for i in range(N_SHARDS)]


PRETRAINED_CACHE = str(mfpretrained.cache_dir())
PRETRAINED_MODELS = mfpretrained.MODELS


def feature_weights(feature):
    """The cached weights a feature's network needs ([] for features without one)."""
    return features.weights_needed(feature, mfconfig.feature_params(config, feature))


def pretrained_weights(wildcards):
    return [
        str(mfpretrained.weights_path(m)) for m in feature_weights(wildcards.feature)
    ]


def feature_gpus(wildcards):
    return 1 if feature_weights(wildcards.feature) else 0


def feature_params_json(wildcards):
    """Resolved with defaults, so a changed default re-runs the feature like a changed key."""
    return as_json(mfconfig.feature_params(config, wildcards.feature))


def indexed_shard(wildcards):
    checkpoints.index.get(dataset=wildcards.dataset)
    return f"{R}/{wildcards.dataset}/shards/shard-{wildcards.shard}.parquet"


def source_files(wildcards):
    """A synthetic dataset is generated first; a real one is read where it lies."""
    if config["datasets"][wildcards.dataset]["adapter"] == "synth":
        return [f"{R}/{wildcards.dataset}/source/clips.csv"]
    return []


# What the adapters read: audio, annotation CSVs, PMEmo's JSON.
SOURCE_SUFFIXES = (*SUPPORTED_SUFFIXES, ".csv", ".json")


def source_fingerprint(wildcards):
    """A digest of a real dataset's files (names, sizes, times), a parameter of the index: adding,
    removing or changing a file re-indexes the dataset, and then only the feature shards whose
    clips changed are extracted again. (Not the files as inputs: Snakemake would take braces in
    a file name for wildcards.)"""
    if config["datasets"][wildcards.dataset]["adapter"] == "synth":
        return ""
    root = mfconfig.dataset_spec(config, wildcards.dataset)["root"]
    results = os.path.abspath(R)
    digest = hashlib.sha1()
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(
            d
            for d in subfolders
            if not d.startswith(".") and os.path.join(folder, d) != results
        )
        for name in sorted(names):
            if not name.startswith(".") and name.lower().endswith(SOURCE_SUFFIXES):
                path = os.path.join(folder, name)
                entry = f"{os.path.relpath(path, root)}\t{file_stamp(path)}\n"
                digest.update(entry.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def imported_fingerprint(wildcards):
    """Names, sizes and times of the files an imported feature reads."""
    path = mfconfig.feature_params(config, wildcards.feature)["path"]
    files = mfimported.embedding_files(path)
    return hashlib.sha1(
        "".join(f"{f}\t{file_stamp(f)}\n" for f in files).encode(
            "utf-8", "surrogateescape"
        )
    ).hexdigest()


def file_stamp(path):
    """Size and modification time; a dangling link is data too (the index quarantines it)."""
    try:
        stat = os.stat(path)
    except OSError:
        return "unreadable"
    return f"{stat.st_size}\t{stat.st_mtime_ns}"


def feature_shards(wildcards, suffix="parquet"):
    folder = f"{R}/{wildcards.dataset}/features/{wildcards.feature}"
    return [f"{folder}/shard-{i}.{suffix}" for i in range(N_SHARDS)]


def feature_quarantine_shards(wildcards):
    return feature_shards(wildcards, suffix="quarantine.parquet")


def experiment_split_ids(name):
    return mfconfig.experiment_split_ids(config["experiments"][name])


def split_settings_json(wildcards):
    return as_json(mfconfig.split_settings(config["experiments"][wildcards.experiment]))


def all_targets():
    return [f"{R}/report/index.md"]


def run_inputs(wildcards):
    d = f"{R}/{wildcards.dataset}"
    return {
        "features": f"{d}/features/{wildcards.feature}.parquet",
        "clips": f"{d}/clips.parquet",
        "targets": f"{d}/targets.parquet",
        "split": f"{d}/splits/{wildcards.experiment}/{wildcards.split}.parquet",
    }


def train_threads(wildcards):
    return models.MODELS[wildcards.model].threads


def model_options_json(wildcards):
    return as_json(mfconfig.model_options(config, wildcards.model))


def view_tables(wildcards):
    """The tables of a fused feature's views, in the order they are fused."""
    d = f"{R}/{wildcards.dataset}/features"
    return [f"{d}/{view}.parquet" for view in mfviews.views(wildcards.feature)]


def fusion_json(wildcards):
    """How a fused feature's views are fused ({} for one feature: its runs do not depend on it)."""
    if not mfviews.is_fused(wildcards.feature):
        return as_json({})
    return as_json(mfviews.settings(config["experiments"][wildcards.experiment]))


def train_settings_json(wildcards):
    return as_json(mfconfig.train_settings(config, wildcards.experiment))


def experiment_json(wildcards):
    return as_json(config["experiments"][wildcards.experiment])


def experiment_metrics(wildcards):
    runs = mfconfig.experiment_runs(
        config, wildcards.experiment, experiment_split_ids(wildcards.experiment)
    )
    return [f"{R}/{run.path}/{mfruns.metrics_file()}" for run in runs]


def experiment_quarantine(wildcards):
    exp = config["experiments"][wildcards.experiment]
    d = f"{R}/{wildcards.dataset}"
    return [f"{d}/quarantine.parquet"] + [
        f"{d}/features/{v}.quarantine.parquet"
        for v in dict.fromkeys(v for f in mfviews.names(exp) for v in mfviews.views(f))
    ]


def experiment_reports(wildcards):
    """Each experiment's report folder (the aggregate rule's output)."""
    return [
        f"{R}/{exp['dataset']}/{name}/report"
        for name, exp in config["experiments"].items()
    ]


def experiment_indexes(wildcards, input):
    return [os.path.join(folder, "index.md") for folder in input]


# `snakemake --report`: every table (Markdown, CSV, LaTeX) and figure of an experiment's report
# folder, but no hidden file; filed by the names merflow.reporting gives them (which
# workflow/report/experiment.rst tells apart alike, to caption each).
REPORT_FILES = ["{name,[^./][^/]*}.{ext,md|csv|tex|png}"]
REPORT_FORMATS = {"md": "Markdown", "csv": "CSV", "tex": "LaTeX", "png": "PNG"}
REPORT_DATA_FILES = ("summary", "quarantine", "excluded_from_runs")


def report_section(wildcards):
    """The report subcategory of one file of an experiment's report folder."""
    name = wildcards.name
    if name == "index":
        return "Overview"
    if name in REPORT_DATA_FILES:
        return "Data and left-out clips"
    if name.endswith("_curves"):
        return "Learning curves"
    if name.endswith("_confusion"):
        return "Confusion matrices"
    if wildcards.ext == "png":
        return "Predictions (beyond the paper)"
    return "Tables"


def report_labels(wildcards):
    return {"file": wildcards.name, "format": REPORT_FORMATS[wildcards.ext]}


def output_folder(wildcards, output):
    """The folder of a rule's first output (derived, not hard-coded, for remote file systems)."""
    return os.path.dirname(output[0])


def predict_targets():
    """One folder per entry of the optional `predict` section (nothing without it)."""
    return [f"{R}/predict/{name}" for name in config.get("predict", {})]


def predict_inputs(wildcards):
    """The audio to tag, and the model's model.json (exported) or run.json (a run to make)."""
    job = mfconfig.predict_job(config, wildcards.name)
    exported = os.path.join(job["model"], "model.json")
    if os.path.isfile(exported):
        return {"audio": job["input"], "model": exported}
    return {"audio": job["input"], "model": os.path.join(job["model"], "run.json")}


def predict_settings(wildcards):
    """Model folder, output format and the --plot flag of a predict job."""
    job = mfconfig.predict_job(config, wildcards.name)
    plot = "--plot" if job["plot"] else ""
    return {"model": job["model"], "format": job["format"], "plot": plot}
