"""The report's figures: fixed sizes and resolution, default style, PNG without metadata.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no GUI
backend) inside matplotlib's default style, so a user's matplotlibrc changes nothing, and saved
with ``metadata={"Software": None}``: the same numbers give byte-identical PNGs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from merflow.io import atomic_path

DPI = 120
TRAIN_COLOR, VAL_COLOR = "tab:blue", "tab:orange"
ANNOTATED_COLOR, PREDICTED_COLOR = "black", "tab:red"


def default_style(plot: Callable[..., Path]) -> Callable[..., Path]:
    """Run a plotting function in matplotlib's default style, whatever the user's rcParams."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs) -> Path:
        with matplotlib.style.context("default"):
            return plot(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float, **subplots) -> tuple[Figure, np.ndarray]:
    """A figure of ``width`` × ``height`` inches with a grid of axes (always a 2-D array)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(squeeze=False, **subplots)


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` atomically as a PNG with no metadata (no version, no timestamp)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return Path(path)


# --- classification ------------------------------------------------------------------------------


@default_style
def confusion_heatmap(
    matrix: np.ndarray, labels: Sequence[str], title: str, path: str | os.PathLike
) -> Path:
    """Counts (rows: true class, columns: predicted), each cell with its share of the row."""
    matrix = np.asarray(matrix)
    size = 2.2 + 1.0 * len(labels)
    fig, axes = new_figure(size + 1.2, size)
    ax = axes[0, 0]
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    colorbar = fig.colorbar(image, ax=ax, label="clips (summed over runs)")
    colorbar.locator = MaxNLocator(integer=True)
    colorbar.update_ticks()
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=30, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    row_totals = matrix.sum(1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    threshold = matrix.max() / 2 if matrix.max() > 0 else 1
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{count}\n{shares[i, j]:.0%}",
            ha="center",
            va="center",
            fontsize=9,
            color="white" if count > threshold else "black",
        )
    return save_png(fig, path)


def _mean_band(histories: Sequence[pd.DataFrame], column: str) -> pd.DataFrame:
    """Per epoch: mean and population std over the runs that reached it, and their number."""
    stacked = pd.concat([h[["epoch", column]] for h in histories], ignore_index=True)
    grouped = stacked.groupby("epoch")[column]
    return pd.DataFrame(
        {"mean": grouped.mean(), "std": grouped.std(ddof=0), "n": grouped.count()}
    ).reset_index()


@default_style
def learning_curves(
    histories: Sequence[pd.DataFrame], metric_label: str, title: str, path: str | os.PathLike
) -> Path:
    """Two panels, the metric and the loss per epoch, training and validation: the mean over
    runs as a line and ± one std as a band (where more than one run reached the epoch).

    The training loss is the one optimized, regularization penalty included (history.csv);
    the validation loss has no penalty, so the two differ by more than over-fitting.
    """
    fig, axes = new_figure(10.0, 4.0, ncols=2)
    panels = (
        ("metric", metric_label, metric_label),
        ("loss", "loss", "loss (training incl. penalty)"),
    )
    for ax, (column, label, panel_title) in zip(axes[0], panels, strict=True):
        for part, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
            band = _mean_band(histories, f"{part}_{column}").dropna(subset=["mean"])
            if band.empty:
                continue
            name = "training" if part == "train" else "validation"
            ax.plot(band["epoch"], band["mean"], color=color, label=f"{name} (mean)")
            spread = band[band["n"] > 1]
            if not spread.empty:
                ax.fill_between(
                    spread["epoch"],
                    spread["mean"] - spread["std"],
                    spread["mean"] + spread["std"],
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                    label=f"{name} ± 1 std",
                )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title} ({len(histories)} run{'s' if len(histories) != 1 else ''})")
    return save_png(fig, path)


# --- regression ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SongTrace:
    """One song's windows: time, annotated and predicted arousal and valence, and its RMSE."""

    clip_id: str
    frame: pd.DataFrame  # t, arousal, valence, arousal_pred, valence_pred
    rmse: float
    note: str  # why this song was picked ("best", "median", "worst")


@default_style
def song_timelines(songs: Sequence[SongTrace], title: str, path: str | os.PathLike) -> Path:
    """Rows of songs, columns arousal and valence: annotation and prediction over time."""
    fig, axes = new_figure(10.0, 2.6 * len(songs) + 0.6, nrows=len(songs), ncols=2, sharey=True)
    for row, song in zip(axes, songs, strict=True):
        for ax, dim in zip(row, ("arousal", "valence"), strict=True):
            ax.plot(song.frame["t"], song.frame[dim], color=ANNOTATED_COLOR, label="annotated")
            ax.plot(
                song.frame["t"], song.frame[f"{dim}_pred"], color=PREDICTED_COLOR, label="predicted"
            )
            ax.set_ylim(-1.05, 1.05)
            ax.axhline(0, color="grey", linewidth=0.5)
            ax.set_title(
                f"{song.clip_id} ({song.note}, mean RMSE {song.rmse:.3f}): {dim}", fontsize=9
            )
            ax.set_xlabel("time (s, end of 500 ms window)")
            ax.set_ylabel(dim)
            ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9)
    return save_png(fig, path)


@default_style
def va_scatter(song_means: pd.DataFrame, title: str, path: str | os.PathLike) -> Path:
    """Song means in the valence–arousal plane: annotated and predicted, joined per song.

    ``song_means`` has columns ``valence``, ``arousal``, ``valence_pred``, ``arousal_pred``.
    """
    fig, axes = new_figure(6.0, 6.0)
    ax = axes[0, 0]
    for _, song in song_means.iterrows():
        ax.plot(
            [song["valence"], song["valence_pred"]],
            [song["arousal"], song["arousal_pred"]],
            color="grey",
            linewidth=0.6,
            alpha=0.6,
        )
    ax.scatter(
        song_means["valence"], song_means["arousal"], color=ANNOTATED_COLOR, s=18, label="annotated"
    )
    ax.scatter(
        song_means["valence_pred"],
        song_means["arousal_pred"],
        color=PREDICTED_COLOR,
        marker="x",
        s=22,
        label="predicted",
    )
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("valence (song mean)")
    ax.set_ylabel("arousal (song mean)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_png(fig, path)
