"""Metrics against hand-computed values; stitching of chunked song predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr

from merflow.learn.data import FrameClips
from merflow.learn.evaluation import (
    _json_safe,
    ccc,
    classification_metrics,
    classification_table,
    pearson_r,
    r2,
    regression_metrics,
    rmse,
)
from merflow.learn.inference import NetworkPredictor
from merflow.learn.sequences import chunk_starts, stitch_song_predictions


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


def lin_ccc(x, y) -> float:
    """Lin's CCC written out with numpy's population moments (ddof 0)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    covariance = np.mean((x - np.mean(x)) * (y - np.mean(y)))
    return 2 * covariance / (np.var(x) + np.var(y) + (np.mean(x) - np.mean(y)) ** 2)


def r2_by_hand(pred, true) -> float:
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    return 1 - np.sum((true - pred) ** 2) / np.sum((true - np.mean(true)) ** 2)


def test_ccc_against_values_derived_on_paper():
    x = np.array([1.0, 2.0, 3.0, 4.0])  # mean 2.5, population variance 1.25
    assert ccc(x, x) == pytest.approx(1.0)
    # shifted by 1: cov = var = 1.25, so 2·1.25 / (1.25 + 1.25 + 1²) = 5/7, while r stays 1
    assert ccc(x + 1, x) == pytest.approx(5 / 7)
    assert pearson_r(x + 1, x) == pytest.approx(1.0)
    centred = x - x.mean()
    assert ccc(-centred, centred) == pytest.approx(-1.0)
    # negated without centring: cov -1.25, means 2.5 and -2.5: -2.5 / (2.5 + 25) = -1/11
    assert ccc(-x, x) == pytest.approx(-1 / 11)
    # scaled by 2 around the mean: cov 2.5, variances 5 and 1.25: 5 / 6.25
    assert ccc(2 * centred, centred) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(0.3, 2.0, size=50)
    assert ccc(a, b) == pytest.approx(lin_ccc(a, b))
    assert ccc(b, a) == pytest.approx(ccc(a, b))  # symmetric


def test_ccc_undefined_only_without_a_denominator():
    assert ccc(np.full(3, 0.3), np.full(3, 0.3)) is None  # the same constant: 0/0
    assert ccc(np.array([1.0]), np.array([2.0])) is None  # fewer than 2 windows
    # a constant prediction of a varying annotation has no r, but its CCC is 0
    assert ccc(np.full(3, 0.3), np.array([0.0, 0.5, 1.0])) == pytest.approx(0.0)
    assert ccc(np.full(2, 0.0), np.full(2, 1.0)) == pytest.approx(0.0)


def test_r2_is_one_minus_residual_over_total_sum_of_squares():
    true = np.array([1.0, 2.0, 3.0, 4.0])  # SS_tot = 5
    pred = np.array([1.5, 2.0, 2.5, 5.0])  # SS_res = 0.25 + 0 + 0.25 + 1 = 1.5
    assert r2(pred, true) == pytest.approx(1 - 1.5 / 5)
    assert r2(true, true) == pytest.approx(1.0)
    assert r2(np.full(4, 2.5), true) == pytest.approx(0.0)  # the mean of the truth
    assert r2(np.full(4, 10.0), true) == pytest.approx(r2_by_hand(np.full(4, 10.0), true))
    assert r2(np.full(4, 10.0), true) < 0
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40), rng.normal(size=40)
    assert r2(a, b) == pytest.approx(r2_by_hand(a, b))
    assert r2(a, b) != pytest.approx(r2(b, a))  # not symmetric: the annotation is the truth


def test_r2_undefined_for_a_constant_truth_or_a_single_window():
    # scikit-learn would say 1.0 (perfect) or 0.0 here; the ratio is 0/0 or x/0
    assert r2(np.full(3, 0.3), np.full(3, 0.3)) is None
    assert r2(np.array([0.0, 0.5, 1.0]), np.full(3, 0.3)) is None
    assert r2(np.array([1.0]), np.array([2.0])) is None
    assert r2(np.full(3, 0.3), np.array([0.0, 0.5, 1.0])) is not None  # constant prediction


