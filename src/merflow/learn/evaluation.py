"""Predictions and metrics of a trained run on one part of its split (the test part by default).

Predictions (Parquet, written by :func:`merflow.io.write_table`):

* regression — one row per scored 500 ms window: ``clip_id, t, arousal_pred, valence_pred,
  arousal, valence``. Whole songs of any length are cut into the run's ``seq_len`` chunks, the
  last one aligned to the song's end, and stitched back so each window is predicted once.
* classification — one row per clip: ``clip_id, label, predicted, p_<class>…`` (probabilities).

Metrics (JSON; every number that is undefined, e.g. Pearson r of a constant prediction, is
``null``, never NaN)::

    common:  {"task": "regression"|"classification", "part": "test", "n_clips": int,
              "run": {"model", "feature", "seq_len", "seed", "split"},
              "excluded": [{"clip_id", "reason"}, ...]}    # clips of the part left out, and why
    regression, per dimension d in "arousal", "valence" and for "average" (mean of the two):
      d: {"rmse":      {"song_mean", "song_std", "pooled"},
          "pearson_r": {"song_mean", "song_std", "pooled", "n_songs"},
          "r2":        {"song_mean", "song_std", "pooled", "n_songs"},
          "ccc":       {"song_mean", "song_std", "pooled", "n_songs"}}
      "n_windows": int
        song_*: the metric per song, then mean and (population, ddof 0) std over songs -- the
        MediaEval 2015 way; pooled: over all windows of all songs at once. r2 is the
        coefficient of determination R² = 1 - SS_res/SS_tot (scikit-learn's r2_score, the
        annotation as truth); ccc is Lin's concordance correlation coefficient
        2 cov(pred, true) / (var(pred) + var(true) + (mean(pred) - mean(true))²), population
        moments. Undefined values: r for a constant prediction or annotation, R² for a
        constant annotation, CCC where its denominator is 0 (prediction and annotation the
        same constant), and all three with < 2 windows. Songs where a metric is undefined are
        left out of its song mean; n_songs counts those kept (a constant prediction of a
        varying annotation has r undefined but R² and CCC defined: its CCC is 0). "average"
        holds the mean of the arousal and valence values of each field (Malik et al.'s
        "average RMSE"; no n_songs), null if either is null.
    classification:
      "classes": [...], "accuracy": float, "balanced_accuracy": float,
      "per_class": {class: {"precision", "recall", "f1", "support"}},
      "macro_avg" and "weighted_avg": {"precision", "recall", "f1", "support"},
      "confusion_matrix": {"labels": [...], "matrix": [[...]]}   # rows true, columns predicted
        (scikit-learn's definitions; a class never predicted has precision 0, not NaN;
        balanced_accuracy is balanced_accuracy_score: the mean recall over the classes
        present in the truth)
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from merflow import models
from merflow.devices import select_device
from merflow.errors import ConfigError, DatasetError
from merflow.io import write_json, write_table
from merflow.learn.data import TARGET_NAMES, FrameClips, WindowedClips, ZScore, read_split
from merflow.learn.inference import load_predictor
from merflow.learn.recipes import TrainConfig
from merflow.learn.run_data import load_part
from merflow.runs import NORM_FILE, metrics_file, predictions_file, read_record

log = logging.getLogger(__name__)

# --- predictions ---------------------------------------------------------------------------------


def predict(
    run_dir: str | os.PathLike,
    *,
    part: str = "test",
    features_path: str | os.PathLike | None = None,
    clips_path: str | os.PathLike | None = None,
    split_path: str | os.PathLike | None = None,
    targets_path: str | os.PathLike | None = None,
    use_gpu: bool = False,
) -> tuple[pd.DataFrame, list[dict]]:
    """Predict the clips of ``part`` with the run's trained model.

    Paths default to those the run was trained with (``run.json``). Returns the prediction table
    and the clips that could not be predicted (each with a reason).
    """
    run_dir = Path(run_dir)
    config = _run_config(run_dir, features_path, clips_path, split_path, targets_path)
    parts = read_split(config.split_path)
    if part not in parts:
        raise ConfigError(f"unknown split part {part!r}; choose one of {', '.join(parts)}")
    clip_ids = parts[part]
    if not clip_ids:
        raise DatasetError(f"{config.split_path}: the split has no '{part}' clips to evaluate")
    data, problems = load_part(config, clip_ids)
    data = data.normalized(ZScore.load(run_dir / NORM_FILE))
    predictor = load_predictor(run_dir, select_device(use_gpu))
    if isinstance(data, WindowedClips):
        table = regression_table(data, predictor.predict_windows(data.features))
    else:
        table = classification_table(
            data, predictor.predict_proba(data.features, data.n_valid_frames)
        )
    return table, problems


def _run_config(run_dir: Path, *paths_given) -> TrainConfig:
    config = TrainConfig.from_dict(read_record(run_dir)["config"])
    names = ("features_path", "clips_path", "split_path", "targets_path")
    for name, given in zip(names, paths_given, strict=True):
        if given is not None:
            setattr(config, name, os.fspath(given))
    return config


def regression_table(data: WindowedClips, predictions: list[np.ndarray]) -> pd.DataFrame:
    """One row per window: the prediction beside the annotation."""
    if not data.clip_ids:
        raise DatasetError("no clip of the evaluated part has aligned features and targets")
    lengths = [len(t) for t in data.times]
    pred, true = np.concatenate(predictions), np.concatenate(data.targets)
    frame = pd.DataFrame(
        {"clip_id": np.repeat(data.clip_ids, lengths), "t": np.concatenate(data.times)}
    )
    for j, name in enumerate(TARGET_NAMES):
        frame[f"{name}_pred"] = pred[:, j].astype(np.float32)
    for j, name in enumerate(TARGET_NAMES):
        frame[name] = true[:, j].astype(np.float32)
    return frame


def classification_table(data: FrameClips, probabilities: np.ndarray) -> pd.DataFrame:
    """One row per clip: true label, predicted label and the probability of every class."""
    if not data.clip_ids:
        raise DatasetError("no clip of the evaluated part has features and a label")
    classes = np.asarray(data.classes)
    frame = pd.DataFrame(
        {
            "clip_id": data.clip_ids,
            "label": classes[data.labels],
            "predicted": classes[probabilities.argmax(1)],
        }
    )
    for j, name in enumerate(data.classes):
        frame[f"p_{name}"] = probabilities[:, j].astype(np.float32)
    return frame


# --- metrics -------------------------------------------------------------------------------------


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - true) ** 2)))


def pearson_r(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r, or None where it is undefined (fewer than 2 values, a constant series)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator <= 1e-12 * max(len(x), 1):
        return None
    return float(np.clip(dx @ dy / denominator, -1.0, 1.0))


_EPSILON = 1e-12  # a variance this small (std 1e-6) is a constant


def r2(pred: np.ndarray, true: np.ndarray) -> float | None:
    """R² = 1 - SS_res/SS_tot (scikit-learn's ``r2_score``, ``true`` the annotation), or None
    where it is undefined (fewer than 2 values, a constant annotation)."""
    from sklearn.metrics import r2_score

    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if len(true) < 2:
        return None
    deviation = true - true.mean()
    if float(deviation @ deviation) <= _EPSILON * len(true):
        return None
    return float(r2_score(true, pred))


def ccc(x: np.ndarray, y: np.ndarray) -> float | None:
    """Lin's concordance correlation coefficient with population moments,
    ``2 cov(x, y) / (var x + var y + (mean x - mean y)²)``, or None where it is undefined
    (fewer than 2 values; a zero denominator: x and y the same constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    covariance = float(dx @ dy) / len(x)
    denominator = (
        float(dx @ dx) / len(x) + float(dy @ dy) / len(y) + (float(x.mean()) - y.mean()) ** 2
    )
    if denominator <= _EPSILON:
        return None
    return float(np.clip(2 * covariance / denominator, -1.0, 1.0))


# (metrics.json key, function of (prediction, annotation)) of the metrics that may be undefined
_SONG_METRICS = (("pearson_r", pearson_r), ("r2", r2), ("ccc", ccc))


def regression_metrics(table: pd.DataFrame) -> dict[str, Any]:
    """RMSE, Pearson r, R² and CCC per dimension: per song then mean ± std, and pooled (module
    docstring)."""
    metrics: dict[str, Any] = {"n_clips": int(table["clip_id"].nunique()), "n_windows": len(table)}
    songs = [frame for _, frame in table.groupby("clip_id", sort=True)]
    for name in TARGET_NAMES:
        pred, true = f"{name}_pred", name
        song_rmse = [rmse(s[pred], s[true]) for s in songs]
        metrics[name] = {
            "rmse": {
                **_mean_std(song_rmse),
                "pooled": rmse(table[pred], table[true]),
            },
        }
        for key, metric in _SONG_METRICS:
            per_song = [v for s in songs if (v := metric(s[pred], s[true])) is not None]
            metrics[name][key] = {
                **_mean_std(per_song),
                "pooled": metric(table[pred], table[true]),
                "n_songs": len(per_song),
            }
    metrics["average"] = {
        metric: {
            field: _mean_or_none([metrics[n][metric][field] for n in TARGET_NAMES])
            for field in ("song_mean", "song_std", "pooled")
        }
        for metric in ("rmse", *(key for key, _ in _SONG_METRICS))
    }
    return metrics


def _mean_std(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"song_mean": None, "song_std": None}
    return {"song_mean": float(np.mean(values)), "song_std": float(np.std(values))}


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


def classification_metrics(table: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class and averaged precision/recall/F1, confusion
    matrix (scikit-learn)."""
    from sklearn.metrics import classification_report, confusion_matrix

    true, pred = table["label"].astype(str), table["predicted"].astype(str)
    report = classification_report(true, pred, labels=classes, output_dict=True, zero_division=0)

    def entry(values: dict) -> dict:
        return {
            "precision": float(values["precision"]),
            "recall": float(values["recall"]),
            "f1": float(values["f1-score"]),
            "support": int(values["support"]),
        }

    return {
        "n_clips": len(table),
        "classes": list(classes),
        "accuracy": float((true == pred).mean()),
        "balanced_accuracy": balanced_accuracy(true, pred),
        "per_class": {c: entry(report[c]) for c in classes},
        "macro_avg": entry(report["macro avg"]),
        "weighted_avg": entry(report["weighted avg"]),
        "confusion_matrix": {
            "labels": list(classes),
            "matrix": confusion_matrix(true, pred, labels=classes).tolist(),
        },
    }


def balanced_accuracy(true: pd.Series, pred: pd.Series) -> float:
    """scikit-learn's balanced accuracy (the mean recall over the classes in the truth), without
    its warning about predicted classes absent from the truth: they are left out, as documented."""
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(true, pred))


# --- the evaluate stage --------------------------------------------------------------------------


def evaluate(
    run_dir: str | os.PathLike,
    *,
    part: str = "test",
    predictions_path: str | os.PathLike | None = None,
    metrics_path: str | os.PathLike | None = None,
    **paths_and_device,
) -> dict[str, Any]:
    """Predict ``part`` with the run's model, write the predictions and the metrics JSON.

    ``paths_and_device`` are :func:`predict`'s keyword arguments (feature/clips/split/targets
    paths, ``use_gpu``). Outputs default to the run folder's files (:mod:`merflow.runs`).
    Returns the metrics.
    """
    run_dir = Path(run_dir)
    table, problems = predict(run_dir, part=part, **paths_and_device)
    for p in problems:
        log.warning("clip %s left out of evaluation: %s", p["clip_id"], p["reason"])
    record = read_record(run_dir)
    kind = models.spec(record["config"]["model"])
    if kind.task == "regression":
        metrics = regression_metrics(table)
    else:
        classes = [c.removeprefix("p_") for c in table.columns if c.startswith("p_")]
        metrics = classification_metrics(table, classes)
    metrics = {
        "task": kind.task,
        "part": part,
        "run": _run_summary(record),
        "excluded": [{"clip_id": p["clip_id"], "reason": p["reason"]} for p in problems],
        **metrics,
    }
    write_table(table, predictions_path or run_dir / predictions_file(part))
    write_json(_json_safe(metrics), metrics_path or run_dir / metrics_file(part))
    log.info("%s on %s: %s", record["config"]["model"], part, headline(metrics))
    return metrics


def _run_summary(record: dict) -> dict[str, Any]:
    config = record["config"]
    return {
        "model": config["model"],
        "feature": record.get("resolved", {}).get("feature"),
        "seq_len": config.get("seq_len"),
        "seed": config.get("seed"),
        "split": record.get("split", {}).get("id"),
    }


def headline(metrics: dict) -> str:
    """One line for the log: the numbers the papers report."""
    if metrics["task"] == "classification":
        return f"accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro_avg']['f1']:.3f}"
    parts = []
    for name in TARGET_NAMES:
        rmse_song = metrics[name]["rmse"]["song_mean"]
        r_song = metrics[name]["pearson_r"]["song_mean"]
        r_text = "n/a" if r_song is None else f"{r_song:.3f}"
        parts.append(f"{name} RMSE {rmse_song:.3f} r {r_text}")
    return "; ".join(parts) + " (per song)"


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None: JSON has no NaN, and readers choke on it."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value
