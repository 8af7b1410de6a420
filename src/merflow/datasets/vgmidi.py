"""VGMIDI (Ferreira & Whitehead 2019): piano pieces with valence/arousal per bar, as 500 ms targets.

The layout (``root``, as the vgmidi-sample folder holds it):

* ``pieces.csv`` — one row a piece: ``piece_id``, ``audio`` (the path of its audio, relative to
  ``root``; OGG renderings of the MIDI files), and ``name``, ``duration_s``, … (not read);
* ``dynamic_per_measure.csv`` — one row a bar: ``piece_id``, ``t_start_s``, ``t_end_s`` (seconds
  from the start of the audio file), ``valence_mean``, ``arousal_mean`` (the listeners' mean, in
  [-1, 1]; ``*_std`` and ``n`` are not read).

Targets. The bars (about 2 s each) become merflow's 500 ms grid (docs/tables.md,
:mod:`merflow.features.windows`): window ``k`` covers ``[k w, (k+1) w)``, is labelled by its end
``t = (k+1) w`` and takes the values of the bar that holds its centre ``(k + 1/2) w``. Windows run
from the start of the audio to the end of the last bar (a trailing partial window is dropped);
a window whose centre lies in no bar (a gap between bars) has no target. The audio runs on a few
seconds past the last bar (the release tail): those windows have features but no target.

Each piece is its own ``group``: pieces.csv names no game or composer to group by. What cannot
be read is quarantined with the file, line and reason: a pieces.csv row without an id or audio
path, bars without a usable time span (the piece's windows could not be placed). A piece whose
audio file is missing, a piece without bars and bars of a piece pieces.csv does not list reach
the index stage, which quarantines them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from merflow.datasets.base import TARGET_COLUMNS, RawIndex
from merflow.datasets.manifest import read_csv_table
from merflow.features.windows import WINDOW_S, n_windows, window_end_times

PIECES_CSV = "pieces.csv"
BARS_CSV = "dynamic_per_measure.csv"
BAR_COLUMNS = ("piece_id", "t_start_s", "t_end_s", "valence_mean", "arousal_mean")


def read(spec: dict) -> RawIndex:
    root = Path(spec["root"])
    index = RawIndex(clips=pd.DataFrame(), classes=None)
    index.clips = _pieces(root, index)
    bars = read_csv_table(root / BARS_CSV, required=list(BAR_COLUMNS))
    bars["line"] = np.arange(len(bars)) + 2  # the header is line 1
    for column in BAR_COLUMNS[1:]:
        bars[column] = pd.to_numeric(bars[column], errors="coerce")
    for line in bars.loc[bars["piece_id"].isna(), "line"]:
        where = f"{BARS_CSV} line {line}"
        index.exclude(where, None, f"{where} has no piece_id; fill it in or remove the row")
    bars = bars.dropna(subset=["piece_id"])
    frames = []
    for piece, piece_bars in bars.groupby("piece_id", sort=True):
        problem = _span_problem(piece_bars)
        if problem:
            index.clips = index.clips[index.clips["clip_id"] != piece].reset_index(drop=True)
            index.exclude(piece, None, f"{BARS_CSV} {problem}; repair its bars or remove them")
            continue
        frames.append(bar_windows(str(piece), piece_bars))
    targets = pd.concat(frames, ignore_index=True) if frames else None
    index.targets = targets if targets is not None else pd.DataFrame(columns=TARGET_COLUMNS)
    return index


def bar_windows(piece: str, bars: pd.DataFrame, window_s: float = WINDOW_S) -> pd.DataFrame:
    """The 500 ms targets of one piece's bars: each window takes the bar holding its centre."""
    bars = bars.sort_values("t_start_s", kind="stable")
    starts, ends = bars["t_start_s"].to_numpy(), bars["t_end_s"].to_numpy()
    t = window_end_times(n_windows(ends.max(), window_s), window_s)
    centre = t - window_s / 2
    which = np.searchsorted(starts, centre, side="right") - 1
    inside = (which >= 0) & (centre < ends[np.clip(which, 0, None)])
    which = which[inside]
    return pd.DataFrame(
        {
            "clip_id": piece,
            "t": t[inside],
            "arousal": bars["arousal_mean"].to_numpy()[which],
            "valence": bars["valence_mean"].to_numpy()[which],
        }
    )


def _pieces(root: Path, index: RawIndex) -> pd.DataFrame:
    """The clips of pieces.csv; rows without an id or an audio path are quarantined."""
    table = read_csv_table(root / PIECES_CSV, required=["piece_id", "audio"])
    rows = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        piece, audio = row["piece_id"], row["audio"]
        if pd.isna(piece):
            where = f"{PIECES_CSV} line {line}"
            index.exclude(where, None, f"{where} has no piece_id; fill it in or remove the row")
        elif pd.isna(audio):
            index.exclude(piece, None, f"{PIECES_CSV} line {line} has no audio path; fill it in")
        else:
            path = os.path.normpath(root / audio)
            rows.append({"clip_id": piece, "path": path, "group": piece, "label": None})
    return pd.DataFrame(rows, columns=["clip_id", "path", "group", "label"])


def _span_problem(bars: pd.DataFrame) -> str | None:
    """Why a piece's bars cannot be placed on the time grid, or ``None``."""
    for row in bars.itertuples():
        if not (np.isfinite(row.t_start_s) and np.isfinite(row.t_end_s)):
            return f"line {row.line}: a bar without a start or end time (t_start_s, t_end_s)"
        if row.t_start_s < 0 or row.t_end_s <= row.t_start_s:
            return (
                f"line {row.line}: a bar from {row.t_start_s:g} s to {row.t_end_s:g} s "
                "(times must rise from 0)"
            )
    ordered = bars.sort_values("t_start_s", kind="stable")
    overlap = ordered["t_start_s"].to_numpy()[1:] < ordered["t_end_s"].to_numpy()[:-1] - 1e-6
    if overlap.any():
        line = ordered["line"].to_numpy()[1:][overlap][0]
        return f"line {line}: a bar that starts before the previous one ends"
    return None
