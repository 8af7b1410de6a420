"""The workflow configuration: loading, validation with one clear message, and the run grid.

The JSON schema (:mod:`merflow.schema`: ``src/merflow/config.schema.yaml``) says what each key may
hold, and a violation is one sentence that names the key and what is allowed; this module adds
the checks a schema cannot express (an experiment naming an undefined dataset, a model fed the
wrong kind of feature, a dataset folder that does not exist), and expands experiments into the
grid of training runs that the Snakemake rules (and the CLI) iterate over.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from merflow import splits
from merflow.datasets import ADAPTERS
from merflow.errors import ConfigError
from merflow.features import views
from merflow.features.registry import (
    FEATURES,
    configurable,
    imported,
    require_installed,
    resolve_params,
    weights_needed,
)
from merflow.features.windows import WINDOW_S
from merflow.learn import recipes
from merflow.models.registry import MODELS, fusing
from merflow.pretrained.cache import is_cached
from merflow.runs import NO_SEQ_LEN, Run
from merflow.schema import describe_schema_error, load_schema, schema_defaults


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config (safely), apply ``overrides`` and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with path.open() as fh:
        config = yaml.safe_load(fh) or {}
    if overrides:
        config = _deep_merge(config, overrides)
    return validate(config)


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` (in place: schema defaults are filled in) and return it."""
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(describe_schema_error(errors[0], len(errors)))
    _fill_defaults(config, schema)
    _check_semantics(config)
    return config


def _fill_defaults(config: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub and key not in config:
            config[key] = sub["default"]
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)


def _check_semantics(config: dict) -> None:
    _check_results_dir(config["results_dir"])
    for feature in configurable():  # bounds too, before any job runs
        feature_params(config, feature)
    for model, given in config["model_options"].items():
        _check_model_options(model, given)
    datasets = config["datasets"]
    for name, exp in config["experiments"].items():
        if exp["dataset"] not in datasets:
            raise ConfigError(
                f"config error: experiment '{name}' uses dataset '{exp['dataset']}', which is not "
                f"defined under 'datasets' (defined: {', '.join(sorted(datasets))})"
            )
        _check_fusion(name, exp)
        _check_pairs(name, exp)
        _check_split(name, exp)
        _check_installed(name, exp)
        for feature in set(_view_names(exp)) & set(imported()):
            _check_import_path(config, name, feature)
        sequence_models = [m for m in exp["models"] if MODELS[m].sequence]
        if sequence_models and not exp.get("seq_len"):
            raise ConfigError(
                f"config error: experiment '{name}' trains {', '.join(sequence_models)} but sets "
                "no 'seq_len' (a list of sequence lengths in 500 ms windows, e.g. [10, 20, 30, 60])"
            )
        _check_windows(config, name, exp)
        _check_input_frames(config, name, exp)
    for name, spec in datasets.items():
        check_dataset_root(name, spec)
    for name in config.get("predict", {}):
        _check_predict_input(name, predict_job(config, name))


def _check_results_dir(results_dir: str) -> None:
    if not results_dir.strip():
        raise ConfigError(
            "config error: 'results_dir' is empty, which would put every output at the "
            "filesystem root; give the folder for the outputs, e.g. results_dir: results"
        )


def _check_model_options(model: str, given: dict) -> None:
    """Every model's options against its own declaration, before any job runs."""
    if model not in MODELS:
        raise ConfigError(
            f"config error: model_options names unknown model '{model}'; known models: "
            f"{', '.join(MODELS)}"
        )
    MODELS[model].check_options(given)


def _check_split(experiment: str, exp: dict) -> None:
    """What the schema cannot say about a split: the splitter's own checks, before any job."""
    try:
        experiment_split_ids(exp)
    except ConfigError as exc:
        raise ConfigError(f"config error: experiment '{experiment}': {exc}") from None


def _check_installed(experiment: str, exp: dict) -> None:
    """Features that need an optional extra (Essentia): refused now, naming the extra."""
    for feature in _view_names(exp):
        try:
            require_installed(feature)
        except ConfigError as exc:
            raise ConfigError(f"config error: experiment '{experiment}': {exc}") from None


def _check_import_path(config: dict, experiment: str, feature: str) -> None:
    path = feature_params(config, feature)["path"]
    if not path or not Path(path).expanduser().exists():
        where = f"{path} does not exist" if path else "has no path"
        raise ConfigError(
            f"config error: experiment '{experiment}' uses feature '{feature}', but "
            f"features.{feature}.path {where}; give the Parquet file or folder of .npy arrays "
            "holding your embeddings"
        )


