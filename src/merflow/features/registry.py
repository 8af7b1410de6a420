"""The feature registry: one :class:`FeatureSpec` per feature name, and the functions over it.

:data:`FEATURES` is the only list of features: the config schema's enum and ``features:``
section, the config checks (which model takes which kind), the workflow's rules and the report
labels derive from it. A new feature is one module with a compute function, its column names and
a parameter check, plus one entry below. Importing this module is cheap (no librosa, no
openSMILE): the Snakefile resolves parameters through it at parse time.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from merflow.errors import ConfigError
from merflow.features import compare, logmel
from merflow.features.clip import DecodedClip

Params = dict[str, Any]


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature stage needs to know about one feature.

    ``kind`` is ``"windows"`` (one row per clip and 500 ms window; ``compute`` returns
    ``(n_windows, n_columns)``) or ``"frames"`` (one fixed-size matrix per clip; ``compute``
    returns ``(n_rows, n_frames)`` and ``valid_frames`` counts the frames taken from audio).
    A feature without ``compute`` comes with a dataset (``provided_by``: its adapter) instead of
    being computed from audio. ``label`` names it in reports; ``malik_table`` is the part of
    Malik et al.'s Table 1 it belongs to ("a": the 260 baseline features, "b": log-mel bands).
    """

    name: str
    kind: Literal["windows", "frames"]
    label: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    compute: Callable[[DecodedClip, Params], np.ndarray] | None = None
    columns: Callable[[Params], list[str]] = lambda params: []
    check: Callable[[Params], None] = lambda params: None
    valid_frames: Callable[[int, Params], int] | None = None
    description: str = ""
    provided_by: str | None = None
    malik_table: str | None = None

    @property
    def computed(self) -> bool:
        """Computed from audio by the feature stage (not provided by a dataset)."""
        return self.compute is not None


FEATURES: dict[str, FeatureSpec] = {
    spec.name: spec
    for spec in (
        FeatureSpec(
            name="logmel",
            kind="frames",
            label="log-mel spectrogram",
            defaults=logmel.LOGMEL_DEFAULTS,
            compute=logmel.compute_logmel,
            columns=logmel.band_names,
            check=logmel.check_logmel,
            valid_frames=logmel.valid_logmel_frames,
            description="log-mel spectrogram, fixed number of frames (Velankar)",
        ),
        FeatureSpec(
            name="logmel_500ms",
            kind="windows",
            label="log mel-band energy",
            malik_table="b",
            defaults=logmel.LOGMEL_500MS_DEFAULTS,
            compute=logmel.compute_logmel_500ms,
            columns=logmel.logmel_500ms_columns,
            check=logmel.check_logmel_500ms,
            description="log mel-band energies pooled over 500 ms windows (Malik, raw features)",
        ),
        FeatureSpec(
            name="compare_500ms",
            kind="windows",
            label="260 baseline features",
            malik_table="a",
            defaults=compare.COMPARE_DEFAULTS,
            compute=compare.compute_compare_500ms,
            columns=compare.compare_500ms_columns,
            check=compare.check_compare_500ms,
            description="ComParE 2016 LLDs + deltas, mean and std per 500 ms (MediaEval baseline)",
        ),
        FeatureSpec(
            name="deam_opensmile",
            kind="windows",
            label="260 baseline features",
            malik_table="a",
            provided_by="deam",
            description="DEAM's own openSMILE features per 500 ms (features/<song_id>.csv)",
        ),
    )
}


def computed() -> list[str]:
    """The features the feature stage computes from audio."""
    return [name for name, feature in FEATURES.items() if feature.computed]


def label(name: str) -> str:
    """How reports name a feature: ``log mel-band energy [logmel_500ms]``."""
    return f"{FEATURES[name].label} [{name}]" if name in FEATURES else name


def spec(name: str) -> FeatureSpec:
    """The spec of feature ``name``, which merflow computes from audio; a :class:`ConfigError`
    listing those otherwise."""
    feature = FEATURES.get(name)
    if feature is None or not feature.computed:
        provided = f" ('{name}' comes with the dataset)" if feature else ""
        raise ConfigError(
            f"unknown feature '{name}'{provided}; merflow computes: {', '.join(computed())}"
        )
    return feature


def default_params(name: str) -> Params:
    """A fresh copy of the feature's default parameters."""
    return copy.deepcopy(dict(spec(name).defaults))


def resolve_params(name: str, overrides: Mapping[str, Any] | None = None) -> Params:
    """Defaults updated by ``overrides``, checked: unknown keys and bad values raise ConfigError."""
    feature = spec(name)
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
