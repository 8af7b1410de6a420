"""The workflow configuration: loading, validation with one clear message, and the run grid.

The JSON schema in ``workflow/schemas/config.schema.yaml`` says what each key may hold; this module
turns a schema violation into one sentence that names the key and what is allowed, adds the checks a
schema cannot express (an experiment naming an undefined dataset, a model fed the wrong kind of
feature, a dataset folder that does not exist), and expands experiments into the grid of training
runs that the Snakemake rules (and the CLI) iterate over.
"""

from __future__ import annotations

import functools
import itertools
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from merflow.datasets import ADAPTERS
from merflow.errors import ConfigError
from merflow.features.registry import FEATURES, configurable, imported, resolve_params
from merflow.models.registry import MODELS
from merflow.runs import NO_SEQ_LEN, Run

SCHEMA_FILE = "config.schema.yaml"  # package data: it ships with merflow


def load_schema() -> dict:
    """The config schema, with the names the registries hold filled in: the models, features
    and adapters an experiment or dataset may name, and the sections of ``features:``."""
    schema = yaml.safe_load(resources.files("merflow").joinpath(SCHEMA_FILE).read_text())
    experiment = schema["properties"]["experiments"]["additionalProperties"]["properties"]
    experiment["models"]["items"] = {"enum": list(MODELS)}
    experiment["features"]["items"] = {"enum": list(FEATURES)}
    schema["properties"]["datasets"]["additionalProperties"]["properties"]["adapter"] = {
        "enum": list(ADAPTERS)
    }
    sections = schema["properties"]["features"]["properties"]
    sections.update({name: {"type": "object"} for name in configurable()})
    return schema


def schema_defaults(*path: str) -> dict[str, Any]:
    """The defaults the schema gives the keys of the object at ``path`` (one source for each)."""
    node = load_schema()
    for key in path:
        node = node["properties"][key] if key != "*" else node["additionalProperties"]
    return {k: v["default"] for k, v in node["properties"].items() if "default" in v}


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


def check_train_settings(values: dict[str, Any]) -> None:
    """Check a run's settings (``merflow train``'s JSON, or a recorded run) by the schema's rules
    for an experiment's ``train:`` keys and ``seq_len``: the same rules as the workflow's."""
    experiment = load_schema()["properties"]["experiments"]["additionalProperties"]
    rules = experiment["properties"]["train"]["properties"]
    schema = {
        "type": "object",
        "properties": {**rules, "seq_len": {**experiment["properties"]["seq_len"]["items"]}},
    }
    settings = {k: v for k, v in values.items() if k in schema["properties"]}
    if settings.get("seq_len") is None:
        settings.pop("seq_len", None)  # whole clips
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(settings))
    if errors:
        raise ConfigError(_describe_schema_error(errors[0], len(errors), "training setting"))


def _describe_schema_error(
    error: jsonschema.ValidationError, n_errors: int, what: str = "config error"
) -> str:
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
    return f"{what}: {detail}{more}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "name"


def _fill_defaults(config: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub and key not in config:
            config[key] = sub["default"]
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)


def _check_semantics(config: dict) -> None:
    for feature in configurable():  # bounds too, before any job runs
        feature_params(config, feature)
    datasets = config["datasets"]
    for name, exp in config["experiments"].items():
        if exp["dataset"] not in datasets:
            raise ConfigError(
                f"config error: experiment '{name}' uses dataset '{exp['dataset']}', which is not "
                f"defined under 'datasets' (defined: {', '.join(sorted(datasets))})"
            )
        _check_pairs(name, exp)
        _check_split(name, exp)
        for feature in set(exp["features"]) & set(imported()):
            _check_import_path(config, name, feature)
        sequence_models = [m for m in exp["models"] if MODELS[m].sequence]
        if sequence_models and not exp.get("seq_len"):
            raise ConfigError(
                f"config error: experiment '{name}' trains {', '.join(sequence_models)} but sets "
                "no 'seq_len' (a list of sequence lengths in 500 ms windows, e.g. [10, 20, 30, 60])"
            )
        trains_frame_network = any(
            "frames" in MODELS[m].inputs and not MODELS[m].baseline for m in exp["models"]
        )
        if "logmel" in exp["features"] and trains_frame_network:
            _check_input_frames(config, name)
    for name, spec in datasets.items():
        check_dataset_root(name, spec)
    for name in config.get("predict", {}):
        _check_predict_input(name, predict_job(config, name))


def _check_split(experiment: str, exp: dict) -> None:
    """What the schema cannot say about a split: the splitter's own checks, before any job."""
    try:
        experiment_split_ids(exp)
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


def _check_input_frames(config: dict, experiment: str) -> None:
    """A frame model's input must fit in the stored log-mel matrix: say so before any job runs."""
    wanted = train_settings(config, experiment).get("input_frames")
    stored = feature_params(config, "logmel")["n_frames"]
    if wanted and wanted > stored:
        raise ConfigError(
            f"config error: experiment '{experiment}' trains on {wanted}-frame inputs "
            f"('input_frames'), but 'features.logmel.n_frames' stores {stored}; raise n_frames "
            f"or set 'experiments.{experiment}.train.input_frames' to at most {stored}"
        )


def pairs(exp: dict) -> list[tuple[str, str]]:
    """(feature, model) of an experiment: each model on each of its features it takes."""
    return [
        (feature, model)
        for feature, model in itertools.product(exp["features"], exp["models"])
        if FEATURES[feature].kind in MODELS[model].inputs
    ]


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
    for feature in exp["features"]:
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
    from merflow.features.registry import weights_needed
    from merflow.pretrained.fetch import is_cached

    lacking = {}
    for name, exp in config["experiments"].items():
        if not exp.get("skip_without_weights"):
            continue
        needed = {
            model
            for feature in exp["features"]
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


SYNTH_KEYS = ("n_clips", "duration_s", "sample_rate", "n_classes", "clips_per_song", "seed")


def synth_settings(given: dict[str, Any]) -> dict[str, Any]:
    """The synthetic dataset's parameters: the schema's defaults under ``given``, checked by the
    schema (for the workflow, ``merflow synth`` and :func:`merflow.datasets.synth.generate`)."""
    entry = load_schema()["properties"]["datasets"]["additionalProperties"]["properties"]
    settings = {k: entry[k]["default"] for k in SYNTH_KEYS} | {
        k: v for k, v in given.items() if k in SYNTH_KEYS
    }
    schema = {"type": "object", "properties": {k: entry[k] for k in SYNTH_KEYS}}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(settings))
    if errors:
        raise ConfigError(_describe_schema_error(errors[0], len(errors), "synth"))
    return settings


def split_settings(experiment: dict) -> dict:
    """The split keys of an experiment with their defaults (the schema's)."""
    return _split_defaults() | experiment.get("split", {})


def experiment_split_ids(experiment: dict) -> list[str]:
    """The ids of an experiment's splits, known before any data exists."""
    from merflow.splits import split_ids

    s = split_settings(experiment)
    return split_ids(s["method"], s["seed"], s["n_folds"], s.get("repeats", 1))


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
    """The experiment's recipe defaults (merflow.recipes) under its ``train:`` overrides."""
    from merflow.learn import recipes

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
