"""Baselines that give every table its context, behind the same predictor interface as networks.

=============  ==============  =======  ======================================================
name           task            input    what it predicts
=============  ==============  =======  ======================================================
``mean``       regression      windows  the training mean of arousal and of valence, everywhere
``ridge``      regression      windows  sklearn ``Ridge`` on each 500 ms window's features:
                                        the linear MediaEval baseline (option ``alpha``, 1.0)
``majority``   classification  frames,  the training class frequencies (argmax: the majority)
                               clip
``logistic``   classification  frames,  sklearn ``LogisticRegression`` on a clip's vector: mean
                               clip     and standard deviation over time of every log-mel band,
                                        or a clip-level feature (options ``C`` 1.0,
                                        ``max_iter`` 1000)
``svm``        classification  frames,  sklearn ``SVC`` (RBF kernel) on the same vectors, ``C``
                               clip     and ``gamma`` chosen by 3-fold cross-validation on the
                                        training part (the classifier of the 4Q dataset's
                                        paper); a softmax of its decision values
=============  ==============  =======  ======================================================

Their options, defaults and allowed values are declared in :mod:`merflow.models.options`.
Baselines see the same z-scored data as the networks (training-split statistics). Their weights
are plain arrays in ``baseline.npz`` (no pickle) and prediction is numpy arithmetic, so a stored
baseline needs neither sklearn's object format nor its version to be read back. The SVM is the
exception that keeps the rule: it stores its training vectors and chosen settings, and refits
(deterministically, in milliseconds) when it first predicts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from merflow.errors import ConfigError, DatasetError
from merflow.io import atomic_path
from merflow.learn.data import FrameClips, WindowedClips
from merflow.models import registry


class Baseline:
    """Shared plumbing: options, weights as named arrays, saving and loading."""

    name: ClassVar[str]  # its name in the registry (merflow.models.registry), stored with it

    def __init__(self, **weights: np.ndarray):
        self.weights = {k: np.asarray(v) for k, v in weights.items()}

    @classmethod
    def options(cls, given: dict) -> dict:
        """Its declared options' defaults (merflow.models.options) under ``given``, checked."""
        return registry.spec(cls.name).check_options(given)

    @property
    def n_parameters(self) -> int:
        return int(sum(w.size for w in self.weights.values()))

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, baseline=np.array(self.name), **self.weights)


