"""Your own embeddings, imported: what merflow does not compute (MERT, CLAP, ...) as a feature.

``embeddings`` (one vector a clip) and ``embeddings_500ms`` (one vector per 500 ms window, on
merflow's window grid) read ``path``: a Parquet file with a ``clip_id`` column (and ``t``, the
window's end time in seconds, for the windowed kind) and one numeric column per dimension; or a
folder of ``<clip_id>.npy`` arrays, ``(D,)`` a clip or ``(n_windows, D)`` (row ``k`` is the window
ending at ``(k + 1) * 0.5`` s), a clip id with ``/`` naming a file in sub-folders
(``audio/pop/34`` is ``<folder>/audio/pop/34.npy``). They are checked against the dataset's index
like computed features: NaN or infinite values refuse the file; a clip without an embedding, or
whose windows do not fit the grid (a time that is NaN or off the grid, windows missing, past
the clip's end or stopping short of it), is quarantined with the reason, and when every clip's
windows are wrong the import stops naming the file (the export used another window length);
vectors of clips the index does not know are left out and counted in the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from merflow.errors import DatasetError
from merflow.features import params as check
from merflow.features.spec import FeatureSpec
from merflow.features.windows import WINDOW_S, n_windows, window_end_times
from merflow.io import read_table, write_table
from merflow.tables import quarantine_table, read_frame

log = logging.getLogger(__name__)
GRID_TOLERANCE = 1e-3  # in windows: float round-off in a writer's t


def check_embeddings(params: dict[str, Any]) -> None:
    _check_path("embeddings", params)


def check_embeddings_500ms(params: dict[str, Any]) -> None:
    _check_path("embeddings_500ms", params)
    check.positive_number("embeddings_500ms", params, "window_s")


def _check_path(feature: str, params: dict[str, Any]) -> None:
    path = params.get("path")
    if path is not None and not isinstance(path, str):
        raise check.ConfigError(
            f"config error: features.{feature}.path = {path!r}; expected a path"
        )


def import_embeddings(
    name: str,
    params: dict[str, Any],
    clips_path: str | Path,
    out: str | Path,
    quarantine: str | Path,
) -> int:
    """Write the embeddings of the indexed clips as feature ``name``'s table, and the clips
    without one as its quarantine table; return the number of clips imported."""
    kind = {spec.name: spec for spec in (EMBEDDINGS, EMBEDDINGS_500MS)}[name].kind
    windowed = kind == "windows"
    clips = read_frame(clips_path, "clips", ["clip_id", "duration_s"])
    durations = dict(zip(clips["clip_id"].astype(str), clips["duration_s"], strict=True))
    frame, columns, missing = read_embeddings(
        params["path"], list(durations), windowed, params.get("window_s", WINDOW_S), durations
    )
    metadata = {"feature": name, "kind": kind, "params": params, "columns": columns}
    if windowed:
        metadata["window_s"] = params["window_s"]
    write_table(frame, out, metadata=metadata)
    write_table(quarantine_table(missing), quarantine)
    return frame["clip_id"].nunique()


def read_embeddings(
    path: str | Path,
    clip_ids: list[str],
    windowed: bool,
    window_s: float = WINDOW_S,
    durations: Mapping[str, float] | None = None,
) -> tuple[pd.DataFrame, list[str], list[dict]]:
    """``(table, column names, quarantine rows)``: the embeddings of the indexed ``clip_ids``
    as merflow's feature table layout (``clip_id`` [, ``t``] + float32 columns). With the clips'
    ``durations`` (seconds), windows must also cover each clip."""
    path = Path(path).expanduser()
    if path.is_dir():
        frame = _from_npy_folder(path, windowed, window_s)
    elif path.is_file():
        frame = _from_parquet(path)
    else:
        raise DatasetError(
            f"{path}: no such file or folder; point features.<name>.path at a Parquet file or a "
            "folder of <clip_id>.npy arrays"
        )
    columns = _check_frame(path, frame, windowed)
    known = frame["clip_id"].isin(clip_ids)
    if (~known).any():
        unknown = frame.loc[~known, "clip_id"].unique()
        log.info(
            "%s: %d clip(s) the index does not know left out, e.g. %s",
            path,
            len(unknown),
            unknown[0],
        )
    frame = frame[known]
    missing = sorted(set(clip_ids) - set(frame["clip_id"]))
    quarantine = [_quarantined(c, f"no embedding in {_where(path, c)}") for c in missing]
    if windowed:
        faulty = _window_problems(path, frame, durations or {}, window_s)
        frame = frame[~frame["clip_id"].isin(faulty)]
        quarantine += [_quarantined(c, f"{path}: {why}") for c, why in faulty.items()]
    keys = ["clip_id", "t"] if windowed else ["clip_id"]
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    frame[columns] = frame[columns].astype(np.float32)
    return frame[[*keys, *columns]], columns, quarantine


def _quarantined(clip_id: str, reason: str) -> dict:
    return {"clip_id": clip_id, "path": None, "stage": "features", "reason": reason}


def _where(path: Path, clip_id: str) -> str:
    """Where a clip's embedding was looked for."""
    return f"{path} (no {clip_id}.npy)" if path.is_dir() else f"{path} (no row with this clip_id)"


