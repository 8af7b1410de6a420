"""Training runs end to end on small fake tables: files, determinism, resuming, learning, data."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from merflow.devices import select_device
from merflow.errors import DatasetError
from merflow.io import read_json, read_table, write_table
from merflow.learn.data import ZScore, load_frames, load_windowed
from merflow.learn.evaluation import evaluate
from merflow.learn.recipes import TrainConfig
from merflow.learn.sequences import chunk_starts, make_sequences
from merflow.learn.tracking import HISTORY_COLUMNS
from merflow.learn.training import Progress, _advance, train

N_FEATURES = 6
FIRST_TARGET = 6  # like DEAM: the first windows of every clip carry no annotation
CLASSES = ("happy", "sad", "calm")


# --- fake tables ---------------------------------------------------------------------------------


def write_regression_tables(root: Path, n_clips: int = 16, n_windows: int = 30) -> Path:
    """Windows whose (z-scored) features encode arousal/valence through a fixed linear map.

    Features have large, unequal offsets and scales, so a model only learns after z-scoring.
    Split: the last 4 clips are 2 val + 2 test, the rest train.
    """
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(N_FEATURES, 2)) / np.sqrt(N_FEATURES)
    offsets, scales = rng.normal(5, 2, N_FEATURES), rng.uniform(0.5, 4, N_FEATURES)
    names = [f"f{j}" for j in range(N_FEATURES)]
    features, targets = [], []
    for c in range(n_clips):
        clip_id, z = f"c{c:02d}", rng.normal(size=(n_windows, N_FEATURES))
        t = 0.5 * (np.arange(n_windows) + 1)
        frame = pd.DataFrame((z * scales + offsets).astype(np.float32), columns=names)
        features.append(frame.assign(clip_id=clip_id, t=t)[["clip_id", "t", *names]])
        y = np.tanh(z @ weights).astype(np.float32)[FIRST_TARGET:]
        targets.append(
            pd.DataFrame(
                {"clip_id": clip_id, "t": t[FIRST_TARGET:], "arousal": y[:, 0], "valence": y[:, 1]}
            )
        )
    meta = {"feature": "compare_500ms", "columns": names, "window_s": 0.5}
    write_table(pd.concat(features, ignore_index=True), root / "features.parquet", meta)
    write_table(pd.concat(targets, ignore_index=True), root / "targets.parquet")
    ids = [f"c{c:02d}" for c in range(n_clips)]
    clips = pd.DataFrame({"clip_id": ids, "label": pd.array([None] * n_clips, "string")})
    write_table(clips, root / "clips.parquet", {"classes": None})
    parts = ["train"] * (n_clips - 4) + ["val"] * 2 + ["test"] * 2
    write_table(
        pd.DataFrame({"clip_id": ids, "group": ids, "split": parts}), root / "split.parquet"
    )
    return root


def write_classification_tables(
    root: Path, per_class: int = 10, n_mels: int = 8, n_frames: int = 64
) -> Path:
    """Log-mel matrices in which class k raises mel band 2k: separable classes."""
    rng = np.random.default_rng(1)
    ids, labels, matrices = [], [], []
    for k, name in enumerate(CLASSES):
        for i in range(per_class):
            x = rng.normal(-40, 10, size=(n_mels, n_frames)).astype(np.float32)
            x[2 * k] += 15
            ids.append(f"{name}_{i:02d}")
            labels.append(name)
            matrices.append(x)
    flat = pa.array(np.stack(matrices).reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "clip_id": ids,
            "n_valid_frames": pa.array([n_frames] * len(ids), pa.int32()),
            "logmel": pa.FixedSizeListArray.from_arrays(flat, n_mels * n_frames),
        }
    )
    write_table(
        table, root / "features.parquet", {"feature": "logmel", "shape": [n_mels, n_frames]}
    )
    clips = pd.DataFrame({"clip_id": ids, "label": labels})
    write_table(clips, root / "clips.parquet", {"classes": list(CLASSES)})
    parts = (["train"] * (per_class - 4) + ["val"] * 2 + ["test"] * 2) * len(CLASSES)
    write_table(
        pd.DataFrame({"clip_id": ids, "group": ids, "split": parts}), root / "split.parquet"
    )
    return root


@pytest.fixture(scope="module")
def regression_dir(tmp_path_factory) -> Path:
    return write_regression_tables(tmp_path_factory.mktemp("regression"))


@pytest.fixture(scope="module")
def classification_dir(tmp_path_factory) -> Path:
    return write_classification_tables(tmp_path_factory.mktemp("classification"))


def regression_config(root: Path, model: str = "malik_crnn", **settings) -> TrainConfig:
    values = {
        "features_path": str(root / "features.parquet"),
        "clips_path": str(root / "clips.parquet"),
        "split_path": str(root / "split.parquet"),
        "targets_path": str(root / "targets.parquet"),
        "seq_len": 6,
        "epochs": 4,
        "patience": 50,
        "batch_size": 8,
        "lr": 0.01,
        "use_gpu": False,
        "threads": 1,
    }
    return TrainConfig(model=model, **{**values, **settings})


def classification_config(root: Path, model: str = "velankar_crnn", **settings) -> TrainConfig:
    values = {
        "features_path": str(root / "features.parquet"),
        "clips_path": str(root / "clips.parquet"),
        "split_path": str(root / "split.parquet"),
        "epochs": 3,
        "patience": 50,
        "batch_size": 6,
        "use_gpu": False,
        "threads": 1,
    }
    return TrainConfig(model=model, **{**values, **settings})


def history(run_dir: Path) -> pd.DataFrame:
    """The history without its wall-clock column, which legitimately differs between runs."""
    return pd.read_csv(run_dir / "history.csv").drop(columns="seconds")


def best_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "best.pt", weights_only=True)["model"]


# --- data ----------------------------------------------------------------------------------------


def test_load_windowed_joins_on_time_and_reports_what_does_not_align(tmp_path):
    features = pd.DataFrame(
        {
            "clip_id": ["a"] * 4 + ["b"] * 2 + ["c"] * 2,
            "t": [0.5, 1.0, 1.5, 2.0, 0.5, 1.0, 0.5, 1.0],
            "x": np.arange(8, dtype=np.float32),
        }
    )
    targets = pd.DataFrame(
        {
            # a: annotated from 1.0 s (t written with float round-off); b: annotations run past
            # the audio; c: none at all
            "clip_id": ["a", "a", "a", "b", "b", "b"],
            "t": [1.0000000001, 1.5, 2.0, 0.5, 1.0, 1.5],
            "arousal": np.float32([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
            "valence": np.float32([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6]),
        }
    )
    write_table(features, tmp_path / "f.parquet", {"columns": ["x"]})
    write_table(targets, tmp_path / "t.parquet")
    data, problems = load_windowed(
        tmp_path / "f.parquet", ["a", "b", "c", "d"], tmp_path / "t.parquet"
    )

    assert data.clip_ids == ["a", "b"]
    np.testing.assert_array_equal(data.times[0], [1.0, 1.5, 2.0])
    np.testing.assert_array_equal(data.features[0][:, 0], [1, 2, 3])
    np.testing.assert_array_equal(data.targets[0][:, 0], np.float32([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(data.features[1][:, 0], [4, 5])
    by_clip = {p["clip_id"]: p for p in problems}
    assert set(by_clip) == {"b", "c", "d"}
    assert by_clip["b"]["kept"] and "1 of 3 target times" in by_clip["b"]["reason"]
    assert not by_clip["c"]["kept"] and "no rows in t.parquet" in by_clip["c"]["reason"]
    assert not by_clip["d"]["kept"] and "no rows in f.parquet" in by_clip["d"]["reason"]


def test_duplicated_windows_are_an_error_naming_the_file(tmp_path):
    features = pd.DataFrame({"clip_id": ["a", "a"], "t": [0.5, 0.5], "x": np.float32([1, 2])})
    write_table(features, tmp_path / "f.parquet")
    with pytest.raises(DatasetError, match=r"f\.parquet.*duplicated"):
        load_windowed(tmp_path / "f.parquet", ["a"])


def test_zscore_of_frames_uses_valid_frames_only():
    features = np.zeros((2, 2, 4), dtype=np.float32)
    features[0] = [[1, 3, 99, 99], [0, 0, 99, 99]]  # two valid frames, then padding
    features[1] = [[5, 7, 9, 11], [2, 2, 2, 2]]
    from merflow.learn.data import FrameClips

    clips = FrameClips(["a", "b"], features, np.array([2, 4]), np.array([0, 1]), ["x", "y"])
    zscore = ZScore.fit_frames(clips)
    valid = [[1, 3, 5, 7, 9, 11], [0, 0, 2, 2, 2, 2]]
    np.testing.assert_allclose(zscore.mean, np.mean(valid, axis=1), rtol=1e-6)
    np.testing.assert_allclose(zscore.std, np.std(valid, axis=1), rtol=1e-6)
    np.testing.assert_allclose(
        zscore.apply(features)[1, 0, 0], (5 - 6) / np.std(valid[0]), rtol=1e-6
    )


def test_make_sequences_cover_each_song_and_mask_the_padding():
    songs = [np.arange(n, dtype=np.float32)[:, None] for n in (10, 4)]
    x, y, mask = make_sequences(songs, [s.repeat(2, axis=1) for s in songs], seq_len=6)
    # song 1: chunks at 0 and 4 (end-aligned); song 2: one padded chunk
    assert x.shape == (3, 6, 1) and y.shape == (3, 6, 2)
    np.testing.assert_array_equal(x[1, :, 0], np.arange(4, 10))
    np.testing.assert_array_equal(mask[2], [True] * 4 + [False] * 2)
    assert chunk_starts(10, 6) == [0, 4] and chunk_starts(12, 6) == [0, 6]
    assert chunk_starts(10, 4, offset=3) == [3, 6]


def test_frames_come_with_label_indices_in_class_order(classification_dir):
    data, problems = load_frames(
        classification_dir / "features.parquet",
        classification_dir / "clips.parquet",
        ["sad_00", "calm_03", "happy_01"],
    )
    assert problems == []
    assert data.clip_ids == ["calm_03", "happy_01", "sad_00"]
    np.testing.assert_array_equal(data.labels, [2, 0, 1])
    assert data.features.shape == (3, 8, 64)
    assert data.features[0, 4].mean() > data.features[0, 0].mean() + 10  # calm raises band 4


# --- devices -------------------------------------------------------------------------------------


def test_select_device_uses_the_cpu_without_a_gpu_request_or_without_cuda(monkeypatch):
    assert select_device(0).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(1).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "fake")
    assert select_device(1).type == "cuda"
    assert select_device(0).type == "cpu"


# --- training runs -------------------------------------------------------------------------------


def test_a_run_writes_its_files_and_takes_zscores_from_training_clips(regression_dir, tmp_path):
    result = train(tmp_path / "run", regression_config(regression_dir, epochs=2))
    run = tmp_path / "run"
    for name in ("run.json", "norm.npz", "history.csv", "best.pt", "last.pt", "quarantine.parquet"):
        assert (run / name).is_file(), name
    rows = pd.read_csv(run / "history.csv")
    assert list(rows.columns) == list(HISTORY_COLUMNS) and rows["epoch"].tolist() == [1, 2]
    assert result["epochs_run"] == 2 and 1 <= result["best_epoch"] <= 2

    record = read_json(run / "run.json")
    assert record["config"]["seed"] == 0 and record["device"] == "cpu"
    assert record["split"]["id"] == "split" and len(record["split"]["sha256"]) == 64
    assert record["n_parameters"] > 0 and record["versions"]["torch"]
    assert record["resolved"]["model_options"]["dropout"] == 0.25  # the paper's, for ComParE

    # the statistics are those of the annotated windows of the training clips, nothing else
    features = read_table(regression_dir / "features.parquet")
    split = read_table(regression_dir / "split.parquet")
    train_ids = split.loc[split["split"] == "train", "clip_id"]
    annotated = features["t"] > FIRST_TARGET * 0.5
    names = [f"f{j}" for j in range(N_FEATURES)]
    expected = features.loc[features["clip_id"].isin(train_ids) & annotated, names]
    everything = features.loc[annotated, names]
    with np.load(run / "norm.npz") as norm:
        np.testing.assert_allclose(norm["mean"], expected.mean(), rtol=1e-5)
        np.testing.assert_allclose(norm["std"], expected.std(ddof=0), rtol=1e-5)
        assert not np.allclose(norm["mean"], everything.mean(), rtol=1e-3)
        assert norm["feature_names"].tolist() == names


def test_a_baseline_run_records_its_options_with_the_defaults(regression_dir, tmp_path):
    config = regression_config(regression_dir, model="ridge", model_options={"alpha": 2.0})
    train(tmp_path / "ridge", config)
    assert read_json(tmp_path / "ridge" / "run.json")["resolved"]["model_options"] == {"alpha": 2.0}
    train(tmp_path / "default", regression_config(regression_dir, model="ridge"))
    assert read_json(tmp_path / "default" / "run.json")["resolved"]["model_options"] == {
        "alpha": 1.0
    }


def test_the_same_seed_gives_the_same_run_and_another_seed_does_not(regression_dir, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train(tmp_path / name, regression_config(regression_dir, seed=seed, random_offset=True))
    pd.testing.assert_frame_equal(history(tmp_path / "a"), history(tmp_path / "b"))
    assert not history(tmp_path / "a").equals(history(tmp_path / "c"))
    first, second = best_weights(tmp_path / "a"), best_weights(tmp_path / "b")
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("interruption", ["shorter_run", "killed"])
def test_a_resumed_run_ends_like_an_uninterrupted_one(regression_dir, tmp_path, interruption):
    config = regression_config(regression_dir, epochs=4, random_offset=True)
    train(tmp_path / "whole", config)

    resumed = tmp_path / "resumed"
    if interruption == "shorter_run":
        train(resumed, regression_config(regression_dir, epochs=2, random_offset=True))
    else:

        def kill_after_second_epoch(epoch: int, row: dict) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train(resumed, config, on_epoch_end=kill_after_second_epoch)
        assert not (resumed / "run.json").exists()
    epochs_seen = []
    result = train(resumed, config, on_epoch_end=lambda epoch, row: epochs_seen.append(epoch))

    assert epochs_seen == [3, 4]
    pd.testing.assert_frame_equal(history(resumed), history(tmp_path / "whole"))
    whole, again = best_weights(tmp_path / "whole"), best_weights(resumed)
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    expected = read_json(tmp_path / "whole" / "run.json")["result"]
    clock = "epoch_seconds_total"
    assert {k: v for k, v in result.items() if k != clock} == {
        k: v for k, v in expected.items() if k != clock
    }


def test_a_checkpoint_of_other_settings_is_not_resumed(regression_dir, tmp_path, caplog):
    train(tmp_path / "run", regression_config(regression_dir, epochs=1, lr=0.01))
    with caplog.at_level(logging.WARNING):
        result = train(tmp_path / "run", regression_config(regression_dir, epochs=2, lr=0.02))
    assert "written before these changes: lr 0.01 -> 0.02; starting afresh" in caplog.text
    assert result["epochs_run"] == 2 and len(history(tmp_path / "run")) == 2


def test_a_checkpoint_of_another_network_is_not_resumed(regression_dir, tmp_path, caplog):
    """The network's resolved options belong to the resume key: a default that changed between
    two versions of a model must not resume (or fail to load) the old weights."""
    from merflow.models import options

    train(tmp_path / "run", regression_config(regression_dir, epochs=1))
    filters = options.MALIK["filters"]
    changed = {**options.MALIK, "filters": options.Option(filters.default + 1, filters.rule)}
    with caplog.at_level(logging.WARNING), pytest.MonkeyPatch.context() as patch:
        patch.setattr(options, "MALIK", changed)
        result = train(tmp_path / "run", regression_config(regression_dir, epochs=2))
    old = filters.default
    assert f"build.options.filters {old} -> {old + 1}; starting afresh" in caplog.text
    assert result["epochs_run"] == 2 and len(history(tmp_path / "run")) == 2


class CudaLikeScaler(torch.amp.GradScaler):
    """An enabled CUDA scaler's refusal of the empty state a CPU run's scaler saves."""

    def load_state_dict(self, state_dict):
        if not state_dict:
            raise RuntimeError("The source state dict is empty (a disabled GradScaler's)")
        super().load_state_dict(state_dict)


def test_a_run_begun_on_the_cpu_resumes_on_a_gpu(regression_dir, tmp_path, monkeypatch, caplog):
    train(tmp_path / "run", regression_config(regression_dir, epochs=1))
    monkeypatch.setattr(torch.amp, "GradScaler", CudaLikeScaler)
    with caplog.at_level(logging.INFO):
        result = train(tmp_path / "run", regression_config(regression_dir, epochs=2))
    assert "resuming" in caplog.text and result["epochs_run"] == 2


def test_a_best_checkpoint_newer_than_the_last_is_not_resumed(regression_dir, tmp_path, caplog):
    """Killed between writing best.pt and last.pt: best.pt holds an epoch the run's history
    lacks. Resuming would keep those weights if the replayed epoch did not win again."""
    train(tmp_path / "run", regression_config(regression_dir, epochs=2))
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    torch.save({**best, "epoch": 3}, tmp_path / "run" / "best.pt")
    with caplog.at_level(logging.WARNING):
        result = train(tmp_path / "run", regression_config(regression_dir, epochs=3))
    assert "best.pt holds epoch 3" in caplog.text and "starting afresh" in caplog.text
    assert result["epochs_run"] == 3 and len(history(tmp_path / "run")) == 3


def test_early_stopping_counts_epochs_without_a_better_validation_loss():
    losses = [0.5, 0.4, 0.45, 0.41, 0.39, 0.6, 0.6, 0.6, 0.1]
    for patience, expected in ((2, (2, 4, 0.4)), (3, (5, 8, 0.39))):
        progress = Progress()
        for epoch, val_loss in enumerate(losses, start=1):
            _advance(progress, {"epoch": epoch, "val_loss": val_loss}, patience=patience)
            if progress.stopped_early:
                break
        assert (progress.best_epoch, progress.epoch, progress.best_loss) == expected
    no_validation = Progress()
    for epoch in (1, 2, 3):
        _advance(no_validation, {"epoch": epoch, "val_loss": math.nan}, 1, validated=False)
    assert no_validation.best_epoch == 3 and not no_validation.stopped_early


def test_a_diverged_validation_epoch_is_never_the_best_nor_kept():
    progress = Progress()
    for epoch, val_loss in enumerate([0.5, math.nan, 0.7, 0.6], start=1):
        _advance(progress, {"epoch": epoch, "val_loss": val_loss}, patience=3, keep=2)
    assert (progress.best_epoch, progress.best_loss, progress.epochs_since_best) == (1, 0.5, 3)
    assert [epoch for _, epoch in progress.kept] == [1, 4]
    assert progress.stopped_early


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_a_split_without_validation_clips_trains_every_epoch_and_keeps_the_last(
    regression_dir, classification_dir, task, tmp_path
):
    # split.val_fraction: 0 is a valid setting; the run must not trip over the empty part
    root = regression_dir if task == "regression" else classification_dir
    split = read_table(root / "split.parquet")
    split.loc[split["split"] == "val", "split"] = "train"
    write_table(split, tmp_path / "no_val.parquet")
    make_config = regression_config if task == "regression" else classification_config
    config = make_config(root, epochs=3, patience=1, split_path=str(tmp_path / "no_val.parquet"))

    result = train(tmp_path / "run", config)
    rows = history(tmp_path / "run")
    assert result["epochs_run"] == 3 and result["best_epoch"] == 3
    assert rows["val_loss"].isna().all() and rows["train_loss"].notna().all()
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    best = best_weights(tmp_path / "run")
    assert all(torch.equal(best[k], last[k]) for k in best)


def test_malik_crnn_learns_a_linear_code_far_better_than_the_mean(regression_dir, tmp_path):
    rmse = {}
    for model, epochs in (("mean", 1), ("malik_crnn", 20)):
        train(tmp_path / model, regression_config(regression_dir, model=model, epochs=epochs))
        rmse[model] = evaluate(tmp_path / model)["average"]["rmse"]["pooled"]
    assert rmse["mean"] > 0.4
    assert rmse["malik_crnn"] < 0.4 * rmse["mean"]


def test_velankar_crnn_separates_separable_classes(classification_dir, tmp_path):
    train(tmp_path / "run", classification_config(classification_dir, epochs=8, lr=0.003))
    metrics = evaluate(tmp_path / "run")
    assert metrics["accuracy"] >= 5 / 6  # chance: 1/3
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 6


def test_evaluation_predicts_every_annotated_test_window_once(regression_dir, tmp_path):
    train(tmp_path / "run", regression_config(regression_dir, epochs=1, seq_len=4))
    metrics = evaluate(tmp_path / "run")
    predictions = read_table(tmp_path / "run" / "predictions.parquet")
    targets = read_table(regression_dir / "targets.parquet")
    expected = targets[targets["clip_id"].isin(["c14", "c15"])]
    assert len(predictions) == len(expected) == metrics["n_windows"]  # 24 = 6 chunks of 4
    merged = predictions.merge(expected, on=["clip_id", "t"], suffixes=("", "_true"))
    assert len(merged) == len(expected)
    np.testing.assert_array_equal(merged["arousal"], merged["arousal_true"])
    assert predictions[["arousal_pred", "valence_pred"]].notna().all().all()


def test_problems_of_the_split_land_in_the_run_quarantine(regression_dir, tmp_path):
    split = read_table(regression_dir / "split.parquet")
    extra = pd.DataFrame({"clip_id": ["ghost"], "group": ["ghost"], "split": ["train"]})
    write_table(pd.concat([split, extra]), tmp_path / "split.parquet")
    config = regression_config(regression_dir, epochs=1, split_path=str(tmp_path / "split.parquet"))
    train(tmp_path / "run", config)
    quarantine = read_table(tmp_path / "run" / "quarantine.parquet")
    assert quarantine["clip_id"].tolist() == ["ghost"]
    assert quarantine["stage"].tolist() == ["train"]
    assert "no rows in features.parquet" in quarantine["reason"].iloc[0]


def test_a_regression_run_without_targets_is_refused(regression_dir, tmp_path):
    from merflow.errors import ConfigError

    with pytest.raises(ConfigError, match="targets_path"):
        train(tmp_path / "run", regression_config(regression_dir, targets_path=None))


@pytest.mark.parametrize("model", ["malik_crnn_nb", "velankar_parallel"])
def test_every_network_trains_one_epoch(regression_dir, tmp_path_factory, model, tmp_path):
    if model.startswith("velankar"):
        root = write_classification_tables(
            tmp_path_factory.mktemp("wide"), per_class=5, n_frames=160
        )
        config = classification_config(root, model=model, epochs=1)
    else:
        config = regression_config(regression_dir, model=model, epochs=1)
    result = train(tmp_path / "run", config)
    assert result["epochs_run"] == 1 and result["best_val_loss"] is not None