def _features_of_kind(exp: dict, kind: str) -> list[str]:
    """The experiment's features of ``kind`` that have parameters (a ``features:`` section)."""
    return [f for f in _view_names(exp) if FEATURES[f].kind == kind and f in configurable()]


def _view_names(exp: dict) -> list[str]:
    """Every feature the experiment reads, each view of a fused entry too, once."""
    return list(dict.fromkeys(v for f in views.names(exp) for v in views.views(f)))


def _check_windows(config: dict, experiment: str, exp: dict) -> None:
    """Windowed features meet the targets window by window: the targets sit on the
    ``WINDOW_S`` grid (docs/tables.md), so a feature's windows must be that long, or most
    targets would find no window."""
    for feature in _features_of_kind(exp, "windows"):
        window = feature_params(config, feature).get("window_s", WINDOW_S)
        if window != WINDOW_S:
            raise ConfigError(
                f"config error: experiment '{experiment}' learns the {WINDOW_S:g} s targets of "
                f"dataset '{exp['dataset']}' from feature '{feature}', whose "
                f"'features.{feature}.window_s' is {window:g}; the targets cannot be aligned to "
                f"it: set it to {WINDOW_S:g} (the default)"
            )


def _check_input_frames(config: dict, experiment: str, exp: dict) -> None:
    """A frame network's input must fit in the stored matrix of every frame-level feature it
    trains on: say so before any job runs."""
    if not any("frames" in MODELS[m].inputs and not MODELS[m].baseline for m in exp["models"]):
        return
    wanted = train_settings(config, experiment).get("input_frames")
    for feature in _features_of_kind(exp, "frames"):
        stored = feature_params(config, feature).get("n_frames")
        if wanted and stored and wanted > stored:
            raise ConfigError(
                f"config error: experiment '{experiment}' trains on {wanted}-frame inputs "
                f"('input_frames'), but 'features.{feature}.n_frames' stores {stored}; raise "
                f"n_frames or set 'experiments.{experiment}.train.input_frames' to at most "
                f"{stored}"
            )


def pairs(exp: dict) -> list[tuple[str, str]]:
    """(feature, model) of an experiment: each model on each of its features it takes, and on
    its fused views if it can fuse them as ``fusion.method`` says."""
    method = views.settings(exp)["method"]
    return [
        (feature, model)
        for feature, model in itertools.product(views.names(exp), exp["models"])
        if views.kind(feature) in MODELS[model].inputs
        and (not views.is_fused(feature) or method in MODELS[model].fusion)
    ]


def _check_fusion(experiment: str, exp: dict) -> None:
    """Fused entries hold clip-level views, and ``fusion:`` comes with one at least."""
    fused = [f for f in views.names(exp) if views.is_fused(f)]
    for feature in fused:
        views.check(experiment, feature)
    method = views.settings(exp)["method"]
    if fused and not any(method in MODELS[m].fusion for m in exp["models"]):
        raise ConfigError(
            f"config error: experiment '{experiment}' fuses {', '.join(fused)} ({method} "
            f"fusion), which none of its models does; models that do: "
            f"{', '.join(fusing(method))}"
        )
    if "fusion" in exp and not fused:
        raise ConfigError(
            f"config error: experiment '{experiment}' sets 'fusion' but fuses no views; list the "
            "views to fuse in 'features', e.g. features: [[musicnn, essentia]]"
        )


def _check_pairs(experiment: str, exp: dict) -> None:
    """Every model must take one of the features, and every feature serve one of the models."""
    paired = pairs(exp)
    for model in exp["models"]:
        if not any(m == model for _, m in paired):
            kinds = MODELS[model].inputs
            allowed = [name for name, f in FEATURES.items() if f.kind in kinds]
            raise ConfigError(
                f"config error: experiment '{experiment}' trains model '{model}' on none of its "
                f"features; {model} takes {' or '.join(kinds)} features: {', '.join(allowed)}"
            )
    for feature in views.names(exp):
        if not any(f == feature for f, _ in paired):
            kind = FEATURES[feature].kind
            allowed = [name for name, m in MODELS.items() if kind in m.inputs]
            raise ConfigError(
                f"config error: experiment '{experiment}' has feature '{feature}' ({kind}), "
                f"which none of its models takes; models of {kind} features: {', '.join(allowed)}"
            )