def _from_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = read_table(path)
    except Exception as exc:  # pyarrow's several error types all mean the same here
        raise DatasetError(f"{path}: not a readable Parquet table ({exc})") from None
    if "clip_id" not in frame:
        raise DatasetError(f"{path}: no clip_id column; the embeddings need one (and t per window)")
    frame["clip_id"] = frame["clip_id"].astype(str)
    return frame


def embedding_files(path: str | Path) -> list[Path]:
    """The files an import of ``path`` reads: the file itself, or the ``.npy`` files below the
    folder, sub-folders included (hidden ones are skipped, links to folders not followed)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return [path] if path.is_file() else []
    found = []
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [Path(folder, n) for n in sorted(names) if n.endswith(".npy") and n[0] != "."]
    return found


def _from_npy_folder(path: Path, windowed: bool, window_s: float) -> pd.DataFrame:
    rows, width = [], None
    for file in embedding_files(path):
        array = _load_npy(path, file)
        array = array.reshape(1, -1) if array.ndim == 1 else array
        if array.ndim != 2 or (not windowed and len(array) != 1):
            raise DatasetError(
                f"{file}: shape {array.shape}; expected (D,) a clip, or (n_windows, D) for the "
                "windowed kind"
            )
        width = width or array.shape[1]
        if array.shape[1] != width:
            raise DatasetError(f"{file}: {array.shape[1]} dimensions, the files before it {width}")
        part = pd.DataFrame(array, columns=[f"dim_{j:04d}" for j in range(array.shape[1])])
        part.insert(0, "clip_id", file.relative_to(path).with_suffix("").as_posix())
        if windowed:
            part.insert(1, "t", window_end_times(len(array), window_s))
        rows.append(part)
    if not rows:
        raise DatasetError(
            f"{path}: no .npy files; give one <clip_id>.npy array per clip (the id audio/pop/34 "
            "in the sub-folders audio/pop/34.npy)"
        )
    return pd.concat(rows, ignore_index=True)


def _load_npy(folder: Path, file: Path) -> np.ndarray:
    if not file.resolve().is_relative_to(folder.resolve()):
        raise DatasetError(
            f"{file}: a link leading outside {folder}; embeddings are read inside their folder "
            "only: copy the array in"
        )
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:  # damaged, or Python objects inside
        raise DatasetError(f"{file}: not a numeric .npy array ({exc}); export it again") from None


def _check_frame(path: Path, frame: pd.DataFrame, windowed: bool) -> list[str]:
    keys = ["clip_id", "t"] if windowed else ["clip_id"]
    if windowed and ("t" not in frame or not pd.api.types.is_numeric_dtype(frame["t"])):
        raise DatasetError(f"{path}: no numeric t column (the end time of each window, seconds)")
    columns = [c for c in frame.columns if c not in keys]
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric or len(numeric) != len(columns):
        other = sorted(set(columns) - set(numeric))[:5]
        raise DatasetError(f"{path}: every column but {keys} must be numeric (not: {other})")
    values = frame[columns].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = frame.loc[~np.isfinite(values).all(1), "clip_id"].unique()[:5].tolist()
        raise DatasetError(f"{path}: NaN or infinite values for clip(s) {bad}; fix the export")
    if not windowed and frame.duplicated("clip_id").any():
        raise DatasetError(f"{path}: {keys} repeat; one row per clip please")
    return columns


# --- windows on merflow's grid -------------------------------------------------------------------


def _window_problems(
    path: Path, frame: pd.DataFrame, durations: Mapping[str, float], window_s: float
) -> dict[str, str]:
    """Why the windows of a clip do not fit merflow's grid, with the fix, by clip id; when no
    clip's fit, the export itself is wrong: an error naming the file."""
    fix = f"export one vector per {window_s:g} s window, t its end time (docs/tables.md)"
    problems = {}
    for clip_id, t in frame.groupby("clip_id", sort=True)["t"]:
        reason = _clip_window_problem(t.to_numpy(np.float64), durations.get(clip_id), window_s)
        if reason:
            problems[clip_id] = f"{reason}; {fix}"
    if problems and len(problems) == frame["clip_id"].nunique():
        clip_id, reason = next(iter(problems.items()))
        raise DatasetError(
            f"{path}: the windows of every clip are off the grid, e.g. {clip_id}: {reason}"
        )
    return problems


