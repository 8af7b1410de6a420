"""Training recipes: resolution of settings, augmentation, crops, smoothing, resume, learning."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_training import (
    best_weights,
    classification_config,
    history,
    regression_config,
    write_classification_tables,
    write_regression_tables,
)
from torch import nn

from merflow import config, models
from merflow.errors import ConfigError
from merflow.features.logmel import fit_frames
from merflow.io import read_json, read_table, write_table
from merflow.learn import recipes
from merflow.learn.data import FrameClips, WindowedClips
from merflow.learn.evaluation import evaluate
from merflow.learn.inference import NetworkPredictor
from merflow.learn.recipe_pieces import (
    apply_gain,
    crop_start,
    eval_crop_starts,
    freq_mask,
    make_optimizer,
    moving_average,
    scheduled_lr,
    select_rule,
    time_mask,
)
from merflow.learn.recipes import TrainConfig
from merflow.learn.training import Progress, _advance, train
from merflow.models.network import CheckpointEnsemble

FRAMES = 96
CROP = 48


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    return write_classification_tables(tmp_path_factory.mktemp("frames"), n_frames=FRAMES)


@pytest.fixture(scope="module")
def windows_dir(tmp_path_factory):
    """Features that code the targets window by window, with curves as smooth as annotations
    (the features of test_training's tables are drawn afresh every window)."""
    root = write_regression_tables(tmp_path_factory.mktemp("windows"))
    features, targets = read_table(root / "features.parquet"), read_table(root / "targets.parquet")
    names = [c for c in features.columns if c not in ("clip_id", "t")]
    values = features[names].to_numpy(np.float64, copy=True)
    for rows in features.groupby("clip_id").indices.values():
        values[rows] = moving_average(values[rows], 7)
    weights = np.random.default_rng(6).normal(size=(len(names), 2))
    codes = np.tanh((values - values.mean(0)) / values.std(0) @ weights / np.sqrt(len(names)))
    features[names] = values.astype(np.float32)
    coded = features[["clip_id", "t"]].assign(arousal=codes[:, 0], valence=codes[:, 1])
    targets = targets[["clip_id", "t"]].merge(coded, on=["clip_id", "t"])
    meta = {"feature": "compare_500ms", "columns": names, "window_s": 0.5}
    write_table(features, root / "features.parquet", meta)
    write_table(
        targets.astype({"arousal": np.float32, "valence": np.float32}), root / "targets.parquet"
    )
    return root


def bare_config(**settings) -> TrainConfig:
    """A TrainConfig with placeholder paths: for settings that need no data."""
    return TrainConfig(
        model="velankar_crnn", features_path="f", clips_path="c", split_path="s", **settings
    )


def merflow_frames(root, **settings) -> TrainConfig:
    values = recipes.resolve("merflow", "classification", {"input_frames": CROP})
    values |= {"eval_crop_hop": 16, "time_mask_frames": 4, "freq_mask_bands": 2, "batch_size": 6}
    return classification_config(root, **{**values, **settings})


def experiment_config(recipe: str | None, train: dict | None = None) -> dict:
    exp = {"dataset": "synth", "features": ["logmel"], "models": ["velankar_crnn"], "seeds": [0]}
    if recipe:
        exp["recipe"] = recipe
    if train:
        exp["train"] = train
    return {"experiments": {"e": exp}}


# --- resolution ----------------------------------------------------------------------------------


def test_the_paper_recipe_is_the_training_merflow_had_before_recipes():
    settings = config.train_settings(experiment_config("paper"), "e")
    assert settings == {
        "recipe": "paper",
        "epochs": 50,
        "patience": 10,
        "batch_size": 32,
        "lr": 1e-3,
        "input_frames": 640,  # the stored width of the paper's table: the whole matrix
    }
    resolved = bare_config()
    for key in ("optimizer", "lr_schedule", "select_by", "train_crop", "eval_crop_hop"):
        assert getattr(TrainConfig.from_dict({**resolved.to_dict(), **settings}), key) == getattr(
            resolved, key
        )
    assert (resolved.optimizer, resolved.lr_schedule, resolved.weight_decay) == (
        "adam",
        "constant",
        0,
    )
    assert (resolved.train_crop, resolved.eval_crop_hop, resolved.time_masks) == ("center", None, 0)


def test_merflow_is_the_default_recipe_and_an_experiment_override_wins():
    default = config.train_settings(experiment_config(None), "e")
    assert default == recipes.MERFLOW["classification"]
    overridden = config.train_settings(
        experiment_config("merflow", {"epochs": 7, "gain_db": 3.0}), "e"
    )
    assert (overridden["epochs"], overridden["gain_db"]) == (7, 3.0)
    assert overridden["train_crop"] == "random" and overridden["recipe"] == "merflow"
    regression = {"models": ["malik_crnn"], "features": ["logmel_500ms"], "seq_len": [10]}
    exp = experiment_config("merflow")
    exp["experiments"]["e"] |= regression
    assert config.train_settings(exp, "e")["smooth_windows"] == 5


def test_every_setting_of_every_recipe_can_be_overridden_in_an_experiment():
    schema = config.load_schema()
    experiment = schema["properties"]["experiments"]["additionalProperties"]
    allowed = set(experiment["properties"]["train"]["properties"])
    for recipe in recipes.RECIPES:
        for task in recipes.TASKS:
            assert set(recipes.recipe_settings(recipe, task)) - {"recipe"} <= allowed


@pytest.mark.parametrize(
    ("name", "value"),
    [("train_crop", "middle"), ("select_by", "f1"), ("score_min_val_per_class", 0)],
)
def test_a_bad_recipe_setting_names_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        TrainConfig.from_dict({**bare_config().to_dict(), name: value})


@pytest.mark.parametrize(
    ("name", "kind", "extra"),
    [
        ("adam", torch.optim.Adam, {}),
        ("adamw", torch.optim.AdamW, {}),
    ],
)
def test_each_optimizer_gets_the_rate_and_decay_of_the_config(name, kind, extra):
    cfg = bare_config(optimizer=name, lr=0.05, weight_decay=1e-4)
    optimizer = make_optimizer(nn.Linear(3, 2), cfg)
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 1e-4
    assert {k: group[k] for k in extra} == extra
    with pytest.raises(ConfigError, match="optimizer.*'adam', 'adamw'"):
        TrainConfig.from_dict({**cfg.to_dict(), "optimizer": "sgd"})


def _cosine_config(**settings) -> TrainConfig:
    """10 epochs at a peak rate of 1, 2 of them warm-up."""
    return bare_config(
        lr=1.0,
        epochs=10,
        lr_schedule="cosine",
        warmup_epochs=2,
        **settings,
    )


def test_the_cosine_schedule_warms_up_then_decays_to_zero():
    cfg = _cosine_config()
    rates = [scheduled_lr(cfg, e, s, 4) for e in range(1, 11) for s in range(4)]
    assert rates[:8] == sorted(rates[:8]) and rates[7] == pytest.approx(1.0)
    assert rates[8:] == sorted(rates[8:], reverse=True) and rates[-1] < 0.01


# --- augmentation and crops ----------------------------------------------------------------------


def test_masks_zero_whole_bands_and_frames_and_leave_the_rest():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 16, 50)).astype(np.float32) + 5.0  # nothing is 0 before
    freq, time = x.copy(), x.copy()
    freq_mask(freq, np.random.default_rng(1), n_masks=2, max_width=4)
    time_mask(time, np.random.default_rng(1), n_masks=2, max_width=6)
    zero_bands = (freq == 0).all(axis=2)  # (clip, band) wholly masked
    assert zero_bands.any() and zero_bands.sum(1).max() <= 8
    assert np.array_equal(freq[~zero_bands], x[~zero_bands])
    zero_frames = (time == 0).all(axis=1)
    assert zero_frames.any() and zero_frames.sum(1).max() <= 12
    assert np.array_equal(time.transpose(0, 2, 1)[~zero_frames], x.transpose(0, 2, 1)[~zero_frames])


