"""Baselines: what they predict, that stored weights predict the same, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from merflow.errors import ConfigError, DatasetError
from merflow.learn import baselines
from merflow.learn.data import FrameClips, WindowedClips
from merflow.learn.fitted import load as load_fitted


def windowed(seed: int = 0, n_clips: int = 5, n_windows: int = 12) -> WindowedClips:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(4, 2))
    features = [rng.normal(size=(n_windows, 4)).astype(np.float32) for _ in range(n_clips)]
    targets = [(x @ weights * 0.2 + [0.1, -0.3]).astype(np.float32) for x in features]
    times = [0.5 * np.arange(1, n_windows + 1)] * n_clips
    return WindowedClips([f"c{i}" for i in range(n_clips)], times, features, targets, list("abcd"))


def frames(seed: int = 0, per_class: int = 6, classes=("a", "b", "c")) -> FrameClips:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(classes)), per_class)
    x = rng.normal(size=(len(labels), 6, 20)).astype(np.float32)
    x[np.arange(len(labels)), labels] += 2.0  # class k is loud in band k
    n_valid = rng.integers(10, 21, size=len(labels))
    return FrameClips([f"c{i}" for i in range(len(labels))], x, n_valid, labels, list(classes))


def test_mean_predicts_the_training_mean_of_each_dimension():
    train = windowed()
    fitted = baselines.fit("mean", train, {}, seed=0)
    expected = np.concatenate(train.targets).mean(0)
    predicted = fitted.predict_windows([np.zeros((3, 4), np.float32)])[0]
    np.testing.assert_allclose(predicted, np.tile(expected, (3, 1)), rtol=1e-6)


def test_ridge_equals_sklearn_and_survives_saving(tmp_path):
    train, test = windowed(0), windowed(1)
    fitted = baselines.fit("ridge", train, {"alpha": 0.5}, seed=0)
    fitted.save(tmp_path / "baseline.npz")
    loaded = load_fitted(tmp_path / "baseline.npz")
    reference = Ridge(alpha=0.5).fit(np.concatenate(train.features), np.concatenate(train.targets))
    for x, predicted in zip(test.features, loaded.predict_windows(test.features), strict=True):
        np.testing.assert_allclose(predicted, reference.predict(x), rtol=1e-4, atol=1e-5)
    assert loaded.n_parameters == 4 * 2 + 2


def test_majority_favours_the_most_frequent_training_class():
    train = frames()
    train = train.select(train.clip_ids[:-2])  # class "c" now has 4 clips, the others 6
    probabilities = baselines.fit("majority", train, {}, seed=0).predict_proba(
        train.features[:2], train.n_valid_frames[:2]
    )
    np.testing.assert_allclose(probabilities[0], [6 / 16, 6 / 16, 4 / 16])
    assert probabilities.argmax(1).tolist() == [0, 0]


def test_logistic_uses_valid_frame_statistics_and_matches_sklearn(tmp_path):
    train, test = frames(0), frames(1)
    fitted = baselines.fit("logistic", train, {"C": 0.5}, seed=0)
    fitted.save(tmp_path / "baseline.npz")
    loaded = load_fitted(tmp_path / "baseline.npz")

    def statistics(data: FrameClips) -> np.ndarray:  # independent of baselines.clip_statistics
        return np.array(
            [
                np.r_[x[:, :n].mean(1), x[:, :n].std(1)]
                for x, n in zip(data.features, data.n_valid_frames, strict=True)
            ]
        )

    stats = statistics(train)
    centre, scale = stats.mean(0), stats.std(0)
    reference = LogisticRegression(C=0.5, max_iter=1000, random_state=0)
    reference.fit((stats - centre) / scale, train.labels)
    expected = reference.predict_proba((statistics(test) - centre) / scale)
    predicted = loaded.predict_proba(test.features, test.n_valid_frames)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-6)
    assert (predicted.argmax(1) == test.labels).mean() > 0.8


def test_logistic_with_a_class_missing_from_training_gives_it_probability_zero():
    data = frames(classes=("a", "b", "c"))
    two_classes = data.select([c for c, y in zip(data.clip_ids, data.labels, strict=True) if y < 2])
    fitted = baselines.fit("logistic", two_classes, {}, seed=0)
    probabilities = fitted.predict_proba(data.features, data.n_valid_frames)
    assert probabilities.shape == (len(data.clip_ids), 3)
    np.testing.assert_allclose(probabilities[:, 2], 0.0)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)


def test_bad_options_and_single_class_training_are_clear_errors():
    with pytest.raises(ConfigError, match="alpha"):
        baselines.fit("mean", windowed(), {"alpha": 1.0}, seed=0)
    with pytest.raises(ConfigError, match="known"):
        baselines.fit("lasso", windowed(), {}, seed=0)
    data = frames()
    one_class = data.select([c for c, y in zip(data.clip_ids, data.labels, strict=True) if y == 0])
    with pytest.raises(DatasetError, match="two classes"):
        baselines.fit("logistic", one_class, {}, seed=0)
