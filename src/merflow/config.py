"""The workflow configuration: loading, validation with one clear message, and the run grid.

The JSON schema in ``workflow/schemas/config.schema.yaml`` says what each key may hold; this module
turns a schema violation into one sentence that names the key and what is allowed, adds the checks a
schema cannot express (an experiment naming an undefined dataset, a model fed the wrong kind of
feature, a dataset folder that does not exist), and expands experiments into the grid of training
runs that the Snakemake rules (and the CLI) iterate over.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from merflow.errors import ConfigError
from merflow.runs import NO_SEQ_LEN, Run

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"

WINDOWED_FEATURES = ("logmel_500ms", "compare_500ms", "deam_opensmile")
FRAME_FEATURES = ("logmel",)
# model -> (task, feature kind)
MODEL_KINDS = {
    "malik_crnn": ("regression", "windows"),
    "malik_crnn_nb": ("regression", "windows"),
    "mean": ("regression", "windows"),
    "ridge": ("regression", "windows"),
    "velankar_crnn": ("classification", "frames"),
    "velankar_parallel": ("classification", "frames"),
    "majority": ("classification", "frames"),
    "logistic": ("classification", "frames"),
}
SEQUENCE_MODELS = ("malik_crnn", "malik_crnn_nb")
BASELINE_MODELS = ("mean", "ridge", "majority", "logistic")

DATASET_HINTS = {
    "deam": "DEAM (MEMD_audio/ and annotations/) from the MediaEval Emotion in Music site",
    "folder": "one sub-folder per class holding the audio files (root/<class>/*.mp3)",
    "manifest": "a CSV with a path and a label column (see `csv`, `path_column`, `label_column`)",
    "pmemo": "PMEmo (chorus/ audio and annotations/) from the PMEmo release",
}


def load_schema() -> dict:
    with SCHEMA_PATH.open() as fh:
        return yaml.safe_load(fh)


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
        raise ConfigError(_describe_schema_error(errors[0], len(errors)))
    _fill_defaults(config, schema)
    _check_semantics(config)
    return config


def _describe_schema_error(error: jsonschema.ValidationError, n_errors: int) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"under '{key}'" if error.absolute_path else "at the top level"
        detail = f"unknown key {', '.join(map(repr, extra))} {where}"
        if allowed:
            detail += f"; allowed keys: {', '.join(allowed)}"
    elif error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        detail = f"'{key}' is {error.instance!r}; allowed values: {allowed}"
    elif error.validator == "pattern" and list(error.relative_schema_path)[-2:] == [
        "propertyNames",
        "pattern",
    ]:
        detail = (
            f"the name {error.instance!r} under '{key}' cannot be used in file paths and rule "
            "wildcards; use only letters, digits, '_' and '-' (e.g. "
            f"{_safe_name(error.instance)!r})"
        )
    elif error.validator == "required":
        detail = f"{error.message} (in '{key}')"
    else:
        detail = f"'{key}': {error.message}"
    more = f" ({n_errors - 1} more problem(s) after this one)" if n_errors > 1 else ""
    return f"config error: {detail}{more}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "name"


def _fill_defaults(config: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub and key not in config:
            config[key] = sub["default"]
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)


def _check_semantics(config: dict) -> None:
    from merflow.features import FEATURES, resolve_params

    for feature in FEATURES:  # bounds too, before any job runs
        resolve_params(feature, config.get("features", {}).get(feature, {}))
    datasets = config["datasets"]
    for name, exp in config["experiments"].items():
        if exp["dataset"] not in datasets:
            raise ConfigError(
                f"config error: experiment '{name}' uses dataset '{exp['dataset']}', which is not "
                f"defined under 'datasets' (defined: {', '.join(sorted(datasets))})"
            )
        for model, feature in itertools.product(exp["models"], exp["features"]):
            _check_model_feature(name, model, feature)
        if any(m in SEQUENCE_MODELS for m in exp["models"]) and not exp.get("seq_len"):
            raise ConfigError(
                f"config error: experiment '{name}' trains {', '.join(SEQUENCE_MODELS)} but sets "
                "no 'seq_len' (a list of sequence lengths in 500 ms windows, e.g. [10, 20, 30, 60])"
            )
        trains_frame_network = any(
            MODEL_KINDS[m][1] == "frames" and m not in BASELINE_MODELS for m in exp["models"]
        )
        if "logmel" in exp["features"] and trains_frame_network:
            _check_input_frames(config, name)
    for name, spec in datasets.items():
        check_dataset_root(name, spec)
    for name in config.get("predict", {}):
        _check_predict_input(name, predict_job(config, name))


def _check_input_frames(config: dict, experiment: str) -> None:
    """A frame model's input must fit in the stored log-mel matrix: say so before any job runs."""
    from merflow.features import resolve_params

    wanted = train_settings(config, experiment).get("input_frames")
    stored = resolve_params("logmel", config.get("features", {}).get("logmel", {}))["n_frames"]
    if wanted and wanted > stored:
        raise ConfigError(
            f"config error: experiment '{experiment}' trains on {wanted}-frame inputs "
            f"('input_frames'), but 'features.logmel.n_frames' stores {stored}; raise n_frames "
            f"or set 'experiments.{experiment}.train.input_frames' to at most {stored}"
        )


