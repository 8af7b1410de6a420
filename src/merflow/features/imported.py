"""Your own embeddings, imported: what merflow does not compute (MERT, CLAP, ...) as a feature.

``embeddings`` (one vector a clip) and ``embeddings_500ms`` (one vector per 500 ms window, on
merflow's window grid) read ``path``: a Parquet file with a ``clip_id`` column (and ``t``, the
window's end time in seconds, for the windowed kind) and one numeric column per dimension; or a
folder of ``<clip_id>.npy`` arrays, ``(D,)`` a clip or ``(n_windows, D)`` (row ``k`` is the window
ending at ``(k + 1) * 0.5`` s). They are checked against the dataset's index like computed
features: a clip without an embedding is quarantined with the reason, NaN or infinite values
and windows off the grid are refused naming the file, and vectors of clips the index does not
know are left out and counted in the log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from merflow.errors import DatasetError
from merflow.features import params as check
from merflow.features.spec import FeatureSpec
from merflow.features.windows import WINDOW_S, window_end_times
from merflow.io import read_table, write_table
from merflow.tables import quarantine_table, read_frame

log = logging.getLogger(__name__)
GRID_TOLERANCE_S = 1e-3


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
    clip_ids = read_frame(clips_path, "clips", ["clip_id"])["clip_id"].astype(str).tolist()
    frame, columns, missing = read_embeddings(
        params["path"], clip_ids, windowed, params.get("window_s", WINDOW_S)
    )
    metadata = {"feature": name, "kind": kind, "params": params, "columns": columns}
    if windowed:
        metadata["window_s"] = params["window_s"]
    write_table(frame, out, metadata=metadata)
    write_table(quarantine_table(missing), quarantine)
    return frame["clip_id"].nunique()


def read_embeddings(
    path: str | Path, clip_ids: list[str], windowed: bool, window_s: float = WINDOW_S
) -> tuple[pd.DataFrame, list[str], list[dict]]:
    """``(table, column names, quarantine rows)``: the embeddings of the indexed ``clip_ids``
    as merflow's feature table layout (``clip_id`` [, ``t``] + float32 columns)."""
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
    columns = _check_frame(path, frame, windowed, window_s)
    known = frame["clip_id"].isin(clip_ids)
    if (~known).any():
        unknown = frame.loc[~known, "clip_id"].nunique()
        log.info("%s: %d clip(s) the index does not know left out", path, unknown)
    frame = frame[known]
    missing = sorted(set(clip_ids) - set(frame["clip_id"]))
    quarantine = [
        {"clip_id": c, "path": None, "stage": "features", "reason": f"no embedding in {path}"}
        for c in missing
    ]
    keys = ["clip_id", "t"] if windowed else ["clip_id"]
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    frame[columns] = frame[columns].astype(np.float32)
    return frame[[*keys, *columns]], columns, quarantine


def _from_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = read_table(path)
    except Exception as exc:  # pyarrow's several error types all mean the same here
        raise DatasetError(f"{path}: not a readable Parquet table ({exc})") from None
    if "clip_id" not in frame:
        raise DatasetError(f"{path}: no clip_id column; the embeddings need one (and t per window)")
    frame["clip_id"] = frame["clip_id"].astype(str)
    return frame


def _from_npy_folder(path: Path, windowed: bool, window_s: float) -> pd.DataFrame:
    rows, width = [], None
    for file in sorted(path.glob("*.npy")):
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:  # damaged, or Python objects inside
            raise DatasetError(
                f"{file}: not a numeric .npy array ({exc}); export it again"
            ) from None
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
        part.insert(0, "clip_id", file.stem)
        if windowed:
            part.insert(1, "t", window_end_times(len(array), window_s))
        rows.append(part)
    if not rows:
        raise DatasetError(f"{path}: no .npy files; give one <clip_id>.npy array per clip")
    return pd.concat(rows, ignore_index=True)


def _check_frame(path: Path, frame: pd.DataFrame, windowed: bool, window_s: float) -> list[str]:
    keys = ["clip_id", "t"] if windowed else ["clip_id"]
    if windowed and "t" not in frame:
        raise DatasetError(f"{path}: no t column (the end time of each 500 ms window)")
    columns = [c for c in frame.columns if c not in keys]
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric or len(numeric) != len(columns):
        other = sorted(set(columns) - set(numeric))[:5]
        raise DatasetError(f"{path}: every column but {keys} must be numeric (not: {other})")
    values = frame[columns].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = frame.loc[~np.isfinite(values).all(1), "clip_id"].unique()[:5].tolist()
        raise DatasetError(f"{path}: NaN or infinite values for clip(s) {bad}; fix the export")
    if frame.duplicated(keys).any():
        raise DatasetError(f"{path}: {keys} repeat; one row per clip (and window) please")
    if windowed:
        steps = frame["t"].to_numpy() / window_s
        if (np.abs(steps - np.round(steps)) > GRID_TOLERANCE_S).any() or (steps < 1 - 1e-9).any():
            raise DatasetError(
                f"{path}: t must be window end times {window_s}, {2 * window_s}, ... seconds "
                "(docs/tables.md)"
            )
    return columns


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