def test_gain_shifts_the_decibels_by_the_gain():
    rng = np.random.default_rng(2)
    db = rng.normal(-40, 10, size=(3, 8, 12))
    mean, std = db.mean((0, 2)), db.std((0, 2))
    z = (db - mean[:, None]) / std[:, None]
    gains = np.array([-6.0, 0.0, 3.5])
    shifted = apply_gain(z, gains, std) * std[:, None] + mean[:, None]
    np.testing.assert_allclose(
        shifted - db, np.broadcast_to(gains[:, None, None], db.shape), atol=1e-4
    )


def test_random_crops_stay_within_the_valid_frames_and_reach_both_ends():
    rng = np.random.default_rng(3)
    starts = [crop_start(100, 160, 40, rng) for _ in range(500)]
    assert min(starts) == 0 and max(starts) == 60  # 100 valid frames, crops of 40
    assert crop_start(30, 160, 40, rng) == 0  # shorter than a crop: from the start, padded


def test_the_centre_crop_of_a_long_table_is_the_papers_matrix():
    matrix = np.arange(8 * 150, dtype=np.float32).reshape(8, 150)
    for n_valid in (150, 101, 40):
        stored = fit_frames(matrix[:, :n_valid], 150, "center", "constant")
        start = crop_start(n_valid, 150, 64)
        paper = fit_frames(matrix[:, :n_valid], 64, "center", "constant")
        assert np.array_equal(stored[:, start : start + 64], paper)


