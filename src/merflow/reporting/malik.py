"""Regression experiments in the layout of Malik et al. 2017: Tables 1(a), 1(b) and 2, plus
two figures beyond the paper (annotation vs prediction over time, song means in the V–A plane).

Every RMSE and r is the run's score per song, averaged over songs (MediaEval 2015); R² and
CCC are pooled over all frames of the evaluation part (per song they mostly measure how flat
one song's annotation is). Each is then mean ± std over the runs of a configuration
(:mod:`merflow.reporting.runs`). The paper's own ± is over five runs with different
initializations: the same construction with its seeds. Table 2 has R² and CCC columns beyond
the paper, which reports RMSE only (its rows show —).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from merflow.features.registry import FEATURES
from merflow.features.registry import label as feature_label
from merflow.models import registry
from merflow.models.registry import label as model_label
from merflow.reporting import figures
from merflow.reporting.context import (
    OURS,
    ReportContext,
)
from merflow.reporting.published import (
    MALIK_CITATION,
    MALIK_RUNS,
    MALIK_TABLE1,
    MALIK_TABLE2,
    RmseRow,
)
from merflow.reporting.render import Column, Table
from merflow.reporting.runs import (
    DIMENSIONS,
    RunResult,
    ensemble_stats,
    group_runs,
    seq_len_order,
    stat_of,
)

SECTION_TABLES = "Malik et al. 2017: tables"
SECTION_FIGURES = "Beyond the paper: predictions of the best network run"
BRANCHED = "malik_crnn"  # Table 1 reports the branched CRNN by sequence length
N_EXAMPLE_SONGS = 3
# Table 2's scores beside RMSE: (flat metric name, column group, "song" or "pooled")
TABLE2_SCORES = (("r", "Pearson r", "song"), ("r2", "R²", "pooled"), ("ccc", "CCC", "pooled"))


def build_malik_report(ctx: ReportContext, runs: Sequence[RunResult]) -> None:
    """Write Tables 1 and 2 for each feature of the experiment, and the prediction figures."""
    features = sorted({r.feature for r in runs})
    for feature in features:
        feature_runs = [r for r in runs if r.feature == feature]
        if any(r.model == BRANCHED and r.seq_len.isdigit() for r in feature_runs):
            table = table1(ctx, feature, feature_runs)
            ctx.add_table(
                SECTION_TABLES,
                table,
                "RMSE of the branched CRNN per sequence length, evaluation (test) and "
                "development (training) parts.",
            )
        ctx.add_table(
            SECTION_TABLES,
            table2(ctx, feature, feature_runs),
            "CRNN_NB beside the branched CRNN and the baselines: RMSE, Pearson r, R², CCC "
            "and parameter counts on the evaluation (test) part.",
        )
    best = best_network_run(runs)
    if best is not None:
        prediction_figures(ctx, best)


# --- Table 1 -------------------------------------------------------------------------------------


def table1_letter(feature: str) -> str | None:
    """The part of Malik et al.'s Table 1 a feature belongs to (the feature registry says)."""
    return FEATURES[feature].malik_table if feature in FEATURES else None


