"""The neural models of both papers, and the one registry that builds them by name.

A new model is one module with a ``build`` function and one :data:`MODELS` line. Training code
never imports a model class: it calls :func:`build_model` with the sizes of its data and the
user's options, then trains ``model(x)`` against the targets plus ``model.penalty()``.

=====================  ==============  =========  ==========================================
name                   task            input      output
=====================  ==============  =========  ==========================================
``malik_crnn``         regression      windows    ``(B, T, F)`` -> ``(B, T, 2)`` arousal, valence
``malik_crnn_nb``      regression      windows    ``(B, T, F)`` -> ``(B, T, 2)`` arousal, valence
``velankar_crnn``      classification  frames     ``(B, n_mels, n_frames)`` -> logits ``(B, C)``
``velankar_parallel``  classification  frames     ``(B, n_mels, n_frames)`` -> logits ``(B, C)``
=====================  ==============  =========  ==========================================

The options each model accepts, and why their defaults are what they are, are documented in
:mod:`merflow.models.malik` and :mod:`merflow.models.velankar`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from merflow.errors import ConfigError
from merflow.models import malik, velankar
from merflow.models.blocks import check_positive_int


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of merflow needs to know about a model before building it.

    ``input`` is ``"windows"`` (sequences of 500 ms feature vectors, ``(B, T, F)``) or ``"frames"``
    (a log-mel matrix, ``(B, n_mels, n_frames)``); ``defaults`` holds every option the model
    accepts with its default value: the details the paper leaves open.
    """

    name: str
    task: str  # "regression" | "classification"
    input: str  # "windows" | "frames"
    build: Callable[..., nn.Module]
    defaults: dict


def _spec(name: str, task: str, input: str, build: Callable, defaults: dict) -> ModelSpec:
    return ModelSpec(name, task, input, build, dict(defaults))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("malik_crnn", "regression", "windows", malik.build_malik_crnn, malik.DEFAULTS),
        _spec("malik_crnn_nb", "regression", "windows", malik.build_malik_crnn_nb, malik.DEFAULTS),
        _spec(
            "velankar_crnn",
            "classification",
            "frames",
            velankar.build_velankar_crnn,
            velankar.CRNN_DEFAULTS,
        ),
        _spec(
            "velankar_parallel",
            "classification",
            "frames",
            velankar.build_velankar_parallel,
            velankar.PARALLEL_DEFAULTS,
        ),
    )
}


def build_model(
    name: str, *, n_features: int, n_outputs: int, n_frames: int | None = None, **options
) -> nn.Module:
    """Build model ``name`` for ``n_features`` inputs per step (features or mel bands) and
    ``n_outputs`` outputs (2 for arousal/valence, or the number of classes).

    ``n_frames`` (frames per clip) is required by the frame-level models, whose layers after the
    convolutions depend on it, and ignored by the window models, which take any sequence length.
    ``options`` override :attr:`ModelSpec.defaults`; an unknown name or option raises
    :class:`~merflow.errors.ConfigError` listing what is allowed.
    """
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"allowed: {', '.join(sorted(spec.defaults))}"
        )
    settings = {**spec.defaults, **options}
    sizes = {
        "n_features": _size("n_features", n_features),
        "n_outputs": _size("n_outputs", n_outputs),
    }
    if spec.input == "frames":
        n_frames = None if n_frames is None else _size("n_frames", n_frames)
        return spec.build(**sizes, n_frames=n_frames, **settings)
    return spec.build(**sizes, **settings)


class CheckpointEnsemble(nn.Module):
    """Several trained states of one network as one model (``checkpoint_ensemble``).

    A classifier's output is the log of its members' mean class probabilities, so that the
    softmax every caller applies gives that mean back; a regressor's output is the mean of its
    members' outputs.
    """

    def __init__(self, members: Sequence[nn.Module], task: str):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(x).float() for member in self.members])
        if self.task == "classification":
            return torch.log(torch.softmax(outputs, dim=-1).mean(0))
        return outputs.mean(0)


def build_from_record(build: dict) -> nn.Module:
    """The model that stored build arguments describe: ``name``, ``options`` and the sizes of
    :func:`build_model`, and ``members`` (default 1) for a :class:`CheckpointEnsemble`."""
    args = dict(build)
    name, options, members = args.pop("name"), args.pop("options"), args.pop("members", 1)
    networks = [build_model(name, **options, **args) for _ in range(members)]
    return networks[0] if members == 1 else CheckpointEnsemble(networks, get_spec(name).task)


def _size(name: str, value) -> int:
    """A layer size as a Python int (sizes read with numpy arrive as numpy integers)."""
    check_positive_int(name, value)
    return int(value)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``, or a :class:`ConfigError` listing the known models."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}"
        ) from None


def feature_options(name: str, feature: str) -> dict:
    """Options the paper sets per input feature, to merge *under* the user's options.

    Malik et al. train the same network on the 260 baseline features with dropout 0.25 and on
    log-mel bands with dropout 0.75 (Section 3.5); one ``model_options`` entry per model cannot say
    that, so training asks here: ``{**feature_options(model, feature), **user_options}``.
    """
    get_spec(name)
    if name in ("malik_crnn", "malik_crnn_nb") and feature in malik.DROPOUT_BY_FEATURE:
        return {"dropout": malik.DROPOUT_BY_FEATURE[feature]}
    return {}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "MODELS",
    "CheckpointEnsemble",
    "ModelSpec",
    "build_from_record",
    "build_model",
    "count_parameters",
    "feature_options",
    "get_spec",
]
