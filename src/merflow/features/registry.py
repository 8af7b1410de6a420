"""The feature registry: one :class:`FeatureSpec` per feature name, and the functions over it.

:data:`FEATURES` is the only list of features: the config schema's enum and ``features:``
section, the config checks (which model takes which kind), the workflow's rules and the report
labels derive from it. A new feature is one module with a compute function, its column names and
a parameter check, plus one entry below. Importing this module is cheap (no librosa, no
openSMILE): the Snakefile resolves parameters through it at parse time.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from merflow.errors import ConfigError
from merflow.features.clip import DecodedClip
from merflow.features.spec import FeatureSpec, Params


def catalog(*targets: str) -> dict[str, FeatureSpec]:
    """The specs ``"module:attribute"`` names, by feature name."""
    specs = [getattr(importlib.import_module(t.split(":")[0]), t.split(":")[1]) for t in targets]
    return {spec.name: spec for spec in specs}


# Each entry names a FeatureSpec as "module:attribute"; its place is its place in the lists.
FEATURES: dict[str, FeatureSpec] = catalog(
    "merflow.features.logmel:LOGMEL",
    "merflow.features.logmel:LOGMEL_500MS",
    "merflow.features.compare:COMPARE_500MS",
    "merflow.features.compare:COMPARE_FUNCTIONALS",
    "merflow.features.essentia_descriptors:ESSENTIA",
    "merflow.features.musicnn:MUSICNN",
    "merflow.features.musicnn:MUSICNN_500MS",
    "merflow.features.imported:EMBEDDINGS",
    "merflow.features.imported:EMBEDDINGS_500MS",
    "merflow.features.provided:DEAM_OPENSMILE",
)


def computed() -> list[str]:
    """The features the feature stage computes from audio."""
    return [name for name, feature in FEATURES.items() if feature.computed]


def weights_needed(name: str, params: Mapping[str, Any]) -> list[str]:
    """The pretrained models (cached weights) computing feature ``name`` needs."""
    return [params["model"]] if FEATURES[name].pretrained else []


def require_installed(name: str) -> None:
    """A :class:`ConfigError` naming the extra to install if feature ``name`` needs a package
    that is missing (an optional extra, e.g. Essentia's licence differs from merflow's)."""
    package = FEATURES[name].needs
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"feature '{name}' needs the optional package {package}, which is not installed; "
            f"install it with pip install 'merflow[{package}]'"
        )


def label(name: str) -> str:
    """How reports name a feature: ``log mel-band energy [logmel_500ms]``."""
    return f"{FEATURES[name].label} [{name}]" if name in FEATURES else name


def spec(name: str) -> FeatureSpec:
    """The spec of feature ``name``, which merflow computes from audio; a :class:`ConfigError`
    listing those otherwise."""
    feature = FEATURES.get(name)
    if feature is None or not feature.computed:
        provided = ""
        if feature is not None:
            source = "is imported" if feature.provided_by == "import" else "comes with the dataset"
            provided = f" ('{name}' {source})"
        raise ConfigError(
            f"unknown feature '{name}'{provided}; merflow computes: {', '.join(computed())}"
        )
    return feature


def configurable() -> list[str]:
    """The features with parameters (a ``features:`` section): computed and imported ones."""
    return [name for name, feature in FEATURES.items() if feature.defaults]


def imported() -> list[str]:
    """The features read from the user's own files (``merflow import-embeddings``)."""
    return [name for name, feature in FEATURES.items() if feature.provided_by == "import"]


def default_params(name: str) -> Params:
    """A fresh copy of the feature's default parameters."""
    return copy.deepcopy(dict(_configurable_spec(name).defaults))


def _configurable_spec(name: str) -> FeatureSpec:
    if name in configurable():
        return FEATURES[name]
    return spec(name)  # the error that lists the features


def resolve_params(name: str, overrides: Mapping[str, Any] | None = None) -> Params:
    """Defaults updated by ``overrides``, checked: unknown keys and bad values raise ConfigError."""
    feature = _configurable_spec(name)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(feature.defaults))
    if unknown:
        raise ConfigError(
            f"config error: features.{name} has unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(feature.defaults))}"
        )
    params = default_params(name)
    params.update(overrides)
    try:  # as stored in the table metadata and passed by Snakemake: JSON (tuples become lists)
        params = json.loads(json.dumps(params))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"config error: features.{name}: a value is not plain data ({exc})"
        ) from None
    feature.check(params)
    return params


def columns(name: str, params: Mapping[str, Any]) -> list[str]:
    """Column names of the feature (frame-level: the names of the matrix rows)."""
    return spec(name).columns(dict(params))


def compute_clip(name: str, signal: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Compute one feature of one mono signal sampled at ``params['sample_rate']``.

    Windowed features return ``(n_windows, n_columns)``; frame-level ones ``(n_mels, n_frames)``.
    ``params`` may be partial: missing keys take their defaults.
    """
    params = resolve_params(name, params)
    clip = DecodedClip(np.asarray(signal, dtype=np.float32), params["sample_rate"])
    return spec(name).compute(clip, params)
