"""The config schema (``src/merflow/config.schema.yaml``, package data) and its checks.

One low module for the rules a key may follow, so that everything that checks settings by them
-- the workflow's configuration (:mod:`merflow.config`), a run's training settings
(:class:`merflow.learn.recipes.TrainConfig`), the synthetic dataset (:mod:`merflow.datasets.synth`)
-- meets them here, and a violation is one sentence naming the key and what is allowed. The
names the registries hold (models, features, adapters) are filled in when the schema is loaded.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import jsonschema
import yaml

from merflow.datasets import ADAPTERS
from merflow.errors import ConfigError
from merflow.features.registry import FEATURES, configurable
from merflow.features.windows import WINDOW_S
from merflow.models.registry import MODELS

SCHEMA_FILE = "config.schema.yaml"  # package data: it ships with merflow
SYNTH_KEYS = ("n_clips", "duration_s", "sample_rate", "n_classes", "clips_per_song", "seed")


def load_schema() -> dict:
    """The config schema, with what the code holds filled in: the models, features and
    adapters an experiment or dataset may name, the sections of ``features:``, the window."""
    schema = yaml.safe_load(resources.files("merflow").joinpath(SCHEMA_FILE).read_text())
    experiment = schema["properties"]["experiments"]["additionalProperties"]["properties"]
    experiment["models"]["items"] = {"enum": list(MODELS)}
    one = {"enum": list(FEATURES)}
    views = {"type": "array", "items": one, "minItems": 2, "uniqueItems": True}
    experiment["features"]["items"] = {"anyOf": [one, views]}  # a feature, or views to fuse
    dataset = schema["properties"]["datasets"]["additionalProperties"]["properties"]
    dataset["adapter"] = {"enum": list(ADAPTERS)}
    dataset["duration_s"]["minimum"] = WINDOW_S  # a synthetic clip holds one window at least
    sections = schema["properties"]["features"]["properties"]
    sections.update({name: {"type": "object"} for name in configurable()})
    return schema


def schema_defaults(*path: str) -> dict[str, Any]:
    """The defaults the schema gives the keys of the object at ``path`` (one source for each)."""
    node = load_schema()
    for key in path:
        node = node["properties"][key] if key != "*" else node["additionalProperties"]
    return {k: v["default"] for k, v in node["properties"].items() if "default" in v}


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
        raise ConfigError(describe_schema_error(errors[0], len(errors), "training setting"))


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
        raise ConfigError(describe_schema_error(errors[0], len(errors), "synth"))
    return settings


def describe_schema_error(
    error: jsonschema.ValidationError, n_errors: int, what: str = "config error"
) -> str:
    """A schema violation as one sentence: the key, what is wrong, what is allowed."""
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
    elif error.validator == "anyOf" and list(error.absolute_path)[-2:-1] == ["features"]:
        detail = (
            f"'{key}' is {error.instance!r}; give a feature name ({', '.join(FEATURES)}) or a "
            "list of two or more different clip-level features to fuse, e.g. [musicnn, essentia]"
        )
    elif error.validator == "required":
        detail = f"{error.message} (in '{key}')"
    else:
        detail = f"'{key}': {error.message}"
    more = f" ({n_errors - 1} more problem(s) after this one)" if n_errors > 1 else ""
    return f"{what}: {detail}{more}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "name"