def _rmse_row(prefix: str, runs: Sequence[RunResult], part: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for dim in DIMENSIONS:
        stat = stat_of(runs, f"{dim}_rmse_song", part)
        row[f"{prefix}_{dim}_mean"], row[f"{prefix}_{dim}_std"] = stat.mean, stat.std
    return row


def _published_rmse(prefix: str, published: RmseRow) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for dim in DIMENSIONS:
        row[f"{prefix}_{dim}_mean"], row[f"{prefix}_{dim}_std"] = getattr(published, dim)
    return row


def _rmse_columns(prefix: str, group: str) -> list[Column]:
    return [Column(d.capitalize(), f"{prefix}_{d}", "pm", group=group) for d in DIMENSIONS]


def table1(ctx: ReportContext, feature: str, runs: Sequence[RunResult]) -> Table:
    """Rows: sequence lengths in the paper's order (60, 30, 20, 10), ours then the paper's."""
    letter = table1_letter(feature)
    groups = {
        seq_len: group
        for (_, model, seq_len), group in group_runs(runs).items()
        if model == BRANCHED and seq_len.isdigit()
    }
    published = MALIK_TABLE1.get(letter, {}) if ctx.is_malik_data and letter else {}
    lengths = sorted({*groups, *map(str, published)}, key=seq_len_order)
    rows = []
    for seq_len in lengths:
        if seq_len in groups:
            group = groups[seq_len]
            rows.append(
                {
                    "source": OURS,
                    "seq_len": seq_len,
                    **_rmse_row("evaluation", group, "test"),
                    **_rmse_row("development", group, "train"),
                    "n_runs": len(group),
                }
            )
        if int(seq_len) in published:
            evaluation, development = published[int(seq_len)]
            rows.append(
                {
                    "source": MALIK_CITATION,
                    "seq_len": seq_len,
                    **_published_rmse("evaluation", evaluation),
                    **_published_rmse("development", development),
                    "n_runs": MALIK_RUNS,
                }
            )
    columns = [
        Column("Source", "source"),
        Column("Seq. length", "seq_len"),
        *_rmse_columns("evaluation", "Evaluation"),
        *_rmse_columns("development", "Development"),
        Column("Runs", "n_runs", "count"),
    ]
    name_letter = letter or ""
    paper_table = f"Table 1({letter})" if letter else "Table 1"
    title = (
        f"{paper_table} (Malik et al. 2017 layout): CRNN RMSE, {feature_label(feature)}, "
        f"{_where(ctx, bool(published))}"
    )
    caption = _sentences(
        [
            f"RMSE of the branched CRNN ({BRANCHED}) per training sequence length (500 ms "
            "windows), on the evaluation (test) and development (training) parts.",
            _rmse_convention(runs),
            _development_note(groups.values()),
            _comparability(ctx, bool(published)),
        ]
    )
    return Table(f"malik_table1{name_letter}_{feature}", title, caption, columns, rows)


# --- Table 2 -------------------------------------------------------------------------------------


def _table2_sort_key(key: tuple[str, str, str]) -> tuple:
    _, model, seq_len = key
    return (registry.rank(model), model, seq_len_order(seq_len))


def _parameters(runs: Sequence[RunResult]) -> float | None:
    counts = [r.n_parameters for r in runs if r.n_parameters is not None]
    return float(np.mean(counts)) if counts else None


def table2(ctx: ReportContext, feature: str, runs: Sequence[RunResult]) -> Table:
    """Methods compared on the evaluation part: the paper's rows (on its data), then ours."""
    show_published = ctx.is_malik_data and table1_letter(feature) == "a"
    rows: list[dict[str, Any]] = []
    if show_published:
        for method in MALIK_TABLE2:
            rows.append(
                {
                    "method": method.label,
                    "source": method.source,
                    "seq_len": None,
                    **_published_rmse("rmse", method.rmse),
                    "n_parameters": method.n_parameters,
                    "n_parameters_text": method.n_parameters_text,
                    "n_runs": MALIK_RUNS if method.source == MALIK_CITATION else None,
                }
            )
    groups = group_runs(runs)
    baseline_rows = []
    for key in sorted(groups, key=_table2_sort_key):
        group = groups[key]
        row = {
            "method": model_label(key[1]),
            "source": OURS,
            "seq_len": None if group[0].is_baseline else key[2],  # baselines see single windows
            **_rmse_row("rmse", group, "test"),
            "n_parameters": _parameters(group),
            "n_runs": len(group),
        }
        for metric, _, scope in TABLE2_SCORES:
            for dim in ("valence", "arousal"):
                stat = stat_of(group, f"{dim}_{metric}_{scope}", "test")
                row[f"{metric}_{dim}_mean"], row[f"{metric}_{dim}_std"] = stat.mean, stat.std
        row["recipe"] = (
            "-" if group[0].is_baseline else ", ".join(sorted({r.recipe for r in group}))
        )
        (baseline_rows if group[0].is_baseline else rows).append(row)
        if not group[0].is_baseline and len({r.seed for r in group}) > 1:
            rows.append(_ensemble_row(row, group, "seed ensemble"))
    rows += _seq_len_ensemble_rows(groups) + baseline_rows
    columns = [
        Column("Method", "method"),
        Column("Source", "source"),
        Column("Recipe", "recipe"),
        Column("Seq. length", "seq_len"),
        *_rmse_columns("rmse", "RMSE"),
        *(
            Column(dim.capitalize(), f"{metric}_{dim}", "pm", group=group)
            for metric, group, _ in TABLE2_SCORES
            for dim in ("valence", "arousal")
        ),
        Column("Parameters", "n_parameters", "count"),
        Column("Runs", "n_runs", "count"),
    ]
    title = (
        f"Table 2 (Malik et al. 2017 layout): methods on the evaluation part, "
        f"{feature_label(feature)}, {_where(ctx, show_published)}"
    )
    caption = _sentences(
        [
            "RMSE, Pearson r, R² and CCC on the evaluation (test) part; baselines fitted once "
            "(a single value, no spread); Parameters: trainable weights of the model.",
            "Ensemble rows score the mean of several runs' predictions per split (the seeds of "
            "one sequence length, or every sequence length and seed), mean ± std over splits",
            _rmse_convention(runs),
            "Pearson r likewise per song, then averaged over the songs where it is defined "
            "(prediction and annotation not constant); R² (coefficient of determination, "
            "1 - SS_res/SS_tot) and CCC (Lin's concordance correlation coefficient) pooled "
            "over every frame of the evaluation part.",
            "R² and CCC are beyond the paper, which reports RMSE only.",
            _comparability(ctx, show_published, cites_li=True),
        ]
    )
    return Table(f"malik_table2_{feature}", title, caption, columns, rows)


def _seq_len_ensemble_rows(groups: dict[tuple[str, str, str], list[RunResult]]) -> list[dict]:
    rows = []
    for model in sorted({k[1] for k in groups if k[2].isdigit()}):
        members = [r for k, g in groups.items() if k[1] == model and k[2].isdigit() for r in g]
        if len({r.seq_len for r in members}) > 1:
            base = {"method": model_label(model), "source": OURS, "seq_len": "all"}
            base["n_parameters"] = _parameters(members)
            base["recipe"] = ", ".join(sorted({r.recipe for r in members}))
            rows.append(_ensemble_row(base, members, "sequence-length × seed ensemble"))
    return rows


def _ensemble_row(single: dict[str, Any], runs: Sequence[RunResult], kind: str) -> dict:
    row = {**single, "method": f"{single['method']} ({kind})", "n_runs": len(runs)}
    cells = [("rmse", dim, "song") for dim in DIMENSIONS] + [
        (metric, dim, scope) for metric, _, scope in TABLE2_SCORES for dim in ("valence", "arousal")
    ]
    stats = ensemble_stats(runs, [f"{dim}_{metric}_{scope}" for metric, dim, scope in cells])
    for metric, dim, scope in cells:
        stat = stats[f"{dim}_{metric}_{scope}"]
        row[f"{metric}_{dim}_mean"], row[f"{metric}_{dim}_std"] = stat.mean, stat.std
    return row


# --- shared wording ------------------------------------------------------------------------------


def _sentences(parts: list[str]) -> str:
    return " ".join(p for p in parts if p)


def _where(ctx: ReportContext, published: bool) -> str:
    if published:
        return f"on {ctx.dataset_name} (the paper's data), published rows beside ours"
    return ctx.not_comparable()


def _rmse_convention(runs: Sequence[RunResult]) -> str:
    pooled = len({r.split for r in runs}) > 1
    over = "all folds × seeds pooled" if pooled else "seeds"
    return (
        f"merflow cells: mean ± population std over runs ({over}) of each run's RMSE computed "
        "per song and averaged over songs (the MediaEval 2015 way); Average is the mean of "
        "the valence and arousal values; a single run shows its value alone."
    )


def _development_note(groups) -> str:
    if all(r.metrics_train is not None for g in groups for r in g):
        return ""
    return (
        "Development cells show — where a run has no metrics_train.json (its scores on the "
        "training part); evaluate the runs on part 'train' to fill them."
    )


def _comparability(ctx: ReportContext, published: bool, cites_li: bool = False) -> str:
    if not published:
        return (
            f"Dataset {ctx.dataset_description()}: not the paper's data (DEAM with the "
            "MediaEval 2015 split), so the published numbers are not shown: they would not be "
            "comparable."
        )
    note = (
        f"Rows marked '{MALIK_CITATION}' are copied from the paper (mean ± std over five runs)"
        + ("; the cited Li et al. row has no spread." if cites_li else ".")
    )
    method = (ctx.spec.get("split") or {}).get("method", "holdout")
    if method != "fixed":
        note += (
            f" Caution: this experiment's split is '{method}', not the official MediaEval 2015 "
            "development/evaluation split the paper used."
        )
    return note


# --- figures beyond the paper --------------------------------------------------------------------


def best_network_run(runs: Sequence[RunResult]) -> RunResult | None:
    """The network run with the lowest validation loss (never chosen by its test score; the
    test score breaks ties and stands in only when no run recorded a validation loss)."""
    networks = [r for r in runs if not r.is_baseline]
    if not networks:
        return None

    def key(run: RunResult) -> tuple[float, float]:
        val = run.best_val_loss
        test = run.metrics.get("average", {}).get("rmse", {}).get("song_mean")
        return (np.inf if val is None else val, np.inf if test is None else test)

    return min(networks, key=key)


def song_rmse(predictions: pd.DataFrame) -> pd.Series:
    """Per song: the mean of its arousal and valence RMSE (Malik's average), sorted ascending."""
    squared = pd.DataFrame(
        {
            "clip_id": predictions["clip_id"],
            "arousal": (predictions["arousal_pred"] - predictions["arousal"]) ** 2,
            "valence": (predictions["valence_pred"] - predictions["valence"]) ** 2,
        }
    )
    per_song = np.sqrt(squared.groupby("clip_id", sort=True).mean()).mean(axis=1)
    return per_song.sort_values(kind="stable")


def example_songs(predictions: pd.DataFrame, n: int = N_EXAMPLE_SONGS) -> list[figures.SongTrace]:
    """The best, median and worst song by RMSE: a fair picture rather than a flattering one."""
    ranked = song_rmse(predictions)
    picks = {"best": 0, "median": len(ranked) // 2, "worst": len(ranked) - 1}
    chosen: dict[int, str] = {}
    for note, position in picks.items():
        chosen.setdefault(position, note)
    traces = []
    for position, note in sorted(chosen.items())[:n]:
        clip_id = ranked.index[position]
        frame = predictions[predictions["clip_id"] == clip_id].sort_values("t")
        traces.append(figures.SongTrace(str(clip_id), frame, float(ranked.iloc[position]), note))
    return traces


def describe_run(run: RunResult) -> str:
    length = f"seq_len {run.seq_len}" if run.seq_len.isdigit() else "whole clips"
    return f"{model_label(run.model)}, {run.feature}, {length}, {run.split}, seed {run.seed}"


def prediction_figures(ctx: ReportContext, best: RunResult) -> None:
    """Three songs over time and all songs' means in the V–A plane, for one run."""
    predictions = best.predictions()
    chosen_by = "validation loss" if best.best_val_loss is not None else "test RMSE (no val loss)"
    where = f"{ctx.dataset_name}, test part"
    timeline = ctx.out_dir / "malik_best_run_songs.png"
    figures.song_timelines(
        example_songs(predictions),
        f"Annotated vs predicted, {where}: {describe_run(best)}",
        timeline,
    )
    ctx.add_file(
        SECTION_FIGURES,
        "Arousal and valence over time for three test songs",
        f"Best, median and worst test song (by RMSE) of the best network run by {chosen_by}: "
        f"{describe_run(best)}.",
        timeline,
    )
    means = predictions.groupby("clip_id", sort=True)[
        ["valence", "arousal", "valence_pred", "arousal_pred"]
    ].mean()
    scatter = ctx.out_dir / "malik_best_run_va_scatter.png"
    figures.va_scatter(means, f"Song means, {where}\n{describe_run(best)}", scatter)
    ctx.add_file(
        SECTION_FIGURES,
        "Valence–arousal scatter of song means",
        f"Each test song's mean annotation (dot) and mean prediction (cross), joined; same run "
        f"({FEATURES[best.feature].label if best.feature in FEATURES else best.feature}).",
        scatter,
    )
