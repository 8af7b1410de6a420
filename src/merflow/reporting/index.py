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
from merflow.reporting.context import Artifact, ReportContext
from merflow.reporting.render import markdown_grid, write_text
from merflow.reporting.runs import STD_DDOF, RunResult
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


def report_index(experiment_indexes: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write the top-level index linking every experiment's ``index.md`` (by its title)."""
    out = Path(out)
    lines = ["# merflow results", "", "One report per experiment:", ""]
    for index in sorted(Path(p) for p in experiment_indexes):
        if not index.is_file():
            raise DatasetError(f"{index} does not exist; run `merflow aggregate` for it first")
        first = index.read_text(encoding="utf-8").splitlines()[0] if index.stat().st_size else ""
        title = first.removeprefix("# ").strip() or index.parent.parent.name
        lines.append(f"- [{title}]({_link(index, out.parent)})")
    return write_text(out, "\n".join(lines) + "\n")
