"""Classification experiments in the layout of Velankar et al.: for each network the
classification report (Figs. 6 and 9), the confusion matrix (Figs. 7 and 10) and the learning
curves (Figs. 5 and 8, written by :mod:`merflow.reporting.aggregate`), plus one table of every
model with the baselines for context.

Two views of a model's runs, kept apart because they answer different questions:

* ``<model>_report``: mean ± std over runs of each run's scores (how much seeds matter);
* ``<model>_report_pooled`` and the confusion matrix: the predictions of all runs concatenated
  (the confusion matrix is the sum of the runs' matrices; the pooled report is scikit-learn's
  report of those concatenated predictions, consistent with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from merflow.errors import DatasetError
from merflow.features.registry import label as feature_label
from merflow.models import registry
from merflow.models.registry import MODELS
from merflow.models.registry import label as model_label
from merflow.reporting import figures
from merflow.reporting.context import (
    OURS,
    ReportContext,
)
from merflow.reporting.published import (
    VELANKAR_CITATION,
    VELANKAR_DATASET,
    VELANKAR_REPORTS,
    velankar_published,
)
from merflow.reporting.render import Column, Table
from merflow.reporting.runs import (
    RunResult,
    ensemble_stats,
    group_runs,
    seq_len_order,
    stat_of,
)
from merflow.runs import NO_SEQ_LEN

SECTION = "Velankar et al.: classification"
AVERAGES = (("macro avg", "macro"), ("weighted avg", "weighted"))
FIELDS = ("precision", "recall", "f1")
OVERVIEW_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")


def build_velankar_report(ctx: ReportContext, runs: Sequence[RunResult]) -> None:
    """The overview table, then report, pooled report and confusion matrix of every network."""
    groups = group_runs(runs)
    ctx.add_table(
        SECTION,
        overview_table(ctx, groups),
        "Accuracy, balanced accuracy and macro/weighted F1 of every model, the baselines included.",
    )
    for key in sorted(groups, key=_model_order):
        group = groups[key]
        if group[0].is_baseline:
            continue
        model = key[1]
        figure_refs = VELANKAR_REPORTS.get(model, {}).get("figures", {})
        ctx.add_table(
            SECTION,
            report_table(ctx, key, group),
            f"Per-class precision, recall, F1 and support, mean ± std over runs"
            f"{_paper_ref(figure_refs, 'report')}.",
        )
        ctx.add_table(
            SECTION,
            pooled_report_table(ctx, key, group),
            "The same report computed on the concatenated predictions of all runs.",
        )
        labels, matrix = summed_confusion(group)
        table = confusion_table(ctx, key, group, labels, matrix)
        ctx.add_table(SECTION, table, "Confusion matrix summed over runs (counts).")
        png = ctx.out_dir / f"{_stem(key)}_confusion.png"
        figures.confusion_heatmap(
            matrix,
            labels,
            f"{model_label(model)}{_paper_ref(figure_refs, 'confusion')}\n"
            f"test part, summed over {len(group)} runs, {ctx.dataset_name}",
            png,
        )
        ctx.add_file(
            SECTION,
            f"Confusion matrix heatmap: {model_label(model)}",
            f"Counts summed over {len(group)} runs, with each row's shares"
            f"{_paper_ref(figure_refs, 'confusion')}.",
            png,
        )


def _model_order(key: tuple[str, str, str]) -> tuple:
    feature, model, seq_len = key
    return (registry.rank(model), model, feature, seq_len_order(seq_len))


def _stem(key: tuple[str, str, str]) -> str:
    feature, model, seq_len = key
    suffix = "" if seq_len == NO_SEQ_LEN else f"_len{seq_len}"
    return f"{model}_{feature}{suffix}"


def _paper_ref(figure_refs: dict[str, str], kind: str) -> str:
    return f" (as Velankar et al.'s {figure_refs[kind]})" if kind in figure_refs else ""


def _classes(group: Sequence[RunResult]) -> list[str]:
    classes = group[0].metrics["classes"]
    for run in group[1:]:
        if run.metrics["classes"] != classes:
            raise DatasetError(
                f"{run.run_dir}: classes {run.metrics['classes']} differ from {classes} of "
                f"{group[0].run_dir}; runs of one model must share the dataset's classes"
            )
    return list(classes)


def _where(ctx: ReportContext) -> str:
    if ctx.is_velankar_data:
        return f"on {ctx.dataset_name} (the paper's dataset: {VELANKAR_DATASET})"
    return ctx.not_comparable()


def _over(group: Sequence[RunResult]) -> str:
    pooled = len({r.split for r in group}) > 1
    return f"{len(group)} runs ({'all folds × seeds pooled' if pooled else 'seeds'})"


# --- tables --------------------------------------------------------------------------------------


def overview_table(
    ctx: ReportContext, groups: dict[tuple[str, str, str], list[RunResult]]
) -> Table:
    rows = []
    for key in sorted(groups, key=_model_order):
        group = groups[key]
        row: dict[str, Any] = {
            "model": model_label(key[1]),
            "feature": group[0].feature_label,
            "n_runs": len(group),
        }
        for metric in OVERVIEW_METRICS:
            stat = stat_of(group, metric)
            row[f"{metric}_mean"], row[f"{metric}_std"] = stat.mean, stat.std
        if ctx.is_velankar_data and key[1] in VELANKAR_REPORTS:
            row["paper_accuracy"] = VELANKAR_REPORTS[key[1]]["accuracy"][0]
        row["recipe"] = (
            ", ".join(sorted({r.recipe for r in group})) if not group[0].is_baseline else "-"
        )
        rows.append(row)
        if not group[0].is_baseline and len({r.seed for r in group}) > 1:
            rows.append(_seed_ensemble_row(row, group, key[1]))
    columns = [
        Column("Model", "model"),
        Column("Recipe", "recipe"),
        Column("Feature", "feature"),
        Column("Accuracy", "accuracy", "pm"),
        Column("Balanced accuracy", "balanced_accuracy", "pm"),
        Column("Macro F1", "macro_f1", "pm"),
        Column("Weighted F1", "weighted_f1", "pm"),
        Column("Runs", "n_runs", "count"),
    ]
    if ctx.is_velankar_data:
        columns.insert(4, Column("Paper accuracy", "paper_accuracy", "number", digits=2))
    caption = (
        "Test-part scores of every model: mean ± population std over runs (seeds; with k-fold "
        "splits all folds × seeds pooled); baselines are fitted once and show a single value. "
        "Balanced accuracy: the mean over the classes of their recall (scikit-learn's "
        "balanced_accuracy_score); always guessing one class scores 1/(number of classes) "
        "on it, however unbalanced the classes. "
        "A seed-ensemble row scores the mean of the seeds' class probabilities, per split "
        "(mean ± std over splits). " + _dataset_sentence(ctx)
    )
    title = f"Models compared (Velankar et al. layout), {_where(ctx)}"
    return Table("velankar_models", title, caption, columns, rows)


def _seed_ensemble_row(
    single: dict[str, Any], group: Sequence[RunResult], model: str
) -> dict[str, Any]:
    name = MODELS[model].label if model in MODELS else model
    label = f"{name}: seed ensemble"  # not matched as the model's row
    row = {**single, "model": label, "n_runs": len(group)}
    row.pop("paper_accuracy", None)
    for metric, stat in ensemble_stats(group, OVERVIEW_METRICS).items():
        row[f"{metric}_mean"], row[f"{metric}_std"] = stat.mean, stat.std
    return row


def _dataset_sentence(ctx: ReportContext) -> str:
    if ctx.is_velankar_data:
        return (
            f"'Paper' values are {VELANKAR_CITATION}: the best-trained model on {VELANKAR_DATASET}."
        )
    return (
        f"Dataset {ctx.dataset_description()}: the paper's 138 songs are not public, so no "
        "published value is shown."
    )


def report_table(
    ctx: ReportContext, key: tuple[str, str, str], group: Sequence[RunResult]
) -> Table:
    """Rows as scikit-learn prints them: classes, accuracy, macro avg, weighted avg."""
    classes = _classes(group)
    model = key[1]
    show_paper = ctx.is_velankar_data and model in VELANKAR_REPORTS
    rows = []
    for name in classes:
        row = {"row": name, **_stats(group, [(f, f"{name}_{f}") for f in FIELDS])}
        row["support"] = stat_of(group, f"{name}_support").mean
        if show_paper:
            row.update(_paper_cells(velankar_published(model, name)))
        rows.append(row)
    accuracy = {"row": "accuracy", **_stats(group, [("f1", "accuracy")])}
    accuracy["support"] = float(np.mean([r.metrics["n_clips"] for r in group]))
    if show_paper:
        value, support = VELANKAR_REPORTS[model]["accuracy"]
        accuracy.update(_paper_cells((None, None, value, support)))
    rows.append(accuracy)
    for label, prefix in AVERAGES:
        row = {"row": label, **_stats(group, [(f, f"{prefix}_{f}") for f in FIELDS])}
        row["support"] = accuracy["support"]
        if show_paper:
            row.update(_paper_cells(VELANKAR_REPORTS[model][f"{prefix}_avg"]))
        rows.append(row)
    group_label = f"{OURS} (mean ± std over {_over(group)})" if show_paper else ""
    columns = [
        Column("", "row"),
        Column("precision", "precision", "pm", group=group_label),
        Column("recall", "recall", "pm", group=group_label),
        Column("f1-score", "f1", "pm", group=group_label),
        Column("support", "support", "count", group=group_label),
    ]
    if show_paper:
        columns += [
            Column(
                c.label,
                f"paper_{c.key}",
                "number",
                digits=2 if c.key != "support" else 0,
                group=VELANKAR_CITATION,
            )
            for c in columns[1:]
        ]
    figure_refs = VELANKAR_REPORTS.get(model, {}).get("figures", {})
    title = (
        f"Classification report{_paper_ref(figure_refs, 'report')}: {model_label(model)}, "
        f"{feature_label(key[0])}, {_where(ctx)}"
    )
    caption = (
        "Test part. Each cell: mean ± population std over runs of the run's score "
        "(scikit-learn definitions; a class never predicted has precision 0); support: test "
        "clips per run (mean over runs); the accuracy row's f1-score column holds the "
        "accuracy. " + _dataset_sentence(ctx)
    )
    return Table(f"{_stem(key)}_report", title, caption, columns, rows)


def _stats(group: Sequence[RunResult], fields: list[tuple[str, str]]) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for column, metric in fields:
        stat = stat_of(group, metric)
        cells[f"{column}_mean"], cells[f"{column}_std"] = stat.mean, stat.std
    return cells


def _paper_cells(values: tuple | None) -> dict[str, Any]:
    if values is None:
        return {}
    return dict(
        zip(("paper_precision", "paper_recall", "paper_f1", "paper_support"), values, strict=True)
    )


def pooled_predictions(group: Sequence[RunResult]) -> pd.DataFrame:
    """The prediction tables of all runs, one after the other (sorted run order)."""
    return pd.concat([run.predictions() for run in group], ignore_index=True)


def pooled_report_table(
    ctx: ReportContext, key: tuple[str, str, str], group: Sequence[RunResult]
) -> Table:
    """scikit-learn's classification report on the concatenated predictions of all runs."""
    from sklearn.metrics import classification_report

    classes = _classes(group)
    predictions = pooled_predictions(group)
    report = classification_report(
        predictions["label"].astype(str),
        predictions["predicted"].astype(str),
        labels=classes,
        output_dict=True,
        zero_division=0,
    )
    rows = []
    for name in [*classes, "macro avg", "weighted avg"]:
        entry = report[name]
        rows.append(
            {
                "row": name,
                "precision": entry["precision"],
                "recall": entry["recall"],
                "f1": entry["f1-score"],
                "support": entry["support"],
            }
        )
    accuracy = float(
        (predictions["label"].astype(str) == predictions["predicted"].astype(str)).mean()
    )
    rows.insert(len(classes), {"row": "accuracy", "f1": accuracy, "support": len(predictions)})
    columns = [
        Column("", "row"),
        Column("precision", "precision", "number"),
        Column("recall", "recall", "number"),
        Column("f1-score", "f1", "number"),
        Column("support", "support", "count"),
    ]
    title = (
        f"Classification report, predictions of {len(group)} runs pooled: "
        f"{model_label(key[1])}, {feature_label(key[0])}, {_where(ctx)}"
    )
    caption = (
        "Test part; scikit-learn's classification_report of all runs' predictions concatenated "
        "(support: clips summed over runs), the report of the summed confusion matrix."
    )
    return Table(f"{_stem(key)}_report_pooled", title, caption, columns, rows)


