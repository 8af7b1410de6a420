"""Classification rows as the MER papers report them: a mean with a 95 % interval over repeats,
and the F1 of every class (4Q's quadrants).

A *repeat* is one repetition of the whole protocol: one draw of the k folds (``-r<r>`` in the
split id; the one draw of a k-fold without repeats) for one seed. Its score is the mean over its
folds (or the holdout run's score). The row's value is the mean of the repeat scores, and its
interval the Student-t 95 % interval of that mean, ``t(0.975, R - 1) · s / √R`` with ``s`` the
sample standard deviation (``ddof=1``) of the ``R`` repeat scores: it says how much the number
would move with another shuffle of the songs, not how the folds differ. One repeat gives no
interval. Per-class F1 is the mean over all runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from merflow.models.registry import label as model_label
from merflow.models.registry import rank
from merflow.reporting.context import ReportContext
from merflow.reporting.render import Column, Table
from merflow.reporting.runs import RunResult, flat_values, group_runs, seq_len_order

SECTION = "Protocol of the MER papers"
CONFIDENCE = 0.95
_REPEAT = re.compile(r"-r(\d+)-f\d+$")


def repeat_of(run: RunResult) -> tuple[int, int]:
    """(repeat, seed) of a run: the draw of the folds its split belongs to, and its seed."""
    match = _REPEAT.search(run.split)
    return (int(match.group(1)) if match else 0, run.seed)


def repeat_scores(runs: Sequence[RunResult], metric: str) -> list[float]:
    """The mean of ``metric`` over each repeat's runs (its folds), repeat by repeat."""
    by_repeat: dict[tuple[int, int], list[float]] = {}
    for run in runs:
        value = flat_values(run.metrics).get(metric)
        if value is not None:
            by_repeat.setdefault(repeat_of(run), []).append(value)
    return [float(np.mean(v)) for _, v in sorted(by_repeat.items())]


def mean_interval(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The mean and the half-width of its Student-t 95 % interval (None for one value)."""
    if not values:
        return None, None
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    from scipy.stats import t

    spread = float(np.std(values, ddof=1)) / np.sqrt(len(values))
    return mean, float(t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * spread)


def protocol_table(ctx: ReportContext, runs: Sequence[RunResult]) -> Table:
    groups = group_runs(runs)
    classes = list(runs[0].metrics["classes"])
    rows = []
    for key in sorted(groups, key=lambda k: (rank(k[1]), k[1], k[0], seq_len_order(k[2]))):
        group = groups[key]
        scores = repeat_scores(group, "macro_f1")
        mean, half = mean_interval(scores)
        row: dict[str, Any] = {
            "model": model_label(key[1]),
            "feature": group[0].feature_label,
            "macro_f1": mean,
            "macro_f1_ci95": half,
            "n_repeats": len(scores),
            "n_runs": len(group),
        }
        for name in classes:
            values = [flat_values(r.metrics).get(f"{name}_f1") for r in group]
            row[f"f1_{name}"] = float(np.mean([v for v in values if v is not None]))
        rows.append(row)
    columns = [
        Column("Model", "model"),
        Column("Feature", "feature"),
        Column("Macro F1", "macro_f1", "number"),
        Column("± 95 % interval", "macro_f1_ci95", "number"),
        Column("Repeats", "n_repeats", "count"),
        *[Column(f"F1 {name}", f"f1_{name}", "number") for name in classes],
        Column("Runs", "n_runs", "count"),
    ]
    caption = (
        "Macro-F1: the mean over repeats (one draw of the folds for one seed; its score the mean "
        "over its folds) with the half-width of the Student-t 95 % interval of that mean over "
        "the repeats (none with one repeat); per-class F1: mean over all runs. Fused features "
        f"name their views and fusion. Dataset {ctx.dataset_description()}."
    )
    title = f"Macro-F1 over repeats and per-class F1, {ctx.dataset_name}"
    return Table("protocol", title, caption, columns, rows)


def build_protocol_report(ctx: ReportContext, runs: Sequence[RunResult]) -> None:
    ctx.add_table(
        SECTION,
        protocol_table(ctx, runs),
        "Every classification row: macro-F1 with a 95 % interval over repeats, F1 per class.",
    )
