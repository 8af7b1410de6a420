"""Learning from fused views (:mod:`merflow.features.views`): early and late fusion.

Every statistic is fitted on the run's training part only, after the run's z-scoring (itself
fitted there), so the test part never informs a choice:

* ``early``: the views' columns, each z-scored (the run's :class:`~merflow.learn.data.ZScore`),
  side by side, and one head (logistic, svm, mlp) on them. ``select`` keeps some columns: the
  ``k`` of highest ANOVA F-value (scikit-learn ``SelectKBest``), or those an L1-penalized
  logistic regression (``l1_C``) gives a non-zero weight; the kept columns are stored with the
  z-score statistics (``norm.npz``), so evaluation and prediction apply the same choice.
* ``late``: one head (logistic or svm) per view; their class probabilities are averaged
  (``combine: average``) or weighed by a logistic regression on their logarithms (``stack``),
  fitted on out-of-fold probabilities of ``inner_folds`` stratified folds of the training part;
  the views' heads are then refitted on the whole training part.

A late-fused model is stored like a baseline (``baseline.npz``, plain arrays): each view's head
under ``view<i>.``, the views' columns and the stacker's weights.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from merflow.errors import ConfigError, DatasetError
from merflow.features.views import view_slices
from merflow.learn import baselines
from merflow.learn.data import ClipVectors, ZScore
from merflow.models.registry import MODELS, fusing
from merflow.tables import metadata_of

log = logging.getLogger(__name__)

_MIN_PROBABILITY = 1e-6  # the stacker learns from log-probabilities: a zero would be -inf


def check(model: str, fusion: dict[str, Any], features_path: str) -> None:
    """A run with fusion settings trains a model that can fuse so, on a fused table."""
    if not fusion:
        return
    method = fusion["method"]
    if method not in MODELS[model].fusion:
        raise ConfigError(
            f"model {model} does not learn from views fused {method}; models that do: "
            f"{', '.join(fusing(method))}"
        )
    if not metadata_of(features_path, "clip").get("views"):
        raise ConfigError(
            f"{features_path} is not a table of fused views (merflow fuse-features writes them); "
            "fusion settings apply to fused views only"
        )


# --- early fusion: selection ---------------------------------------------------------------------


def with_selection(zscore: ZScore, train: ClipVectors, fusion: dict[str, Any], seed: int) -> ZScore:
    """``zscore`` keeping the columns ``fusion['select']`` chooses on the z-scored ``train``
    (``train`` already normalized by ``zscore``); ``zscore`` itself without a selection."""
    if fusion.get("method") != "early" or not fusion.get("select"):
        return zscore
    selector = make_selector(fusion, seed, train.features.shape[1])
    keep = np.flatnonzero(selector.fit(train.features, train.labels).get_support())
    if not len(keep):
        raise DatasetError(
            f"the {fusion['select']} selection kept no column of the training part; raise "
            "fusion.l1_C (a weaker penalty) or use select: anova"
        )
    log.info("%s selection: %d of %d columns kept", fusion["select"], len(keep), len(zscore.mean))
    return replace(zscore, keep=keep.astype(np.int64))


def make_selector(fusion: dict[str, Any], seed: int, n_columns: int):
    """The scikit-learn selector of ``fusion['select']``, unfitted."""
    from sklearn.feature_selection import SelectFromModel, SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression

    if fusion["select"] == "anova":
        return SelectKBest(f_classif, k=min(fusion["k"], n_columns))
    l1 = LogisticRegression(
        C=fusion["l1_C"], solver="saga", max_iter=5000, random_state=seed, **_l1_penalty()
    )
    return SelectFromModel(l1, threshold=1e-10)


def _l1_penalty() -> dict[str, Any]:
    """scikit-learn 1.8 spells the L1 penalty ``l1_ratio=1`` (``penalty`` is deprecated)."""
    import sklearn

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    return {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}


# --- late fusion ---------------------------------------------------------------------------------


class LateFusion:
    """One baseline head per view, and how their class probabilities are combined."""

    def __init__(
        self,
        name: str,
        heads: list[baselines.Baseline],
        bounds: np.ndarray,
        stacker: dict[str, np.ndarray] | None = None,
    ):
        self.name, self.heads, self.bounds, self.stacker = name, heads, bounds, stacker

    @classmethod
    def fit(
        cls,
        model: str,
        train: ClipVectors,
        options: dict,
        seed: int,
        features_path: str,
        fusion: dict[str, Any],
    ) -> LateFusion:
        """Fit ``model`` on each view of ``train`` (columns from the table's metadata)."""
        slices = [s for _, s in view_slices(metadata_of(features_path, "clip"))]
        bounds = np.array([[s.start, s.stop] for s in slices], dtype=np.int64)
        heads = [baselines.fit(model, _columns(train, s), options, seed=seed) for s in slices]
        stacker = None
        if fusion["combine"] == "stack":
            stacker = _fit_stacker(model, train, options, seed, slices, fusion["inner_folds"])
        return cls(model, heads, bounds, stacker)

    def view_probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(N, views, classes)``: each view's head on its columns."""
        ones = np.ones(len(features), dtype=np.int64)
        views = zip(self.heads, self.bounds, strict=True)
        return np.stack([h.predict_proba(features[:, a:b], ones) for h, (a, b) in views], axis=1)

    def predict_proba(self, features: np.ndarray, n_valid_frames: np.ndarray) -> np.ndarray:
        per_view = self.view_probabilities(features)
        if self.stacker is None:
            return per_view.mean(1).astype(np.float32)
        return _stacked(per_view, self.stacker)

    @property
    def n_parameters(self) -> int:
        stacker = sum(w.size for w in (self.stacker or {}).values())
        return sum(h.n_parameters for h in self.heads) + int(stacker)

    def save(self, path) -> None:
        from merflow.io import atomic_path

        arrays = {"baseline": np.array(self.name), "fusion": np.array("late")}
        arrays["bounds"] = self.bounds
        for i, head in enumerate(self.heads):
            arrays |= {f"view{i}.{k}": v for k, v in head.weights.items()}
        arrays |= {f"stack.{k}": v for k, v in (self.stacker or {}).items()}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def from_weights(cls, name: str, weights: dict[str, np.ndarray]) -> LateFusion:
        """The model :meth:`save` wrote (``baseline`` already taken out of ``weights``)."""
        bounds = weights["bounds"]
        heads = [
            baselines.from_weights(name, _prefixed(weights, f"view{i}."))
            for i in range(len(bounds))
        ]
        stacker = _prefixed(weights, "stack.") or None
        return cls(name, heads, bounds, stacker)


def _prefixed(weights: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


def _columns(data: ClipVectors, columns: slice) -> ClipVectors:
    return ClipVectors(
        data.clip_ids, data.features[:, columns], data.n_valid_frames, data.labels, data.classes
    )


def _fit_stacker(
    model: str, train: ClipVectors, options: dict, seed: int, slices: list[slice], folds: int
) -> dict[str, np.ndarray]:
    """A logistic regression on the views' out-of-fold log-probabilities: each inner fold's
    heads are fitted on the rest of the training part and predict the fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(train.labels)
    n_folds = min(folds, int(counts[counts > 0].min()))
    if n_folds < 2:
        raise DatasetError(
            "stacking the views needs two training clips of every class at least (inner folds); "
            "use fusion.combine: average"
        )
    inner = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    n_classes = len(train.classes)
    out_of_fold = np.zeros((len(train.labels), len(slices), n_classes))
    for fit_rows, held_rows in inner.split(train.features, train.labels):
        part = train.take(fit_rows)
        late = LateFusion(
            model,
            [baselines.fit(model, _columns(part, s), options, seed=seed) for s in slices],
            np.array([[s.start, s.stop] for s in slices]),
        )
        out_of_fold[held_rows] = late.view_probabilities(train.features[held_rows])
    stacker = LogisticRegression(max_iter=1000, random_state=seed)
    stacker.fit(_stack_inputs(out_of_fold), train.labels)
    coef, intercept = baselines.full_class_weights(stacker, n_classes)
    return {"coef": coef, "intercept": intercept}


def _stack_inputs(per_view: np.ndarray) -> np.ndarray:
    """``(N, views, classes)`` probabilities -> ``(N, views × classes)`` log-probabilities."""
    return np.log(np.clip(per_view, _MIN_PROBABILITY, 1.0)).reshape(len(per_view), -1)


def _stacked(per_view: np.ndarray, stacker: dict[str, np.ndarray]) -> np.ndarray:
    logits = _stack_inputs(per_view) @ stacker["coef"].T + stacker["intercept"]
    return baselines.softmax(logits)