def summed_confusion(group: Sequence[RunResult]) -> tuple[list[str], np.ndarray]:
    """The confusion matrices of the runs (rows true, columns predicted), added up."""
    labels = group[0].metrics["confusion_matrix"]["labels"]
    total = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for run in group:
        matrix = run.metrics["confusion_matrix"]
        if matrix["labels"] != labels:
            raise DatasetError(
                f"{run.run_dir / 'metrics.json'}: confusion-matrix labels {matrix['labels']} "
                f"differ from {labels}; runs of one model must share the dataset's classes"
            )
        total += np.asarray(matrix["matrix"], dtype=np.int64)
    return list(labels), total


def confusion_table(
    ctx: ReportContext,
    key: tuple[str, str, str],
    group: Sequence[RunResult],
    labels: list[str],
    matrix: np.ndarray,
) -> Table:
    rows = []
    for i, name in enumerate(labels):
        row: dict[str, Any] = {"true": name, "total": int(matrix[i].sum())}
        row.update({f"predicted_{j}": int(matrix[i, j]) for j in range(len(labels))})
        rows.append(row)
    columns = [
        Column("true \\ predicted", "true"),
        *[Column(name, f"predicted_{j}", "count") for j, name in enumerate(labels)],
        Column("total", "total", "count"),
    ]
    figure_refs = VELANKAR_REPORTS.get(key[1], {}).get("figures", {})
    title = (
        f"Confusion matrix{_paper_ref(figure_refs, 'confusion')}: {model_label(key[1])}, "
        f"summed over {len(group)} runs, {_where(ctx)}"
    )
    caption = (
        f"Test part; counts of clips, rows the true class, columns the predicted class, summed "
        f"over {_over(group)} ({int(matrix.sum())} predictions in all)."
    )
    return Table(f"{_stem(key)}_confusion", title, caption, columns, rows)