def experiments_lacking_weights(config: dict) -> dict[str, list[str]]:
    """Experiments marked ``skip_without_weights`` whose features need pretrained weights that
    are not cached: name -> the missing models."""
    lacking = {}
    for name, exp in config["experiments"].items():
        if not exp.get("skip_without_weights"):
            continue
        needed = {
            model
            for feature in _view_names(exp)
            if FEATURES[feature].computed
            for model in weights_needed(feature, feature_params(config, feature))
        }
        missing = sorted(m for m in needed if not is_cached(m))
        if missing:
            lacking[name] = missing
    return lacking


def feature_params(config: dict, feature: str) -> dict[str, Any]:
    """A feature's parameters in ``config``, with the defaults filled in."""
    return resolve_params(feature, config.get("features", {}).get(feature, {}))


def check_dataset_root(name: str, spec: dict) -> None:
    """A dataset other than synth needs an existing ``root``; say what to download if it is not."""
    if spec["adapter"] == "synth":
        return
    root = spec.get("root")
    hint = spec.get("download") or ADAPTERS[spec["adapter"]].download
    # --config merges into the dataset's entry (Snakemake merges nested dicts); the quotes keep
    # the braces and spaces from the shell.
    override = f"--config 'datasets={{{name}: {{root: /path/to/it}}}}'"
    if not root:
        raise ConfigError(
            f"config error: dataset '{name}' has no 'root'. Download {hint}; then run with "
            f"{override} (or set datasets.{name}.root in the config file)"
        )
    folder = Path(root).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"config error: dataset '{name}': root {root} is a file, not a folder; give the "
            f"folder that holds the dataset with {override}"
        )
    if not folder.is_dir():
        raise ConfigError(
            f"config error: dataset '{name}': root {root} does not exist. Download {hint} and put "
            f"it there, or give the folder where it is with {override}"
        )


def dataset_spec(config: dict, name: str) -> dict:
    """The adapter's view of a dataset: its config entry plus ``name`` and an absolute ``root``."""
    spec = dict(config["datasets"][name])
    spec["name"] = name
    if spec["adapter"] == "synth":
        spec["root"] = str(Path(config["results_dir"]).resolve() / name / "source")
    else:
        spec["root"] = str(Path(spec["root"]).expanduser().resolve())
    return spec


def split_settings(experiment: dict) -> dict:
    """The split keys of an experiment with their defaults (the schema's)."""
    return _split_defaults() | experiment.get("split", {})


def experiment_split_ids(experiment: dict) -> list[str]:
    """The ids of an experiment's splits, known before any data exists."""
    s = split_settings(experiment)
    return splits.split_ids(s["method"], s["seed"], s["n_folds"], s.get("repeats", 1))


@functools.cache
def _split_defaults() -> dict[str, Any]:
    return schema_defaults("experiments", "*", "split")


def experiment_runs(config: dict, name: str, split_ids: list[str]) -> list[Run]:
    """Every (feature, model, seq_len, split, seed) run of one experiment."""
    exp = config["experiments"][name]
    found = []
    for feature, model in pairs(exp):
        lengths = [str(n) for n in exp.get("seq_len", [])] if MODELS[model].sequence else []
        for seq_len, split, seed in itertools.product(
            lengths or [NO_SEQ_LEN], split_ids, _seeds_for(model, exp["seeds"])
        ):
            found.append(Run(name, exp["dataset"], feature, model, seq_len, split, seed))
    return found


def _seeds_for(model: str, seeds: list[int]) -> list[int]:
    # Baselines are deterministic fits: one run stands for all seeds.
    return seeds[:1] if MODELS[model].baseline else seeds


def train_settings(config: dict, experiment: str) -> dict:
    """The experiment's recipe defaults (:mod:`merflow.learn.recipes`) under its ``train:``
    overrides."""
    exp = config["experiments"][experiment]
    tasks = {MODELS[m].task for m in exp["models"]}
    task = "regression" if tasks == {"regression"} else "classification"
    return recipes.resolve(exp.get("recipe", "merflow"), task, exp.get("train", {}))


def model_options(config: dict, model: str) -> dict[str, Any]:
    return dict(config.get("model_options", {}).get(model, {}))


def predict_job(config: dict, name: str) -> dict[str, Any]:
    """A ``predict`` entry with its defaults: ``input``, ``model``, ``format``, ``plot``."""
    return schema_defaults("predict", "*") | config["predict"][name]


def _check_predict_input(name: str, job: dict) -> None:
    if not Path(job["input"]).expanduser().exists():
        raise ConfigError(
            f"config error: predict.{name}.input: {job['input']} does not exist; give the folder "
            "(or file) of audio to tag"
        )


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