class MeanLogits(nn.Module):
    """Logits (mean of the crop, 0): the class probabilities depend on which frames are seen."""

    def forward(self, x):
        mean = x.mean(dim=(1, 2))
        return torch.stack([mean, torch.zeros_like(mean)], dim=1)


def test_prediction_averages_the_probabilities_of_every_crop():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(3, 4, 100)).astype(np.float32)
    n_valid = np.array([100, 70, 20])
    predictor = NetworkPredictor(MeanLogits(), torch.device("cpu"), input_frames=40, crop_hop=20)
    got = predictor.predict_proba(features, n_valid)
    for clip, valid in enumerate(n_valid):
        starts = eval_crop_starts(valid, 100, 40, 20)
        assert starts == ([0, 20, 40, 60] if valid == 100 else [0, 20, 30] if valid == 70 else [0])
        means = [features[clip, :, s : s + 40].mean() for s in starts]
        expected = np.mean([[np.exp(m) / (np.exp(m) + 1), 1 / (np.exp(m) + 1)] for m in means], 0)
        np.testing.assert_allclose(got[clip], expected, rtol=1e-5)


def test_smoothing_is_a_centred_moving_average_cut_at_the_ends():
    values = np.random.default_rng(5).normal(size=(12, 2)).astype(np.float32)
    for width in (1, 3, 4, 5):
        before = (width - 1) // 2
        expected = np.array(
            [values[max(0, i - before) : i - before + width].mean(0) for i in range(12)]
        )
        np.testing.assert_allclose(moving_average(values, width), expected, rtol=1e-5)

    class Echo(nn.Module):
        def forward(self, x):
            return x[..., :2]

    predictor = NetworkPredictor(Echo(), torch.device("cpu"), seq_len=5, smooth_windows=3)
    np.testing.assert_allclose(
        predictor.predict_windows([values])[0], moving_average(values, 3), rtol=1e-6
    )


# --- checkpoint ensembles ------------------------------------------------------------------------


def test_a_checkpoint_ensemble_outputs_the_mean_of_its_members():
    torch.manual_seed(0)
    frames, windows = torch.randn(3, 8, 64), torch.randn(2, 5, 6)
    classifiers = [
        models.build_model("velankar_crnn", n_features=8, n_outputs=3, n_frames=64)
        for _ in range(2)
    ]
    ensemble = CheckpointEnsemble(classifiers, "classification").eval()
    expected = torch.stack([torch.softmax(m(frames), 1) for m in classifiers]).mean(0)
    torch.testing.assert_close(torch.softmax(ensemble(frames), 1), expected)

    regressors = [models.build_model("malik_crnn", n_features=6, n_outputs=2) for _ in range(3)]
    ensemble = CheckpointEnsemble(regressors, "regression").eval()
    expected = torch.stack([m(windows) for m in regressors]).mean(0)
    torch.testing.assert_close(ensemble(windows), expected)


def test_the_kept_epochs_are_the_best_on_validation_and_ties_go_to_the_earlier():
    progress = Progress()
    for epoch, value in enumerate([0.5, 0.3, 0.4, 0.3, 0.6, 0.2], start=1):
        _advance(progress, {"epoch": epoch, "val_loss": value}, patience=50, keep=3)
    assert [epoch for _, epoch in progress.kept] == [6, 2, 4]
    assert progress.best_epoch == 6

    no_validation = Progress()
    for epoch in range(1, 6):
        row = {"epoch": epoch, "val_loss": math.nan}
        _advance(no_validation, row, patience=50, keep=3, validated=False)
    assert [epoch for _, epoch in no_validation.kept] == [5, 4, 3]


def test_a_checkpoint_ensemble_holds_the_weights_of_the_best_epochs(frames_dir, tmp_path):
    settings = {"epochs": 6, "select_by": "loss", "lr_schedule": "constant", "lr": 0.003}
    result = train(tmp_path / "run", merflow_frames(frames_dir, checkpoint_ensemble=3, **settings))

    val_loss = history(tmp_path / "run")["val_loss"].to_numpy()
    expected = [int(i) + 1 for i in np.argsort(val_loss, kind="stable")[:3]]
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert result["ensemble_epochs"] == best["epochs"] == expected
    assert best["build"]["members"] == 3 and best["epoch"] == expected[0]
    for member, epoch in enumerate(expected):
        # at a constant learning rate a shorter run of the same seed ends with that epoch's weights
        shorter = merflow_frames(frames_dir, checkpoint_ensemble=1, **{**settings, "epochs": epoch})
        train(tmp_path / f"until{epoch}", shorter)
        last = torch.load(tmp_path / f"until{epoch}" / "last.pt", weights_only=True)["model"]
        assert all(torch.equal(best["model"][f"members.{member}.{k}"], v) for k, v in last.items())