def _clip_window_problem(t: np.ndarray, duration_s: float | None, window_s: float) -> str:
    """Why window end times ``t`` of one clip are not merflow's windows ('' if they are)."""
    if not np.isfinite(t).all():
        return f"t is NaN or infinite in {np.count_nonzero(~np.isfinite(t))} row(s)"
    t = np.sort(t)
    k = np.round(t / window_s).astype(np.int64)  # window numbers, 1 for the first
    off = (np.abs(t / window_s - k) > GRID_TOLERANCE) | (k < 1)
    if off.any():
        ends = f"{window_s:g}, {2 * window_s:g}, ..."
        return f"t = {t[off][0]:g} s is not one of the window end times {ends}"
    if (np.diff(k) == 0).any():
        return f"t = {k[np.flatnonzero(np.diff(k) == 0)[0]] * window_s:g} s repeats"
    stride = int(np.gcd.reduce(k))
    if len(k) > 1 and stride > 1 and k[0] == stride:
        return f"a window every {stride * window_s:g} s, not every {window_s:g} s"
    expected = n_windows(duration_s, window_s) if duration_s is not None else k[-1]
    if k[-1] > expected + 1:  # one partial window at the end is allowed
        return f"windows run to {k[-1] * window_s:g} s, past the clip's end ({duration_s:g} s)"
    gaps = np.setdiff1d(np.arange(1, k[-1] + 1), k)
    if len(gaps):
        return f"{len(gaps)} window(s) missing, the first ending at {gaps[0] * window_s:g} s"
    if k[-1] < expected - 1:  # one window fewer is a decoder's rounding
        return (
            f"{len(k)} window(s) of {window_s:g} s for a clip of {duration_s:g} s "
            f"({expected} expected)"
        )
    return ""


EMBEDDINGS = FeatureSpec(
    name="embeddings",
    kind="clip",
    label="imported embedding",
    defaults={"path": None},
    check=check_embeddings,
    provided_by="import",
    description="your own clip embeddings (Parquet or <clip_id>.npy), validated against the index",
)
EMBEDDINGS_500MS = FeatureSpec(
    name="embeddings_500ms",
    kind="windows",
    label="imported embedding per 500 ms",
    defaults={"path": None, "window_s": WINDOW_S},
    check=check_embeddings_500ms,
    provided_by="import",
    description="your own embeddings per 500 ms window, validated against the index",
)