def test_r2_and_ccc_per_song_differ_from_pooled():
    table = regression_predictions()
    metrics = regression_metrics(table)
    songs = [table[table.clip_id == c] for c in ("a", "b")]
    for name in ("arousal", "valence"):
        r2_songs = [r2_by_hand(s[f"{name}_pred"], s[name]) for s in songs]
        ccc_songs = [lin_ccc(s[f"{name}_pred"], s[name]) for s in songs]
        got_r2, got_ccc = metrics[name]["r2"], metrics[name]["ccc"]
        assert got_r2["song_mean"] == pytest.approx(np.mean(r2_songs))
        assert got_r2["song_std"] == pytest.approx(np.std(r2_songs))
        assert got_r2["pooled"] == pytest.approx(r2_by_hand(table[f"{name}_pred"], table[name]))
        assert got_ccc["song_mean"] == pytest.approx(np.mean(ccc_songs))
        assert got_ccc["song_std"] == pytest.approx(np.std(ccc_songs))
        assert got_ccc["pooled"] == pytest.approx(lin_ccc(table[f"{name}_pred"], table[name]))
        assert got_r2["n_songs"] == got_ccc["n_songs"] == 2
        assert got_r2["pooled"] != pytest.approx(got_r2["song_mean"], abs=1e-3)
        assert got_ccc["pooled"] != pytest.approx(got_ccc["song_mean"], abs=1e-3)
    # song b's arousal prediction is constant: no r, but R² and CCC (0) are defined
    arousal = metrics["arousal"]
    assert arousal["pearson_r"]["n_songs"] == 1 and arousal["r2"]["n_songs"] == 2
    b = songs[1]
    assert r2(b.arousal_pred, b.arousal) == pytest.approx(1 - (0.2**2 + 0.6**2) / (2 * 0.4**2))
    assert ccc(b.arousal_pred, b.arousal) == pytest.approx(0.0)
    for metric in ("r2", "ccc"):
        for field in ("song_mean", "song_std", "pooled"):
            expected = (metrics["arousal"][metric][field] + metrics["valence"][metric][field]) / 2
            assert metrics["average"][metric][field] == pytest.approx(expected)
        assert set(metrics["average"][metric]) == {"song_mean", "song_std", "pooled"}


def test_songs_where_r2_or_ccc_is_undefined_are_left_out():
    table = pd.DataFrame(
        {
            "clip_id": ["a", "a", "a", "b", "b", "c"],
            "t": [0.5, 1.0, 1.5, 0.5, 1.0, 0.5],
            "arousal_pred": [0.1, 0.3, 0.2, 0.5, 0.5, 0.0],
            "valence_pred": [0.0, 0.5, 1.0, 0.2, 0.4, 0.0],
            "arousal": [0.0, 0.4, 0.2, 0.5, 0.5, 0.1],  # b: a constant, predicted exactly
            "valence": [0.1, 0.4, 0.8, 0.3, 0.3, 0.2],  # b: a constant annotation
        }
    )
    metrics = regression_metrics(table)
    a = table[table.clip_id == "a"]
    arousal, valence = metrics["arousal"], metrics["valence"]
    # b's arousal: R² and CCC undefined; c has a single window: undefined too
    assert arousal["r2"]["n_songs"] == arousal["ccc"]["n_songs"] == 1
    assert arousal["r2"]["song_mean"] == pytest.approx(r2_by_hand(a.arousal_pred, a.arousal))
    assert arousal["ccc"]["song_mean"] == pytest.approx(lin_ccc(a.arousal_pred, a.arousal))
    assert arousal["ccc"]["song_std"] == pytest.approx(0.0)
    # b's valence: R² undefined (constant truth), CCC defined (the prediction varies)
    assert valence["r2"]["n_songs"] == 1 and valence["ccc"]["n_songs"] == 2
    only_c = regression_metrics(table[table.clip_id == "c"])
    for metric in ("pearson_r", "r2", "ccc"):
        assert only_c["arousal"][metric] == {
            "song_mean": None,
            "song_std": None,
            "pooled": None,
            "n_songs": 0,
        }
        assert only_c["average"][metric]["pooled"] is None


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
    # the annotations vary: R² is defined (negative), CCC is 0
    assert parsed["x"]["arousal"]["ccc"]["song_mean"] == pytest.approx(0.0)
    assert parsed["x"]["arousal"]["ccc"]["pooled"] == pytest.approx(0.0)
    assert parsed["x"]["arousal"]["r2"]["n_songs"] == 2
    assert parsed["x"]["arousal"]["r2"]["pooled"] < 0
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
    # balanced accuracy: the mean of the recalls 2/3, 1/2 and 0, below the accuracy 1/2
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_balanced_accuracy_on_unbalanced_classes():
    # 8 calm and 2 sad clips; always "calm" is 80 % accurate, but balanced only 50 %
    table = pd.DataFrame({"label": ["calm"] * 8 + ["sad"] * 2, "predicted": ["calm"] * 10})
    metrics = classification_metrics(table, ["calm", "sad"])
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["balanced_accuracy"] == pytest.approx((8 / 8 + 0 / 2) / 2)
    # one sad clip found, one calm clip lost: recalls 7/8 and 1/2
    table["predicted"] = ["calm"] * 7 + ["sad"] + ["sad", "calm"]
    metrics = classification_metrics(table, ["calm", "sad"])
    assert metrics["accuracy"] == pytest.approx(8 / 10)
    assert metrics["balanced_accuracy"] == pytest.approx((7 / 8 + 1 / 2) / 2)


def test_balanced_accuracy_leaves_out_classes_absent_from_the_truth(recwarn):
    table = pd.DataFrame({"label": ["calm", "calm", "sad"], "predicted": ["calm", "happy", "sad"]})
    metrics = classification_metrics(table, ["calm", "happy", "sad"])
    assert metrics["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert not [w for w in recwarn if "y_pred contains classes" in str(w.message)]


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