def _check_model_feature(experiment: str, model: str, feature: str) -> None:
    kind = MODEL_KINDS[model][1]
    allowed = WINDOWED_FEATURES if kind == "windows" else FRAME_FEATURES
    if feature not in allowed:
        raise ConfigError(
            f"config error: experiment '{experiment}' pairs model '{model}' with feature "
            f"'{feature}'; {model} takes {kind} features: {', '.join(allowed)}. Split the "
            "experiment in two if you want both kinds."
        )


def check_dataset_root(name: str, spec: dict) -> None:
    """A dataset other than synth needs an existing ``root``; say what to download if it is not."""
    if spec["adapter"] == "synth":
        return
    root = spec.get("root")
    hint = spec.get("download") or DATASET_HINTS.get(spec["adapter"], "the dataset")
    # --config merges into the dataset's entry (Snakemake merges nested dicts); the quotes keep
    # the braces and spaces from the shell.
    override = f"--config 'datasets={{{name}: {{root: /path/to/it}}}}'"
    if not root:
        raise ConfigError(
            f"config error: dataset '{name}' has no 'root'. Download {hint}; then run with "
            f"{override} (or set datasets.{name}.root in the config file)"
        )
    if not Path(root).expanduser().is_dir():
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
    """The split keys of an experiment with their defaults."""
    split = {"method": "holdout", "seed": 0, "test_fraction": 1 / 3, "val_fraction": 0.15}
    split.update({"n_folds": 5, "fixed_test": "evaluation", "stratify": "auto"})
    split.update(experiment.get("split", {}))
    return split


def experiment_runs(config: dict, name: str, split_ids: list[str]) -> list[Run]:
    """Every (feature, model, seq_len, split, seed) run of one experiment."""
    exp = config["experiments"][name]
    found = []
    for feature, model in itertools.product(exp["features"], exp["models"]):
        lengths = [str(n) for n in exp.get("seq_len", [])] if model in SEQUENCE_MODELS else []
        for seq_len, split, seed in itertools.product(
            lengths or [NO_SEQ_LEN], split_ids, _seeds_for(model, exp["seeds"])
        ):
            found.append(Run(name, exp["dataset"], feature, model, seq_len, split, seed))
    return found


def _seeds_for(model: str, seeds: list[int]) -> list[int]:
    # Baselines are deterministic fits: one run stands for all seeds.
    return seeds[:1] if model in BASELINE_MODELS else seeds


def train_settings(config: dict, experiment: str) -> dict:
    """The experiment's recipe defaults (merflow.recipes) under its ``train:`` overrides."""
    from merflow import recipes

    exp = config["experiments"][experiment]
    tasks = {MODEL_KINDS[m][0] for m in exp["models"]}
    task = "regression" if tasks == {"regression"} else "classification"
    return recipes.resolve(exp.get("recipe", "merflow"), task, exp.get("train", {}))


def model_options(config: dict, model: str) -> dict[str, Any]:
    return dict(config.get("model_options", {}).get(model, {}))


PREDICT_DEFAULTS = {"format": "csv", "plot": False}


def predict_job(config: dict, name: str) -> dict[str, Any]:
    """A ``predict`` entry with its defaults: ``input``, ``model``, ``format``, ``plot``."""
    return PREDICT_DEFAULTS | config["predict"][name]


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
