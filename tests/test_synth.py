"""The synthetic demo dataset: reproducible, on the 500 ms grid, labelled by its rule, learnable."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from merflow.datasets import synth
from merflow.errors import ConfigError, DatasetError

WINDOW_S = 0.5


def _generate(path, **params):
    synth.generate(path, **params)
    clips = pd.read_csv(path / "clips.csv")
    audio = {r.clip_id: sf.read(path / r.path, dtype="float32")[0] for r in clips.itertuples()}
    return clips, pd.read_csv(path / "targets.csv"), audio


# --- reproducibility and files ---------------------------------------------------------------


def test_same_seed_gives_identical_audio_labels_and_targets(tmp_path):
    params = {"n_clips": 3, "duration_s": 3.0, "seed": 7}
    clips_a, targets_a, audio_a = _generate(tmp_path / "a", **params)
    clips_b, targets_b, audio_b = _generate(tmp_path / "b", **params)
    pd.testing.assert_frame_equal(clips_a, clips_b)
    pd.testing.assert_frame_equal(targets_a, targets_b)
    for clip_id, audio in audio_a.items():
        np.testing.assert_array_equal(audio, audio_b[clip_id])

    # a clip does not depend on how many clips are made
    _, _, audio_fewer = _generate(tmp_path / "fewer", **{**params, "n_clips": 2})
    np.testing.assert_array_equal(audio_fewer["synth_0001"], audio_a["synth_0001"])

    _, _, audio_other = _generate(tmp_path / "other", **{**params, "seed": 8})
    for clip_id, audio in audio_a.items():
        assert not np.allclose(audio, audio_other[clip_id], atol=1e-3)


def test_generate_writes_the_documented_files(tmp_path):
    synth.generate(tmp_path, n_clips=4, duration_s=2.2, sample_rate=16000, n_classes=4, seed=1)
    assert {p.name for p in tmp_path.iterdir()} == {
        "audio",
        "clips.csv",
        "targets.csv",
        "synth.json",
    }
    clips = pd.read_csv(tmp_path / "clips.csv")
    assert list(clips.columns) == ["clip_id", "path", "label", "group"]
    assert list(clips["clip_id"]) == ["synth_0000", "synth_0001", "synth_0002", "synth_0003"]
    assert set(clips["label"]) <= set(synth.CLASS_NAMES[4])
    for row in clips.itertuples():
        info = sf.info(str(tmp_path / row.path))
        assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1)
        assert info.frames == round(2.2 * 16000)
    targets = pd.read_csv(tmp_path / "targets.csv")
    assert list(targets.columns) == ["clip_id", "t", "arousal", "valence"]
    assert list(targets.groupby("clip_id")["t"].max()) == [2.0] * 4  # the partial window dropped
    assert not list(tmp_path.rglob("*.part"))


def test_bad_parameters_are_named(tmp_path):
    with pytest.raises(ConfigError, match="synth: 'n_classes': 5 is greater than the maximum of 4"):
        synth.generate(tmp_path, n_classes=5)
    with pytest.raises(ConfigError, match=r"'duration_s': 0.1 is less than the minimum of 0.5"):
        synth.generate(tmp_path, n_clips=2, duration_s=0.1)
    with pytest.raises(ConfigError, match=r"'n_clips': 0 is less than the minimum of 1"):
        synth.generate(tmp_path, n_clips=0)
    assert not (tmp_path / "clips.csv").exists()


def test_read_returns_absolute_paths_groups_labels_and_targets(tmp_path):
    synth.generate(tmp_path, n_clips=4, duration_s=2.0, clips_per_song=2, n_classes=3)
    index = synth.read({"root": str(tmp_path), "n_clips": 4, "n_classes": 3})
    assert index.classes == ["energetic", "sad", "calm"]
    assert list(index.clips["group"]) == ["song_0000", "song_0000", "song_0001", "song_0001"]
    assert all(p.startswith(str(tmp_path)) and sf.info(p).frames == 44100 for p in index.clips.path)
    assert index.quarantine == []
    assert len(index.targets) == 4 * 4 and set(index.targets.clip_id) == set(index.clips.clip_id)


def test_read_without_data_tells_how_to_make_it(tmp_path):
    with pytest.raises(DatasetError, match="merflow synth"):
        synth.read({"root": str(tmp_path / "nothing")})


def test_read_refuses_data_made_with_other_parameters(tmp_path):
    synth.generate(tmp_path, n_clips=2, duration_s=1.0)
    with pytest.raises(DatasetError, match=r"n_clips: data 2, config 3.*merflow synth"):
        synth.read({"root": str(tmp_path), "n_clips": 3, "duration_s": 1.0})


def test_missing_audio_is_quarantined_not_dropped(tmp_path):
    synth.generate(tmp_path, n_clips=3, duration_s=1.0)
    (tmp_path / "audio" / "synth_0001.flac").unlink()
    index = synth.read({"root": str(tmp_path)})
    assert list(index.clips["clip_id"]) == ["synth_0000", "synth_0002"]
    assert "synth_0001" not in set(index.targets["clip_id"])
    [entry] = index.quarantine
    assert entry["clip_id"] == "synth_0001" and entry["stage"] == "index"
    assert "merflow synth" in entry["reason"]


# --- labels and targets ----------------------------------------------------------------------


def _documented_label(arousal: float, valence: float, n_classes: int) -> str:
    """The rule of the module docstring, written out case by case (independent of its code)."""
    if n_classes == 2:
        return "positive" if valence > 0 else "negative"
    if n_classes == 4:
        return {(True, True): "Q1", (False, True): "Q2", (False, False): "Q3"}.get(
            (valence > 0, arousal > 0), "Q4"
        )
    if arousal > abs(valence) * math.tan(math.radians(30)):
        return "energetic"
    return "sad" if valence < 0 else "calm"


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_label_rule_matches_the_documentation(n_classes):
    points = np.random.default_rng(n_classes).uniform(-1, 1, size=(500, 2))
    for arousal, valence in points:
        expected = _documented_label(arousal, valence, n_classes)
        assert synth.label_for(arousal, valence, n_classes) == expected


def _labels_from_curves(n_clips: int, n_classes: int, duration_s: float = 20.0) -> list[str]:
    """Labels of the first clips, from their curves alone (as synthesize_clip computes them)."""
    labels = []
    for index in range(n_clips):
        song = synth.draw_song(index, seed=0, n_classes=n_classes)
        curves = synth.draw_curves(np.random.default_rng([0, 1, index]), song, duration_s)
        targets = synth.window_targets(curves, duration_s)
        labels.append(synth.label_for(targets.arousal.mean(), targets.valence.mean(), n_classes))
    return labels


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_classes_are_balanced_over_60_clips(n_classes):
    counts = pd.Series(_labels_from_curves(60, n_classes)).value_counts()
    assert set(counts.index) == set(synth.CLASS_NAMES[n_classes])
    expected = 60 / n_classes
    assert counts.min() >= 0.7 * expected and counts.max() <= 1.3 * expected, counts.to_dict()


def test_clips_of_one_song_share_its_emotion():
    """What makes a clip-level split of songs leak: siblings are much alike."""
    means = []
    for index in range(120):
        song = synth.draw_song(index // 2, seed=0, n_classes=3)
        curves = synth.draw_curves(np.random.default_rng([0, 1, index]), song, 20.0)
        means.append([curves.arousal.mean(), curves.valence.mean()])
    first, second = np.array(means[0::2]), np.array(means[1::2])
    for dim in (0, 1):
        assert np.corrcoef(first[:, dim], second[:, dim])[0, 1] > 0.6


# --- the 40-clip demo: targets, labels and learnability --------------------------------------

N_CLIPS, DURATION_S = 40, 20.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth.generate(root, n_clips=N_CLIPS, duration_s=DURATION_S, n_classes=3, seed=0)
    yield synth.read({"root": str(root)})
    shutil.rmtree(root, ignore_errors=True)


def test_targets_are_smooth_curves_on_the_window_grid(demo):
    n_windows = int(DURATION_S / WINDOW_S)
    steps, spreads = [], []
    for _, clip in demo.targets.groupby("clip_id"):
        np.testing.assert_allclose(clip["t"], WINDOW_S * np.arange(1, n_windows + 1))
        values = clip[["arousal", "valence"]].to_numpy()
        assert values.min() >= -1.0 and values.max() <= 1.0
        assert np.all(values.max(axis=0) - values.min(axis=0) > 0.04)  # it moves within the clip
        steps.append(np.abs(np.diff(values, axis=0)))
        spreads.append(values.std(axis=0))
    steps = np.concatenate(steps)
    assert steps.max() < 0.25
    # smooth: a step is a fraction of the within-clip spread (white noise would step ~1.1 spreads)
    assert (steps.mean(axis=0) < 0.5 * np.mean(spreads, axis=0)).all()
    assert (demo.targets[["arousal", "valence"]].std() > 0.3).all()  # and clips differ


def test_labels_follow_the_rule_from_the_mean_curve(demo):
    means = demo.targets.groupby("clip_id")[["arousal", "valence"]].mean()
    for row in demo.clips.itertuples():
        arousal, valence = means.loc[row.clip_id]
        assert row.label == _documented_label(arousal, valence, 3)
    assert list(demo.clips["label"]) == _labels_from_curves(N_CLIPS, 3, DURATION_S)


def _window_logmel(path: str, n_windows: int) -> np.ndarray:
    """Mean log-mel (64 bands, n_fft 2048, hop 512) per 500 ms window, by frame centre."""
    import librosa

    audio, sr = sf.read(path, dtype="float32")
    mel = librosa.feature.melspectrogram(y=audio, sr=sr, n_fft=2048, hop_length=512, n_mels=64)
    logmel = librosa.power_to_db(mel)
    centres = np.arange(logmel.shape[1]) * 512 / sr  # librosa centres frame k on sample k·hop
    window = np.floor(centres / WINDOW_S).astype(int)
    return np.stack([logmel[:, window == k].mean(axis=1) for k in range(n_windows)])


@pytest.fixture(scope="module")
def features(demo):
    n_windows = int(DURATION_S / WINDOW_S)
    windows = [_window_logmel(path, n_windows) for path in demo.clips["path"]]
    targets = demo.targets.set_index("clip_id")
    y = np.concatenate(
        [targets.loc[c, ["arousal", "valence"]].to_numpy() for c in demo.clips.clip_id]
    )
    song = np.repeat(demo.clips["group"].to_numpy(), n_windows)
    return np.concatenate(windows), y, song, np.stack([w.mean(axis=0) for w in windows])


def test_ridge_on_window_logmel_learns_arousal_and_valence_but_not_perfectly(features, demo):
    """Song-level 3-fold CV: each window is predicted by a model that never heard its song."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, song, _ = features
    predicted, mean_predictor = np.zeros_like(y), np.zeros_like(y)
    for train, test in GroupKFold(n_splits=3).split(x, y, song):
        model = make_pipeline(StandardScaler(), Ridge(alpha=10.0)).fit(x[train], y[train])
        predicted[test] = model.predict(x[test])
        mean_predictor[test] = y[train].mean(axis=0)
    rmse = np.sqrt(((predicted - y) ** 2).mean(axis=0))
    baseline = np.sqrt(((mean_predictor - y) ** 2).mean(axis=0))
    r2 = 1.0 - ((predicted - y) ** 2).mean(axis=0) / y.var(axis=0)
    assert rmse[0] <= 0.8 * baseline[0], f"arousal RMSE {rmse[0]:.3f} vs mean {baseline[0]:.3f}"
    assert rmse[1] <= 0.9 * baseline[1], f"valence RMSE {rmse[1]:.3f} vs mean {baseline[1]:.3f}"
    assert (r2 < 0.95).all(), f"R² {r2}: the task should not be trivial"


def test_logistic_regression_on_clip_means_beats_the_majority_class(features, demo):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    *_, clip_means = features
    labels, songs = demo.clips["label"].to_numpy(), demo.clips["group"].to_numpy()
    predicted, majority = labels.copy(), labels.copy()
    for train, test in GroupKFold(n_splits=3).split(clip_means, labels, songs):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
        predicted[test] = model.fit(clip_means[train], labels[train]).predict(clip_means[test])
        majority[test] = pd.Series(labels[train]).mode()[0]
    accuracy, majority_accuracy = (predicted == labels).mean(), (majority == labels).mean()
    assert accuracy >= max(majority_accuracy, 1 / 3) + 0.2, (accuracy, majority_accuracy)
