"""Reading finished runs and reducing them to mean ± std over seeds.

A run directory (``results/<dataset>/<experiment>/runs/<feature>/<model>/len<seq_len>/<split>/
seed<seed>/``) holds ``metrics.json`` (the test part, schema in :mod:`merflow.learn.evaluation`),
optionally ``metrics_train.json`` (the same on the training part: Malik et al.'s "Development"
columns), ``run.json`` (provenance), ``history.csv`` and ``predictions.parquet``.

Statistics over runs: every run gives one number per metric (its song-averaged RMSE, its
accuracy, ...); a configuration's cell is the mean and the population standard deviation
(``ddof=0``, numpy's default, the same convention as the per-song std of the metrics) of those
numbers over its runs. With k-fold splits the runs of all folds and seeds are pooled into one
sample. One run (a baseline, fitted once) has no spread: its std is ``None``, shown as the bare
value. Undefined values (``null`` in the metrics, e.g. Pearson r of a constant prediction) are
left out and ``n`` counts the values kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from merflow.errors import DatasetError
from merflow.features.views import describe
from merflow.models.registry import MODELS
from merflow.runs import (
    HISTORY_FILE,
    NO_SEQ_LEN,
    QUARANTINE_FILE,
    RUN_FILE,
    Run,
    RunFileError,
    metrics_file,
    predictions_file,
    read_json_file,
)
from merflow.tables import PREDICTIONS, read_frame

METRICS_FILE = metrics_file()
DIMENSIONS = ("valence", "arousal", "average")  # Malik et al.'s column order
STD_DDOF = 0

REEVALUATE = "evaluate the run again (snakemake --forcerun <its metrics.json>, or merflow evaluate)"


@dataclass(frozen=True)
class Stat:
    """Mean, spread and count of one metric over runs."""

    mean: float | None
    std: float | None
    n: int


def seed_stat(values: Iterable[float | None]) -> Stat:
    """Mean ± population std of the defined values; no std for a single value (module doc)."""
    kept = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(kept) == 0:
        return Stat(None, None, 0)
    std = float(np.std(kept, ddof=STD_DDOF)) if len(kept) > 1 else None
    return Stat(float(np.mean(kept)), std, len(kept))


@dataclass(frozen=True)
class RunResult:
    """One finished run: its identity (the workflow's wildcards) and what it wrote."""

    run_dir: Path
    feature: str
    model: str
    seq_len: str
    split: str
    seed: int
    task: str
    metrics: dict[str, Any]
    metrics_train: dict[str, Any] | None
    record: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        """The configuration a run belongs to: runs with the same key differ in seed/split."""
        return (self.feature, self.model, self.seq_len)

    @property
    def feature_label(self) -> str:
        """The feature as reports name it: fused views with their fusion."""
        return describe(self.feature, self.record.get("config", {}).get("fusion"))

    @property
    def is_baseline(self) -> bool:
        return self.model in MODELS and MODELS[self.model].baseline

    @property
    def n_parameters(self) -> int | None:
        return self.record.get("n_parameters")

    @property
    def best_val_loss(self) -> float | None:
        return (self.record.get("result") or {}).get("best_val_loss")

    @property
    def recipe(self) -> str:
        """Which recipe produced the run: ``run.json``'s ``recipe`` where set, else the paper's."""
        return self.record.get("recipe") or self.record.get("config", {}).get("recipe") or "paper"

    @cached_property
    def history(self) -> pd.DataFrame | None:
        path = self.run_dir / HISTORY_FILE
        return pd.read_csv(path) if path.is_file() else None

    def predictions(self) -> pd.DataFrame:
        path = self.run_dir / predictions_file()
        if not path.is_file():
            raise DatasetError(f"{path} does not exist; run `merflow evaluate` on {self.run_dir}")
        return read_frame(path, PREDICTIONS)

    def quarantine(self) -> pd.DataFrame | None:
        path = self.run_dir / QUARANTINE_FILE
        return read_frame(path, "quarantine") if path.is_file() else None


def seq_len_order(seq_len: str) -> tuple[int, int]:
    """Sort key: numeric lengths descending (the paper's 60, 30, 20, 10), then ``full``."""
    return (0, -int(seq_len)) if seq_len.isdigit() else (1, 0)


def load_run(run_dir: str | os.PathLike) -> RunResult:
    """Read one run directory (or its ``metrics.json``); the run's identity comes from the
    metrics' ``run`` field, completed from the directory layout where a field is missing."""
    run_dir = Path(run_dir)
    if run_dir.name == METRICS_FILE:  # the workflow passes the metrics files it depends on
        run_dir = run_dir.parent
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise DatasetError(
            f"{metrics_path} does not exist: the run has not been evaluated; "
            f"run `merflow evaluate --run-dir {run_dir}` (or the workflow's evaluate rule) first"
        )
    metrics = read_json_file(metrics_path, REEVALUATE)
    train_path = run_dir / metrics_file("train")
    record_path = run_dir / RUN_FILE
    identity = _identity(run_dir, metrics.get("run") or {})
    return RunResult(
        run_dir=run_dir,
        task=metrics.get("task") or _missing(metrics_path, "task"),
        metrics=metrics,
        metrics_train=read_json_file(train_path, REEVALUATE) if train_path.is_file() else None,
        record=read_json_file(record_path) if record_path.is_file() else {},
        **identity,
    )


def _identity(run_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    try:
        from_path = asdict(Run.parse(run_dir.resolve()))
    except RunFileError:
        from_path = {}
    seq_len = run.get("seq_len")
    values = {
        "feature": run.get("feature") or from_path.get("feature"),
        "model": run.get("model") or from_path.get("model"),
        "seq_len": str(seq_len) if seq_len is not None else from_path.get("seq_len"),
        "split": run.get("split") or from_path.get("split"),
        "seed": run.get("seed") if run.get("seed") is not None else from_path.get("seed"),
    }
    if values["seq_len"] is None and values["model"] is not None:
        values["seq_len"] = NO_SEQ_LEN  # whole clips: the evaluation records no length
    lacking = [k for k, v in values.items() if v is None]
    if lacking:
        raise DatasetError(
            f"{run_dir / METRICS_FILE}: cannot tell the run's {', '.join(lacking)}; its 'run' "
            "field lacks them and the directory is not laid out as runs/<feature>/<model>/"
            "len<seq_len>/<split>/seed<seed>. Re-run `merflow evaluate` on it"
        )
    values["seed"] = int(values["seed"])
    return values


def _missing(path: Path, key: str):
    raise DatasetError(f"{path}: no '{key}' field; it was not written by `merflow evaluate`")


def load_runs(run_dirs: Sequence[str | os.PathLike]) -> list[RunResult]:
    """Every run, sorted by feature, model, sequence length (paper order), split and seed."""
    runs = [load_run(d) for d in run_dirs]
    seen: dict[tuple, Path] = {}
    for run in runs:
        ident = (*run.key, run.split, run.seed)
        if ident in seen:
            raise DatasetError(
                f"{run.run_dir} and {seen[ident]} are the same run ({ident}); give each once"
            )
        seen[ident] = run.run_dir
    return sorted(
        runs, key=lambda r: (r.feature, r.model, seq_len_order(r.seq_len), r.split, r.seed)
    )


def group_runs(runs: Iterable[RunResult]) -> dict[tuple[str, str, str], list[RunResult]]:
    """Runs by configuration (feature, model, seq_len), in the order of :func:`load_runs`."""
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    return groups


# --- metrics as flat numbers ---------------------------------------------------------------------


# (metrics.json key, short name in the flat metrics) of the regression metrics
REGRESSION_METRICS = (("rmse", "rmse"), ("pearson_r", "r"), ("r2", "r2"), ("ccc", "ccc"))


def regression_values(metrics: dict[str, Any]) -> dict[str, float | None]:
    """``<dim>_<metric>_song`` and ``<dim>_<metric>_pooled`` for the metrics ``rmse``, ``r``
    (Pearson), ``r2`` (R²) and ``ccc`` (Lin's concordance) of valence, arousal and their
    average (``*_song``: per song, then the mean over songs). A metric missing from the
    metrics (written before it existed) is ``None``: undefined, left out of the statistics."""
    values: dict[str, float | None] = {}
    for dim in DIMENSIONS:
        for metric, short in REGRESSION_METRICS:
            entry = metrics.get(dim, {}).get(metric, {})
            values[f"{dim}_{short}_song"] = entry.get("song_mean")
            values[f"{dim}_{short}_pooled"] = entry.get("pooled")
    return values


def classification_values(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Accuracy, balanced accuracy; macro and weighted precision/recall/F1; per class
    precision/recall/F1/support."""
    values: dict[str, float | None] = {
        "accuracy": metrics.get("accuracy"),
        "balanced_accuracy": metrics.get("balanced_accuracy"),
    }
    for average in ("macro_avg", "weighted_avg"):
        for field in ("precision", "recall", "f1"):
            values[f"{average.removesuffix('_avg')}_{field}"] = metrics[average][field]
    for name in metrics["classes"]:
        for field in ("precision", "recall", "f1", "support"):
            values[f"{name}_{field}"] = metrics["per_class"][name][field]
    return values


def flat_values(metrics: dict[str, Any]) -> dict[str, float | None]:
    if metrics["task"] == "regression":
        return regression_values(metrics)
    return classification_values(metrics)


def part_metrics(run: RunResult, part: str) -> dict[str, Any] | None:
    """The metrics of ``part``: ``test`` (metrics.json) or ``train`` (metrics_train.json)."""
    return run.metrics if part == "test" else run.metrics_train


def stat_of(runs: Sequence[RunResult], metric: str, part: str = "test") -> Stat:
    """Mean ± std over ``runs`` of one flat metric on one part."""
    values = []
    for run in runs:
        metrics = part_metrics(run, part)
        if metrics is not None:
            values.append(flat_values(metrics).get(metric))
    return seed_stat(values)


def summary_frame(runs: Sequence[RunResult]) -> pd.DataFrame:
    """Long format: one row per feature/model/seq_len/part/metric with mean, std and counts."""
    rows = []
    for (feature, model, seq_len), group in group_runs(runs).items():
        for part in ("test", "train"):
            parts = [part_metrics(r, part) for r in group]
            present = [m for m in parts if m is not None]
            if not present:
                continue
            for metric in flat_values(present[0]):
                stat = stat_of(group, metric, part)
                rows.append(
                    {
                        "feature": feature,
                        "model": model,
                        "seq_len": seq_len,
                        "part": part,
                        "metric": metric,
                        "mean": stat.mean,
                        "std": stat.std,
                        "n_runs": stat.n,
                        "n_seeds": len({r.seed for r in group}),
                        "n_splits": len({r.split for r in group}),
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "feature",
            "model",
            "seq_len",
            "part",
            "metric",
            "mean",
            "std",
            "n_runs",
            "n_seeds",
            "n_splits",
        ],
    )


# --- ensembles -----------------------------------------------------------------------------------


def ensemble_values(runs: Sequence[RunResult]) -> list[dict[str, float | None]]:
    """Per split, the flat test metrics of the mean of the runs' predictions (class
    probabilities, or arousal/valence per window): the seed ensemble, or for Malik models given
    runs of several sequence lengths, the sequence-length ensemble. Splits with one run only
    are left out: one model is no ensemble."""
    # evaluation imports torch (a run's predictor); the report needs only its metric functions
    from merflow.learn.evaluation import classification_metrics, regression_metrics

    by_split: dict[str, list[RunResult]] = {}
    for run in runs:
        by_split.setdefault(run.split, []).append(run)
    values = []
    for members in by_split.values():
        if len(members) < 2:
            continue
        tables = [m.predictions() for m in members]
        if members[0].task == "classification":
            columns = [c for c in tables[0].columns if c.startswith("p_")]
            mean = tables[0].copy()
            mean[columns] = sum(t[columns].to_numpy() for t in tables) / len(tables)
            classes = [c.removeprefix("p_") for c in columns]
            mean["predicted"] = np.asarray(classes)[mean[columns].to_numpy().argmax(1)]
            metrics = classification_metrics(mean, classes)
            values.append(classification_values({**metrics, "task": "classification"}))
        else:
            keys = ["clip_id", "t"]
            tables = [t.sort_values(keys, ignore_index=True) for t in tables]
            mean = tables[0].copy()
            predicted = ["arousal_pred", "valence_pred"]
            mean[predicted] = sum(t[predicted].to_numpy() for t in tables) / len(tables)
            values.append(regression_values(regression_metrics(mean)))
    return values


def ensemble_stat(runs: Sequence[RunResult], metric: str) -> Stat:
    """Mean ± std over splits of an ensemble metric (:func:`ensemble_values`)."""
    return ensemble_stats(runs, [metric])[metric]


def ensemble_stats(runs: Sequence[RunResult], metrics: Iterable[str]) -> dict[str, Stat]:
    """:func:`ensemble_stat` of several metrics, the ensembles' predictions scored once."""
    values = ensemble_values(runs)
    return {metric: seed_stat(v.get(metric) for v in values) for metric in metrics}
