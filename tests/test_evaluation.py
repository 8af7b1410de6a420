"""Metrics against hand-computed values; stitching of chunked song predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr

from merflow.data import FrameClips
from merflow.evaluation import (
    _json_safe,
    classification_metrics,
    classification_table,
    pearson_r,
    regression_metrics,
    rmse,
)
from merflow.inference import NetworkPredictor
from merflow.sequences import chunk_starts, stitch_song_predictions


def regression_predictions() -> pd.DataFrame:
    """Two songs; song b has a constant arousal prediction (r undefined)."""
    return pd.DataFrame(
        {
            "clip_id": ["a", "a", "a", "b", "b"],
            "t": [0.5, 1.0, 1.5, 0.5, 1.0],
            "arousal_pred": [0.0, 0.5, 1.0, 0.2, 0.2],
            "valence_pred": [0.1, 0.2, 0.4, 0.0, 0.3],
            "arousal": [0.0, 0.0, 0.6, 0.4, -0.4],
            "valence": [0.1, 0.3, 0.2, 0.1, 0.2],
        }
    )


def test_rmse_and_pearson_match_hand_and_scipy_values():
    assert rmse(np.array([1.0, 2.0]), np.array([0.0, 0.0])) == pytest.approx(math.sqrt(2.5))
    x, y = np.array([1.0, 2.0, 4.0, 3.0]), np.array([0.5, 1.5, 2.0, 2.5])
    assert pearson_r(x, y) == pytest.approx(pearsonr(x, y).statistic)
    assert pearson_r(x, -2 * x + 1) == pytest.approx(-1.0)
    assert pearson_r(np.full(4, 0.3), y) is None  # constant prediction
    assert pearson_r(np.array([1.0]), np.array([2.0])) is None


def test_regression_metrics_per_song_and_pooled():
    table = regression_predictions()
    metrics = regression_metrics(table)
    a, b = table[table.clip_id == "a"], table[table.clip_id == "b"]

    song_rmse = [
        math.sqrt((0.0**2 + 0.5**2 + 0.4**2) / 3),
        math.sqrt((0.2**2 + 0.6**2) / 2),
    ]
    arousal = metrics["arousal"]
    assert arousal["rmse"]["song_mean"] == pytest.approx(np.mean(song_rmse))
    assert arousal["rmse"]["song_std"] == pytest.approx(np.std(song_rmse))
    pooled = math.sqrt((0.25 + 0.16 + 0.04 + 0.36) / 5)
    assert arousal["rmse"]["pooled"] == pytest.approx(pooled)
    # song b's r is undefined: the song mean of r is song a's alone
    assert arousal["pearson_r"]["n_songs"] == 1
    expected_r = pearsonr(a.arousal_pred, a.arousal).statistic
    assert arousal["pearson_r"]["song_mean"] == pytest.approx(expected_r)
    assert arousal["pearson_r"]["song_std"] == pytest.approx(0.0)
    assert arousal["pearson_r"]["pooled"] == pytest.approx(
        pearsonr(table.arousal_pred, table.arousal).statistic
    )
    valence_r = [pearsonr(s.valence_pred, s.valence).statistic for s in (a, b)]
    assert metrics["valence"]["pearson_r"]["song_mean"] == pytest.approx(np.mean(valence_r))
    assert metrics["average"]["rmse"]["pooled"] == pytest.approx(
        (pooled + metrics["valence"]["rmse"]["pooled"]) / 2
    )
    assert metrics["n_clips"] == 2 and metrics["n_windows"] == 5


def test_a_constant_prediction_gives_null_not_nan_in_json():
    table = regression_predictions().assign(arousal_pred=0.1, valence_pred=0.1)
    metrics = _json_safe({"x": regression_metrics(table), "nan": float("nan")})
    text = json.dumps(metrics, allow_nan=False)  # raises on NaN
    parsed = json.loads(text)
    assert parsed["x"]["arousal"]["pearson_r"] == {
        "song_mean": None,
        "song_std": None,
        "pooled": None,
        "n_songs": 0,
    }
    assert parsed["x"]["average"]["pearson_r"]["pooled"] is None
    assert parsed["nan"] is None


def test_classification_metrics_against_a_hand_made_confusion_matrix():
    classes = ["happy", "sad", "calm"]
    table = pd.DataFrame(
        {
            "label": ["happy", "happy", "happy", "sad", "sad", "calm"],
            "predicted": ["happy", "happy", "sad", "sad", "happy", "sad"],
        }
    )
    metrics = classification_metrics(table, classes)
    assert metrics["confusion_matrix"]["matrix"] == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    happy, sad, calm = (metrics["per_class"][c] for c in classes)
    assert (happy["precision"], happy["recall"], happy["support"]) == (
        pytest.approx(2 / 3),
        pytest.approx(2 / 3),
        3,
    )
    assert (sad["precision"], sad["recall"]) == (pytest.approx(1 / 3), pytest.approx(1 / 2))
    assert sad["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert calm == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["macro_avg"]["recall"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert metrics["weighted_avg"]["recall"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2) / 6)


def test_classification_table_names_classes_and_keeps_probabilities():
    data = FrameClips(
        ["x", "y"],
        np.zeros((2, 1, 1), np.float32),
        np.array([1, 1]),
        np.array([1, 0]),
        ["happy", "sad"],
    )
    table = classification_table(data, np.array([[0.2, 0.8], [0.6, 0.4]]))
    assert table["label"].tolist() == ["sad", "happy"]
    assert table["predicted"].tolist() == ["sad", "happy"]
    np.testing.assert_allclose(table["p_sad"], [0.8, 0.4])


@pytest.mark.parametrize("n_windows", [1, 7, 10, 23, 60])
def test_stitching_covers_every_window_exactly_once(n_windows):
    seq_len = 10
    starts = chunk_starts(n_windows, seq_len)
    coverage = np.zeros(n_windows, int)
    outputs = []
    for start in starts:
        stop = min(start + seq_len, n_windows)
        coverage[start:stop] += 1
        outputs.append(np.arange(start, stop, dtype=np.float32)[:, None])
    assert coverage.min() >= 1  # the chunks reach every window
    stitched = stitch_song_predictions(n_windows, starts, outputs)
    np.testing.assert_array_equal(stitched[:, 0], np.arange(n_windows))


class Echo(torch.nn.Module):
    """Outputs its first two inputs plus how many windows it saw: reveals the chunking."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :2] + 1000 * x.shape[1]


def test_network_predictions_of_long_and_short_songs_are_stitched_in_place():
    songs = [np.stack([np.arange(n), -np.arange(n)], 1).astype(np.float32) for n in (23, 4, 10)]
    predicted = NetworkPredictor(Echo(), torch.device("cpu"), seq_len=10).predict_windows(songs)
    for song, out in zip(songs, predicted, strict=True):
        assert out.shape == (len(song), 2)
        np.testing.assert_array_equal(out - 1000 * min(len(song), 10), song)
