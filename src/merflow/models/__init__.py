"""The models merflow trains: the registry (:mod:`.registry`), and building networks from it.

Training code never imports a model class: it calls :func:`build_model` with the sizes of its data
and the user's options, then trains ``model(x)`` against the targets plus ``model.penalty()``,
which every network declares by deriving from :class:`merflow.models.network.Network`.

=====================  ==============  =========  ==========================================
name                   task            input      output
=====================  ==============  =========  ==========================================
``malik_crnn``         regression      windows    ``(B, T, F)`` -> ``(B, T, 2)`` arousal, valence
``malik_crnn_nb``      regression      windows    ``(B, T, F)`` -> ``(B, T, 2)`` arousal, valence
``velankar_crnn``      classification  frames     ``(B, n_mels, n_frames)`` -> logits ``(B, C)``
``velankar_parallel``  classification  frames     ``(B, n_mels, n_frames)`` -> logits ``(B, C)``
=====================  ==============  =========  ==========================================

The options each model accepts are declared in :mod:`merflow.models.options`; why their
defaults are what they are is documented in :mod:`merflow.models.malik` and
:mod:`merflow.models.velankar`. Importing this package does not import torch (the Snakefile
reads the registry at parse time).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

from merflow.errors import ConfigError
from merflow.models.registry import MODELS, ModelSpec, spec

if TYPE_CHECKING:
    from merflow.models.network import Network


def build_model(
    name: str, *, n_features: int, n_outputs: int, n_frames: int | None = None, **options
) -> Network:
    """Build network ``name`` for ``n_features`` inputs per step (features or mel bands) and
    ``n_outputs`` outputs (2 for arousal/valence, or the number of classes).

    ``n_frames`` (frames per clip) is required by the frame-level models, whose layers after the
    convolutions depend on it, and ignored by the others, which take any sequence length.
    ``options`` override the model's defaults; an unknown name or option, or a value its
    declaration (:mod:`merflow.models.options`) refuses, raises
    :class:`~merflow.errors.ConfigError` naming what is allowed.
    """
    from merflow.models.network import Network  # torch: importing the package must not need it

    model = spec(name)
    if model.baseline:
        raise ConfigError(
            f"{name} is a baseline: it is fitted, not built (merflow.learn.baselines)"
        )
    resolved = model.check_options(options)
    sizes = {
        "n_features": _size("n_features", n_features),
        "n_outputs": _size("n_outputs", n_outputs),
    }
    if "frames" in model.inputs:
        sizes["n_frames"] = None if n_frames is None else _size("n_frames", n_frames)
    network = model.builder()(**sizes, **resolved)
    if not isinstance(network, Network):
        raise TypeError(f"{model.build} built a {type(network).__name__}, not a Network")
    return network


def build_from_record(build: dict) -> Network:
    """The network that stored build arguments describe: ``name``, ``options`` and the sizes of
    :func:`build_model`, and ``members`` (default 1) for a checkpoint ensemble
    (:class:`merflow.models.network.CheckpointEnsemble`)."""
    args = dict(build)
    name, options, members = args.pop("name"), args.pop("options"), args.pop("members", 1)
    networks = [build_model(name, **options, **args) for _ in range(members)]
    if members == 1:
        return networks[0]
    from merflow.models.network import CheckpointEnsemble  # torch, as in build_model

    return CheckpointEnsemble(networks, spec(name).task)


def resolved_options(name: str, feature: str, user_options: dict) -> dict:
    """The model's defaults, under the paper's per-feature settings, under the user's options
    (checked)."""
    model = spec(name)
    model.check_options(user_options)
    return {**model.default_options(), **model.options_for_feature(feature), **user_options}


def count_parameters(model: Any) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _size(name: str, value) -> int:
    """A layer size as a Python int (sizes read with numpy arrive as numpy integers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"model option {name}={value!r} must be an integer >= 1")
    return int(value)


__all__ = [
    "MODELS",
    "ModelSpec",
    "build_from_record",
    "build_model",
    "count_parameters",
    "resolved_options",
    "spec",
]
