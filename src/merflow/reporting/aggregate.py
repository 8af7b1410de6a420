"""The aggregate stage: an experiment's runs in, its report folder out.

``aggregate`` reads every run, writes ``summary.csv`` (every metric, mean ± std over runs), the
paper-layout tables and figures of the experiment's task (regression: Malik et al. 2017;
classification: Velankar et al.), learning curves of every network, the quarantine lists, and
last ``index.md``, which links them all. The folder is written under a temporary name and
renamed when complete (the Snakemake rule's output is the folder), so it is never half new.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from merflow.errors import DatasetError
from merflow.io import atomic_dir
from merflow.models.registry import label as model_label
from merflow.reporting import figures
from merflow.reporting.context import ReportContext
from merflow.reporting.index import read_quarantine, run_exclusions, write_experiment_index
from merflow.reporting.malik import build_malik_report
from merflow.reporting.protocol import build_protocol_report
from merflow.reporting.render import write_text
from merflow.reporting.runs import RunResult, group_runs, load_runs, summary_frame
from merflow.reporting.velankar import build_velankar_report
from merflow.runs import NO_SEQ_LEN

SECTION_CURVES = "Learning curves"
SECTION_DATA = "Data"
METRIC_LABELS = {"regression": "RMSE (mean of valence and arousal)", "classification": "accuracy"}
CURVE_FIGURES = {"velankar_crnn": "Fig. 5", "velankar_parallel": "Fig. 8"}


def aggregate(
    experiment: str,
    spec: dict[str, Any],
    run_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    dataset: dict[str, Any],
    quarantine_paths: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Write the report of one experiment into ``out_dir``; return the files written.

    ``spec`` is the experiment's config entry (``paper``, ``dataset``, ``split``, ...), ``dataset``
    the dataset's config entry with its ``name`` (``adapter``, ``split_year``, ``paper_dataset``),
    ``run_dirs`` the run directories (each with ``metrics.json``), ``quarantine_paths`` the
    dataset's and features' quarantine tables.
    """
    if not run_dirs:
        raise DatasetError(f"experiment '{experiment}': no run directories to aggregate")
    runs = load_runs(run_dirs)
    final = Path(out_dir)
    with atomic_dir(final) as out:
        ctx = ReportContext(experiment, dict(spec), dict(dataset), out)
        written = _write_report(ctx, runs, quarantine_paths)
    return [final / p.relative_to(out) for p in written]


def _write_report(
    ctx: ReportContext, runs: Sequence[RunResult], quarantine_paths: Sequence[str | os.PathLike]
) -> list[Path]:
    """Every table, figure and list of the report into ``ctx.out_dir``, ``index.md`` last."""
    out = ctx.out_dir
    regression = [r for r in runs if r.task == "regression"]
    classification = [r for r in runs if r.task == "classification"]
    if regression:
        build_malik_report(ctx, regression)
    if classification:
        build_velankar_report(ctx, classification)
        build_protocol_report(ctx, classification)
    learning_curve_figures(ctx, runs)
    write_data_files(ctx, runs)

    quarantine = read_quarantine(quarantine_paths)
    exclusions = run_exclusions(runs)
    write_text(out / "quarantine.csv", quarantine.to_csv(index=False, lineterminator="\n"))
    write_text(out / "excluded_from_runs.csv", exclusions.to_csv(index=False, lineterminator="\n"))
    index = write_experiment_index(ctx, runs, quarantine, exclusions)
    written = [p for a in ctx.artifacts for p in a.paths]
    return [*written, out / "quarantine.csv", out / "excluded_from_runs.csv", index]


def write_data_files(ctx: ReportContext, runs: Sequence[RunResult]) -> None:
    path = ctx.out_dir / "summary.csv"
    frame = summary_frame(runs)
    write_text(path, frame.to_csv(index=False, lineterminator="\n", float_format="%.10g"))
    pooled = len({r.split for r in runs}) > 1
    ctx.add_file(
        SECTION_DATA,
        "All metrics, mean ± std over runs",
        "Long format: one row per feature, model, seq_len, part (test/train) and metric, with "
        "mean, std (population) and the number of runs, seeds and splits"
        + ("; k-fold: folds and seeds pooled." if pooled else "."),
        path,
    )


def learning_curve_figures(ctx: ReportContext, runs: Sequence[RunResult]) -> None:
    """Training and validation metric and loss per epoch of every network configuration."""
    for (feature, model, seq_len), group in group_runs(runs).items():
        histories = [r.history for r in group if r.history is not None and not r.is_baseline]
        if not histories:
            continue
        length = "" if seq_len == NO_SEQ_LEN else f"_len{seq_len}"
        path = ctx.out_dir / f"{model}_{feature}{length}_curves.png"
        where = f"seq_len {seq_len}, " if seq_len != NO_SEQ_LEN else ""
        task = group[0].task
        figures.learning_curves(
            histories,
            METRIC_LABELS[task],
            f"{model_label(model)}, {feature}, {where}{ctx.dataset_name}",
            path,
        )
        paper = f" (as Velankar et al.'s {CURVE_FIGURES[model]})" if model in CURVE_FIGURES else ""
        ctx.add_file(
            SECTION_CURVES,
            f"Learning curves: {model_label(model)}, {feature}{', ' + where[:-2] if where else ''}",
            f"{_capitalized(METRIC_LABELS[task])} and loss per epoch, training and validation, "
            f"mean over {len(histories)} runs with a ± 1 std band{paper}.",
            path,
        )


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]
