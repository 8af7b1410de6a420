"""The model registry: every model merflow trains, networks and baselines, in one list.

:data:`MODELS` is the only list of models. The config schema's enum, the config checks (which
features a model takes, which need ``seq_len``), the workflow's rules and targets, the order and
labels of the report tables all derive from it. A new model is one module (a build function and
its options, or a baseline class) plus one entry below; its place in the list is its place in
the report tables.

Importing this module is cheap (no torch, no scikit-learn): the Snakefile reads it at parse time.
Builders are named as ``"module:attribute"`` and imported when a model is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from merflow.errors import ConfigError
from merflow.models import options as declarations
from merflow.models.options import Options

TASKS = ("regression", "classification")
INPUTS = ("windows", "frames", "clip")  # feature kinds (merflow.features.registry)


@dataclass(frozen=True)
class ModelSpec:
    """What merflow knows about a model before building it.

    ``inputs``: the feature kinds it learns from -- ``windows`` (sequences of 500 ms vectors),
    ``frames`` (a clip's log-mel matrix), ``clip`` (one vector a clip). ``build``: a network's
    build function or a baseline's class, as ``"module:attribute"``; ``options``: its declared
    options (:mod:`merflow.models.options`; none if not given). ``sequence``: trained on
    ``seq_len`` chunks of windows. ``baseline``: a deterministic fit on the CPU, one run for
    every seed. ``feature_options``: options a paper sets per input feature (Malik's dropout
    on log-mel).
    ``fusion``: the ways it learns from fused views (``early``: one head on the views
    concatenated; ``late``: one head per view, then combined; :mod:`merflow.learn.fusion`).
    ``threads``: the CPU threads a training job of it asks for; tiny recurrent networks run no
    faster on two, and lose several times over when another job shares the cores
    (bench/training.py --threads).
    """

    name: str
    task: str
    inputs: tuple[str, ...]
    label: str
    build: str
    options: str | None = None
    sequence: bool = False
    baseline: bool = False
    paper: str | None = None
    feature_options: str | None = None
    fusion: tuple[str, ...] = ()
    threads: int = 1

    def builder(self) -> Any:
        """The build function (networks) or class (baselines), imported now."""
        return resolve(self.build)

    def declared_options(self) -> Options:
        """What ``model_options.<name>`` may hold (importing it is cheap: no torch)."""
        return resolve(self.options) if self.options else {}

    def default_options(self) -> dict[str, Any]:
        return declarations.defaults(self.declared_options())

    def check_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Its defaults under ``given``, or a :class:`ConfigError` naming the wrong key."""
        return declarations.resolve(self.name, self.declared_options(), given)

    def options_for_feature(self, feature: str) -> dict[str, Any]:
        """Options the paper sets for ``feature``, to merge under the user's."""
        if not self.feature_options:
            return {}
        return dict(resolve(self.feature_options).get(feature, {}))


def catalog(*specs: ModelSpec) -> dict[str, ModelSpec]:
    for spec in specs:
        if spec.task not in TASKS or not set(spec.inputs) <= set(INPUTS) or not spec.inputs:
            raise ValueError(f"model {spec.name}: task {spec.task!r}, inputs {spec.inputs!r}")
    return {spec.name: spec for spec in specs}


MALIK = "merflow.models.malik"
VELANKAR = "merflow.models.velankar"
BASELINES = "merflow.learn.baselines"
OPTIONS = "merflow.models.options"

MODELS: dict[str, ModelSpec] = catalog(
    ModelSpec(
        "malik_crnn_nb", "regression", ("windows",), "CRNN_NB", f"{MALIK}:build_malik_crnn_nb",
        f"{OPTIONS}:MALIK", sequence=True, paper="Malik et al. 2017, Fig. 2",
        feature_options=f"{MALIK}:FEATURE_OPTIONS",
    ),
    ModelSpec(
        "malik_crnn", "regression", ("windows",), "CRNN", f"{MALIK}:build_malik_crnn",
        f"{OPTIONS}:MALIK", sequence=True, paper="Malik et al. 2017, Fig. 1",
        feature_options=f"{MALIK}:FEATURE_OPTIONS",
    ),
    ModelSpec(
        "velankar_crnn", "classification", ("frames",), "CRNN",
        f"{VELANKAR}:build_velankar_crnn", f"{OPTIONS}:VELANKAR_CRNN",
        paper="Velankar et al., Fig. 3", threads=2,
    ),
    ModelSpec(
        "velankar_parallel", "classification", ("frames",), "Parallel CNN-RNN",
        f"{VELANKAR}:build_velankar_parallel", f"{OPTIONS}:VELANKAR_PARALLEL",
        paper="Velankar et al., Fig. 4", threads=2,
    ),
    ModelSpec(
        "mlp", "classification", ("clip",), "MLP head", "merflow.models.heads:build_mlp",
        f"{OPTIONS}:MLP", fusion=("early",),
    ),
    ModelSpec(
        "mean", "regression", ("windows",), "training mean (baseline)",
        f"{BASELINES}:MeanBaseline", baseline=True,
    ),
    ModelSpec(
        "ridge", "regression", ("windows",), "ridge regression (MediaEval linear baseline)",
        f"{BASELINES}:RidgeBaseline", f"{OPTIONS}:RIDGE", baseline=True,
    ),
    ModelSpec(
        "majority", "classification", ("frames", "clip"), "majority class (baseline)",
        f"{BASELINES}:MajorityBaseline", baseline=True,
    ),
    ModelSpec(
        "logistic", "classification", ("frames", "clip"), "logistic regression (baseline)",
        f"{BASELINES}:LogisticBaseline", f"{OPTIONS}:LOGISTIC", baseline=True,
        fusion=("early", "late"),
    ),
    ModelSpec(
        "svm", "classification", ("frames", "clip"), "SVM (RBF kernel)",
        f"{BASELINES}:SvmBaseline", f"{OPTIONS}:SVM", baseline=True,
        fusion=("early", "late"),
    ),
)  # fmt: skip


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``, or a :class:`ConfigError` listing the known models."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def names(*, baseline: bool | None = None, task: str | None = None) -> list[str]:
    """Model names in registry order, optionally only baselines (or networks), of ``task``."""
    return [
        m.name
        for m in MODELS.values()
        if (baseline is None or m.baseline == baseline) and (task is None or m.task == task)
    ]


def label(name: str) -> str:
    """How reports name a model: ``CRNN [malik_crnn]``; an unknown name as it is."""
    return f"{MODELS[name].label} [{name}]" if name in MODELS else name


def rank(name: str) -> tuple[int, int]:
    """Sort key of report rows: networks before baselines, each in registry order."""
    order = list(MODELS)
    if name not in MODELS:
        return (1, len(order))  # a model from an older registry: after the networks
    return (2 if MODELS[name].baseline else 0, order.index(name))


def resolve(target: str) -> Any:
    """The object ``"package.module:attribute.attribute"`` names."""
    module, _, path = target.partition(":")
    value: Any = importlib.import_module(module)
    for part in path.split("."):
        value = getattr(value, part)
    return value


def fusing(method: str) -> list[str]:
    """Models that learn from views fused by ``method`` (``early`` or ``late``)."""
    return [m.name for m in MODELS.values() if method in m.fusion]


def accepting(kind: str) -> Iterable[str]:
    """Models that learn from features of ``kind``."""
    return [m.name for m in MODELS.values() if kind in m.inputs]