class MeanBaseline(Baseline):
    name = "mean"

    @classmethod
    def fit(cls, train: WindowedClips, options: dict, seed: int) -> MeanBaseline:
        cls.options(options)
        return cls(mean=np.concatenate(train.targets).mean(0, dtype=np.float64))

    def predict_windows(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        mean = self.weights["mean"].astype(np.float32)
        return [np.tile(mean, (len(x), 1)) for x in features]


class RidgeBaseline(Baseline):
    name = "ridge"

    @classmethod
    def fit(cls, train: WindowedClips, options: dict, seed: int) -> RidgeBaseline:
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=cls.options(options)["alpha"])
        model.fit(np.concatenate(train.features), np.concatenate(train.targets))
        return cls(coef=model.coef_, intercept=model.intercept_)

    def predict_windows(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        coef, intercept = self.weights["coef"], self.weights["intercept"]
        return [(x @ coef.T + intercept).astype(np.float32) for x in features]


class MajorityBaseline(Baseline):
    name = "majority"

    @classmethod
    def fit(cls, train: FrameClips, options: dict, seed: int) -> MajorityBaseline:
        cls.options(options)
        counts = np.bincount(train.labels, minlength=len(train.classes))
        return cls(frequencies=counts / counts.sum())

    def predict_proba(self, features: np.ndarray, n_valid_frames: np.ndarray) -> np.ndarray:
        return np.tile(self.weights["frequencies"], (len(features), 1))


class LogisticBaseline(Baseline):
    name = "logistic"

    @classmethod
    def fit(cls, train: FrameClips, options: dict, seed: int) -> LogisticBaseline:
        from sklearn.linear_model import LogisticRegression

        settings = cls.options(options)
        x, centre, scale = _standardized_statistics(train, "logistic")
        model = LogisticRegression(
            C=settings["C"], max_iter=settings["max_iter"], random_state=seed
        )
        model.fit(x, train.labels)
        coef, intercept = full_class_weights(model, len(train.classes))
        return cls(centre=centre, scale=scale, coef=coef, intercept=intercept)

    def predict_proba(self, features: np.ndarray, n_valid_frames: np.ndarray) -> np.ndarray:
        w = self.weights
        stats = (clip_statistics(features, n_valid_frames) - w["centre"]) / w["scale"]
        return softmax(stats @ w["coef"].T + w["intercept"])


class SvmBaseline(Baseline):
    name = "svm"

    @classmethod
    def fit(cls, train: FrameClips, options: dict, seed: int) -> SvmBaseline:
        settings = cls.options(options)
        x, centre, scale = _standardized_statistics(train, "svm")
        gammas = [1.0 / (x.shape[1] * x.var()) if g == "scale" else g for g in settings["gamma"]]
        chosen = _grid_search(x, train.labels, {"C": list(settings["C"]), "gamma": gammas})
        return cls(
            centre=centre,
            scale=scale,
            x=x,
            y=train.labels,
            C=np.float64(chosen["C"]),
            gamma=np.float64(chosen["gamma"]),
            n_classes=np.int64(len(train.classes)),
        )

    def predict_proba(self, features: np.ndarray, n_valid_frames: np.ndarray) -> np.ndarray:
        """A softmax over the one-vs-rest decision values, which rank the classes as the SVM
        does (probabilities for the tables and ensembles; not calibrated)."""
        w = self.weights
        x = (clip_statistics(features, n_valid_frames) - w["centre"]) / w["scale"]
        model = self._fitted()
        decision = model.decision_function(x)
        if decision.ndim == 1:  # two classes: one signed value
            decision = np.stack([-decision, decision], axis=1)
        logits = np.full((len(x), int(w["n_classes"])), -np.inf)
        logits[:, model.classes_] = decision
        return softmax(logits)

    def _fitted(self):
        if not hasattr(self, "_model"):
            from sklearn.svm import SVC

            w = self.weights
            svc = SVC(C=float(w["C"]), gamma=float(w["gamma"]), decision_function_shape="ovr")
            self._model = svc.fit(w["x"], w["y"])
        return self._model


def _grid_search(x: np.ndarray, labels: np.ndarray, grid: dict[str, list]) -> dict:
    """The grid point of best macro-F1 in stratified 3-fold cross-validation (fewer folds when a
    class has fewer clips; the first grid point when a class has only one)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    folds = min(3, int(np.bincount(labels)[np.unique(labels)].min()))
    if folds < 2:
        return {"C": grid["C"][0], "gamma": grid["gamma"][0]}
    search = GridSearchCV(SVC(kernel="rbf"), grid, cv=StratifiedKFold(folds), scoring="f1_macro")
    return search.fit(x, labels).best_params_


def _standardized_statistics(
    train: FrameClips, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training clips' vectors z-scored, with the centre and scale that did it (a constant
    column keeps scale 1)."""
    _check_two_classes(train, name)
    stats = clip_statistics(train.features, train.n_valid_frames)
    centre, scale = stats.mean(0), stats.std(0)
    scale = np.where(scale < 1e-8, 1.0, scale)
    return (stats - centre) / scale, centre, scale


def _check_two_classes(train: FrameClips, name: str) -> None:
    if len(np.unique(train.labels)) < 2:
        raise DatasetError(
            f"the {name} baseline needs training clips of at least two classes; the training "
            f"split has only {sorted({train.classes[i] for i in train.labels})}"
        )


def clip_statistics(features: np.ndarray, n_valid_frames: np.ndarray) -> np.ndarray:
    """A vector per clip: the mean and std over the valid frames of each band, ``(N, n_mels, T)``
    -> ``(N, 2 n_mels)``; clip-level features ``(N, D)`` are vectors already."""
    if features.ndim == 2:
        return features.astype(np.float64)
    rows = []
    for x, n in zip(features, n_valid_frames, strict=True):
        valid = x[:, : max(int(n), 1)].astype(np.float64)
        rows.append(np.concatenate([valid.mean(1), valid.std(1)]))
    return np.asarray(rows).reshape(len(features), 2 * features.shape[1])


def full_class_weights(model, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax weights with one row per class of the dataset.

    sklearn keeps rows only for classes seen in training and, with two classes, a single
    row ``w`` (the sigmoid of ``w·x``, i.e. the softmax of ``(0, w·x)``). A class never seen in
    training gets logit -inf: probability 0.
    """
    seen = model.classes_
    coef, intercept = model.coef_, model.intercept_
    if len(seen) == 2:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    full_coef = np.zeros((n_classes, coef.shape[1]))
    full_intercept = np.full(n_classes, -np.inf)
    full_coef[seen], full_intercept[seen] = coef, intercept
    return full_coef, full_intercept


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(1, keepdims=True)).astype(np.float32)


def fit(name: str, train: WindowedClips | FrameClips, options: dict, *, seed: int) -> Baseline:
    """Fit baseline ``name`` on the (normalized) training part."""
    return _baseline_class(name).fit(train, dict(options), seed)


def from_weights(name: str, weights: dict[str, np.ndarray]) -> Baseline:
    """Baseline ``name`` with its stored ``weights``."""
    return _baseline_class(name)(**weights)


def _baseline_class(name: str) -> type[Baseline]:
    model = registry.spec(name)
    if not model.baseline:
        raise ConfigError(f"{name} is a network, not a baseline: it is trained, not fitted")
    return model.builder()
