"""The report's front pages: one ``index.md`` per experiment, one over all experiments.

An experiment's index links every table and figure with one line on what it shows, says which
dataset the numbers are on and which recipe produced them, and lists what was left out: the
clips the index and feature stages quarantined (``quarantine.parquet`` files, docs/tables.md) and
the clips single runs could not use (their ``quarantine.parquet`` and the ``excluded`` field of
their metrics). Nothing is silently dropped; the report is where a reader sees it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from merflow.errors import DatasetError
from merflow.models.registry import label as model_label
from merflow.reporting.context import Artifact, ReportContext
from merflow.reporting.render import markdown_grid, write_text
from merflow.reporting.runs import STD_DDOF, RunResult
from merflow.runs import NO_SEQ_LEN
from merflow.tables import read_frame

QUARANTINE_COLUMNS = ["source", "clip_id", "stage", "reason", "path"]
EXCLUSION_COLUMNS = ["clip_id", "stage", "reason", "n_runs"]
LISTED_ROWS = 20  # rows of a list shown in index.md; the CSV beside it holds them all


def read_quarantine(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """All rows of the given quarantine tables, with the file each came from (``source``)."""
    frames = []
    for path in paths:
        path = Path(path)
        frame = read_frame(path, "quarantine", needed=("clip_id", "stage", "reason"))
        frame["source"] = path.name
        frames.append(frame.reindex(columns=QUARANTINE_COLUMNS))
    if not frames:
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    table = pd.concat(frames, ignore_index=True).astype("object")
    return table.sort_values(["source", "clip_id", "stage", "reason"], kind="stable").reset_index(
        drop=True
    )


def run_exclusions(runs: Sequence[RunResult]) -> pd.DataFrame:
    """Clips single runs left out (training: the run's quarantine; evaluation: ``excluded``),
    one row per clip and reason with the number of runs it concerns."""
    rows = []
    for run in runs:
        quarantine = run.quarantine()
        if quarantine is not None:
            rows += [
                (str(r.clip_id), str(r.stage), str(r.reason))
                for r in quarantine.itertuples(index=False)
            ]
        rows += [
            (str(e["clip_id"]), "evaluate", str(e["reason"]))
            for e in run.metrics.get("excluded", [])
        ]
    frame = pd.DataFrame(rows, columns=["clip_id", "stage", "reason"])
    counted = frame.groupby(["clip_id", "stage", "reason"]).size().rename("n_runs").reset_index()
    return counted.reindex(columns=EXCLUSION_COLUMNS).sort_values(["clip_id", "stage", "reason"])


# --- the experiment's index.md -------------------------------------------------------------------


def _link(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _artifact_line(artifact: Artifact, base: Path) -> str:
    main, *others = artifact.paths
    line = f"- [{artifact.title}]({_link(main, base)})"
    if others:
        formats = ", ".join(f"[{p.suffix.lstrip('.').upper()}]({_link(p, base)})" for p in others)
        line += f" ({formats})"
    return f"{line}: {artifact.description}"


def _runs_paragraph(runs: Sequence[RunResult]) -> str:
    models = sorted({r.model for r in runs})
    features = sorted({r.feature for r in runs})
    seeds = sorted({r.seed for r in runs})
    splits = sorted({r.split for r in runs})
    recipes = sorted({r.recipe for r in runs})
    return (
        f"{len(runs)} runs: models {', '.join(models)}; features {', '.join(features)}; "
        f"seeds {', '.join(map(str, seeds))}; splits {', '.join(splits)}. "
        f"Recipe: {', '.join(recipes)} (run.json `recipe`; 'paper' where none is recorded)."
    )


def _conventions(runs: Sequence[RunResult]) -> str:
    pooled = len({r.split for r in runs}) > 1
    over = "all folds and seeds pooled into one sample (k-fold)" if pooled else "seeds"
    text = (
        f"Every cell is the mean ± standard deviation (population, ddof={STD_DDOF}) over runs "
        f"({over}) of each run's score on the test part; baselines are fitted once and show a "
        "single value."
    )
    if any(r.task == "regression" for r in runs):
        text += (
            " RMSE and Pearson r are computed per song and averaged over songs (MediaEval "
            "2015); `summary.csv` also holds them pooled over all windows (`*_pooled`)."
        )
    return text


def _quarantine_section(quarantine: pd.DataFrame, exclusions: pd.DataFrame) -> list[str]:
    lines = ["## Left out", ""]
    n_clips = quarantine["clip_id"].nunique()
    if quarantine.empty:
        lines.append("No clip was quarantined by the index or feature stages.")
    else:
        lines.append(
            f"{n_clips} clip(s) quarantined by the index/feature stages "
            f"({len(quarantine)} entries; all in [quarantine.csv](quarantine.csv)):"
        )
        counts = (
            quarantine.groupby(["source", "stage", "reason"], dropna=False).size().reset_index()
        )
        lines += [
            "",
            markdown_grid(
                ["file", "stage", "reason", "clips"],
                [[str(v) for v in row] for row in counts.itertuples(index=False)],
            ),
        ]
    lines.append("")
    if exclusions.empty:
        lines.append("No run left a clip out of training or evaluation.")
    else:
        shown = exclusions.head(LISTED_ROWS)
        lines += [
            f"{exclusions['clip_id'].nunique()} clip(s) left out of single runs (training or "
            "evaluation; all in [excluded_from_runs.csv](excluded_from_runs.csv)):",
            "",
            markdown_grid(
                ["clip", "stage", "reason", "runs"],
                [[str(v) for v in row] for row in shown.itertuples(index=False)],
            ),
        ]
        if len(exclusions) > LISTED_ROWS:
            lines.append(f"\n… and {len(exclusions) - LISTED_ROWS} more.")
    return lines


def experiment_title(ctx: ReportContext) -> str:
    paper = {"malik2017": "Malik et al. 2017", "velankar": "Velankar et al."}.get(ctx.paper or "")
    about = f" ({paper})" if paper else ""
    return f"Experiment {ctx.experiment}{about} on {ctx.dataset_name}"


def write_experiment_index(
    ctx: ReportContext,
    runs: Sequence[RunResult],
    quarantine: pd.DataFrame,
    exclusions: pd.DataFrame,
) -> Path:
    """``index.md`` linking every artifact of ``ctx`` (sections in the order they were made)."""
    base = ctx.out_dir
    lines = [
        f"# {experiment_title(ctx)}",
        "",
        f"Dataset: {ctx.dataset_description()}.",
        "",
        _runs_paragraph(runs),
        "",
        _conventions(runs),
    ]
    sections: dict[str, list[Artifact]] = {}
    for artifact in ctx.artifacts:
        sections.setdefault(artifact.section, []).append(artifact)
    for section, artifacts in sections.items():
        lines += ["", f"## {section}", ""]
        lines += [_artifact_line(a, base) for a in artifacts]
    lines += [""] + _quarantine_section(quarantine, exclusions)
    path = base / "index.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


# --- results/report/index.md ---------------------------------------------------------------------


# The test score that ranks the rows of a task: (metric in summary.csv, higher is better, name)
BEST_BY = {
    "classification": ("macro_f1", True, "macro-F1"),
    "regression": ("average_rmse_song", False, "RMSE (mean of valence and arousal)"),
}


def report_index(experiment_indexes: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write the top-level index linking every experiment's ``index.md`` (by its title), and the
    best row of each task on each dataset across the experiments."""
    out = Path(out)
    lines = ["# merflow results", "", "One report per experiment:", ""]
    indexes = sorted(Path(p) for p in experiment_indexes)
    for index in indexes:
        if not index.is_file():
            raise DatasetError(f"{index} does not exist; run `merflow aggregate` for it first")
        first = index.read_text(encoding="utf-8").splitlines()[0] if index.stat().st_size else ""
        title = first.removeprefix("# ").strip() or index.parent.parent.name
        lines.append(f"- [{title}]({_link(index, out.parent)})")
    lines += _best_rows(indexes)
    return write_text(out, "\n".join(lines) + "\n")


def _best_rows(indexes: Sequence[Path]) -> list[str]:
    """One line per dataset and task: the best test score of all experiments' rows (mean over
    runs), its model, feature and experiment."""
    frames = []
    for index in indexes:
        summary = index.parent / "summary.csv"
        if summary.is_file():
            frame = pd.read_csv(summary, dtype={"seq_len": str})
            dataset, experiment = index.parent.parent.parent.name, index.parent.parent.name
            frames.append(frame.assign(dataset=dataset, experiment=experiment))
    if not frames:
        return []
    rows = pd.concat(frames, ignore_index=True)
    lines = [
        "",
        "Best row per dataset and task (test part, mean over runs; each on its",
        "experiment's split):",
        "",
    ]
    for (dataset, task), (metric, higher, name) in _tasks(rows).items():
        chosen = rows[(rows["dataset"] == dataset) & (rows["metric"] == metric)]
        chosen = chosen[chosen["part"] == "test"].dropna(subset=["mean"])
        if chosen.empty:  # no test score to rank (every run failed or was left out)
            continue
        best = chosen.loc[chosen["mean"].idxmax() if higher else chosen["mean"].idxmin()]
        length = "" if best["seq_len"] == NO_SEQ_LEN else f", seq_len {best['seq_len']}"
        lines.append(
            f"- {dataset}, {task}: {model_label(best['model'])} on {best['feature']}{length} "
            f"({best['experiment']}): {name} {best['mean']:.3f}"
        )
    return lines


def _tasks(rows: pd.DataFrame) -> dict[tuple[str, str], tuple[str, bool, str]]:
    found = {}
    for dataset in sorted(rows["dataset"].unique()):
        metrics = set(rows.loc[rows["dataset"] == dataset, "metric"])
        for task, best_by in BEST_BY.items():
            if best_by[0] in metrics:
                found[(dataset, task)] = best_by
    return found