def test_a_checkpoint_ensemble_changes_prediction_not_training(frames_dir, tmp_path):
    """The same run with and without the ensemble trains the same epochs, and the ensemble's
    first member is the best epoch's network."""
    settings = {"epochs": 5, "lr": 0.003}
    train(tmp_path / "ce3", merflow_frames(frames_dir, checkpoint_ensemble=3, **settings))
    train(tmp_path / "ce1", merflow_frames(frames_dir, checkpoint_ensemble=1, **settings))
    pd.testing.assert_frame_equal(history(tmp_path / "ce3"), history(tmp_path / "ce1"))
    single, ensemble = best_weights(tmp_path / "ce1"), best_weights(tmp_path / "ce3")
    assert all(torch.equal(single[k], ensemble[f"members.0.{k}"]) for k in single)
    assert "members.2.classifier.weight" in ensemble


def val_clips(per_class: list[int]) -> FrameClips:
    labels = np.repeat(np.arange(len(per_class)), per_class)
    n = len(labels)
    return FrameClips(
        [f"c{i}" for i in range(n)],
        np.zeros((n, 2, 4), np.float32),
        np.full(n, 4),
        labels,
        [f"k{k}" for k in range(len(per_class))],
    )


def test_auto_selection_takes_macro_f1_only_with_enough_validation_clips_in_every_class():
    auto = bare_config(select_by="auto")
    assert select_rule(auto, val_clips([5, 6, 5])) == "score"
    assert select_rule(auto, val_clips([5, 4, 9])) == "loss"  # one class short is enough
    assert select_rule(auto, val_clips([2, 2, 0])) == "loss"
    auto.score_min_val_per_class = 2
    assert select_rule(auto, val_clips([2, 2, 3])) == "score"
    windows = WindowedClips(["a"], [np.zeros(3)], [np.zeros((3, 2))], [np.zeros((3, 2))], ["x"])
    assert select_rule(auto, windows) == "score"  # regression: the RMSE is the loss too
    for forced in ("loss", "score"):
        auto.select_by = forced
        assert select_rule(auto, val_clips([1, 1, 1])) == forced
        assert select_rule(auto, val_clips([9, 9, 9])) == forced


def test_the_merflow_recipe_selects_on_the_loss_with_two_validation_clips_per_class(
    frames_dir, tmp_path
):
    assert recipes.MERFLOW["classification"]["select_by"] == "auto"
    settings = {"epochs": 4, "checkpoint_ensemble": 1}
    result = train(tmp_path / "few", merflow_frames(frames_dir, **settings))
    val_loss = history(tmp_path / "few")["val_loss"].to_numpy()
    assert result["selected_by"] == "loss"
    assert result["best_epoch"] == int(np.argmin(val_loss)) + 1
    assert read_json(tmp_path / "few" / "run.json")["result"]["selected_by"] == "loss"

    enough = merflow_frames(frames_dir, score_min_val_per_class=2, **settings)
    assert train(tmp_path / "enough", enough)["selected_by"] == "score"


# --- training ------------------------------------------------------------------------------------


def test_a_merflow_run_resumes_to_the_numbers_of_an_uninterrupted_one(frames_dir, tmp_path):
    cfg = merflow_frames(frames_dir, epochs=3)
    train(tmp_path / "whole", cfg)

    def kill_after_first_epoch(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", cfg, on_epoch_end=kill_after_first_epoch)
    train(tmp_path / "resumed", cfg)
    pd.testing.assert_frame_equal(history(tmp_path / "resumed"), history(tmp_path / "whole"))
    whole, again = best_weights(tmp_path / "whole"), best_weights(tmp_path / "resumed")
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    assert (
        "members.2.classifier.weight" in again
    )  # the recipe's checkpoint ensemble of all 3 epochs
    train(tmp_path / "again", cfg)  # and the same seed trains the same run
    pd.testing.assert_frame_equal(history(tmp_path / "again"), history(tmp_path / "whole"))


def test_the_merflow_recipe_learns_classes_and_curves_better_than_the_baselines(
    frames_dir, windows_dir, tmp_path
):
    train(tmp_path / "crnn", merflow_frames(frames_dir, epochs=8, lr=0.003))
    train(tmp_path / "majority", classification_config(frames_dir, model="majority"))
    crnn, majority = evaluate(tmp_path / "crnn"), evaluate(tmp_path / "majority")
    assert crnn["accuracy"] >= 5 / 6 > majority["accuracy"]

    settings = recipes.resolve("merflow", "regression", {"epochs": 25, "lr": 0.01})
    train(tmp_path / "malik", regression_config(windows_dir, **{**settings, "batch_size": 8}))
    train(tmp_path / "mean", regression_config(windows_dir, model="mean"))
    rmse = {
        name: evaluate(tmp_path / name)["average"]["rmse"]["pooled"] for name in ("malik", "mean")
    }
    assert rmse["malik"] < 0.6 * rmse["mean"]
