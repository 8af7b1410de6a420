"""A dataset described by a CSV manifest: one row a clip, with its audio path and its label.

The generic adapter for any layout the others do not know (Emotify's ``labels_3class.csv`` works
as it is). Keys of the dataset's config entry (``spec``), all optional:

``csv`` (default ``manifest.csv``)
    the manifest, relative to ``root`` (or absolute).
``path_column`` (default ``path``)
    audio paths, relative to ``root`` or absolute.
``label_column`` (default ``label``)
    categorical labels; set it to ``null`` for a dataset with time-continuous targets only.
``id_column`` (default: none)
    clip ids; without it a clip's id is its path as written, without the extension
    (``audio/pop/34.mp3`` → ``audio/pop/34``), which is unique whenever the paths are.
``group_column`` (default: none)
    songs/artists that must stay on one side of a split; without it each clip is its own group.
``targets_csv`` (default: none)
    time-continuous labels ``clip_id,t,arousal,valence`` (``t`` = end of the 500 ms window, in
    seconds from the start of the audio file; values in [-1, 1]), relative to ``root``.
``allow_outside_root`` (default ``false``)
    a manifest row whose path leads outside ``root`` (``../x.wav``, ``/elsewhere/x.wav``) is
    refused unless this is true: a dataset folder should hold what it describes.

Containment is checked on the normalized path (``..`` collapsed), not on symlink targets, so a
dataset folder of symlinks into shared storage stays usable. Rows that cannot become a clip (no
path, a path outside the root, targets for an id the manifest does not have) are quarantined with
the manifest line number; labels and audio are validated by :mod:`merflow.datasets.index`.

:func:`read_csv_table` is the tolerant CSV reader that the other adapters use too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from merflow.datasets.base import RawIndex, numbers_or_text
from merflow.errors import DatasetError

TARGET_FILE_COLUMNS = ("clip_id", "t", "arousal", "valence")


def read(spec: dict) -> RawIndex:
    root = Path(spec["root"])
    csv_path = _under_root(root, spec.get("csv", "manifest.csv"))
    path_column = spec.get("path_column", "path")
    label_column = spec.get("label_column", "label")
    id_column = spec.get("id_column")
    group_column = spec.get("group_column")
    targets_csv = spec.get("targets_csv")
    if label_column is None and targets_csv is None:
        raise DatasetError(
            f"dataset '{spec['name']}': the manifest has neither a label column nor a targets_csv; "
            "set 'label_column' (categorical labels) or 'targets_csv' (arousal/valence)"
        )
    wanted = [c for c in (path_column, label_column, id_column, group_column) if c is not None]
    table = read_csv_table(csv_path, required=wanted)

    index = RawIndex(clips=pd.DataFrame())
    rows = []
    for position, row in enumerate(table.to_dict("records")):
        clip = _clip_from_row(row, position, csv_path, root, spec, index)
        if clip is not None:
            rows.append(clip)
    clips = pd.DataFrame(rows, columns=["clip_id", "path", "group", "label"])
    index.clips = clips
    if label_column is not None:
        index.classes = sorted(clips["label"].dropna().unique().tolist())
    if targets_csv is not None:
        index.targets = _read_targets(_under_root(root, targets_csv), clips, index)
    return index


def _clip_from_row(
    row: dict, position: int, csv_path: Path, root: Path, spec: dict, index: RawIndex
) -> dict | None:
    """One manifest row as a clip, or ``None`` (and a quarantine entry) when it cannot be one."""
    line = position + 2  # the header is line 1
    where = f"{csv_path.name} line {line}"
    raw_path = row[spec.get("path_column", "path")]
    id_column = spec.get("id_column")
    clip_id = row[id_column] if id_column else _id_from_path(raw_path)
    if pd.isna(clip_id):
        index.exclude(where, None, f"{where} has no clip id (column '{id_column}'); fill it in")
        return None
    if pd.isna(raw_path):
        index.exclude(clip_id, None, f"{where} has no audio path; fill in its path or remove it")
        return None
    path = Path(os.path.normpath(root / raw_path))
    if not spec.get("allow_outside_root") and not path.is_relative_to(os.path.normpath(root)):
        index.exclude(
            clip_id,
            str(path),
            f"{where}: path '{raw_path}' leads outside the dataset root {root}; move the file "
            "under the root, or set 'allow_outside_root: true' for this dataset",
        )
        return None
    label_column, group_column = spec.get("label_column", "label"), spec.get("group_column")
    group = row[group_column] if group_column else None
    return {
        "clip_id": clip_id,
        "path": str(path),
        "group": clip_id if pd.isna(group) else group,
        "label": row[label_column] if label_column else None,
    }


def _id_from_path(raw_path) -> str | None:
    if pd.isna(raw_path):
        return None
    return str(Path(raw_path).with_suffix("")).replace(os.sep, "/")


def _read_targets(path: Path, clips: pd.DataFrame, index: RawIndex) -> pd.DataFrame:
    """The targets CSV as numbers (a word stays a word: :func:`numbers_or_text`); rows of ids
    the manifest does not list are quarantined."""
    table = read_csv_table(path, required=list(TARGET_FILE_COLUMNS))
    targets = table[list(TARGET_FILE_COLUMNS)].copy()
    for column in ("t", "arousal", "valence"):
        targets[column] = numbers_or_text(targets[column])
    orphans = sorted(set(targets["clip_id"].dropna()) - set(clips["clip_id"]))
    for clip_id in orphans:
        index.exclude(
            clip_id,
            None,
            f"{path.name} has annotations for clip '{clip_id}' but the manifest has no such "
            "clip; add its audio to the manifest or remove the annotation rows",
        )
    return targets[targets["clip_id"].isin(clips["clip_id"])].reset_index(drop=True)


def _under_root(root: Path, name: str | os.PathLike) -> Path:
    path = Path(name)
    return path if path.is_absolute() else root / path


def read_csv_table(path: Path, required: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV as strings, stripped of the stray tabs and spaces real dataset files carry.

    Every cell is a string (ids such as ``007`` keep their zeros) or NaN when empty. The encoding
    is UTF-8 (with or without BOM), else Latin-1; a file with one column whose header holds tabs
    is re-read as tab-separated. ``required`` columns must exist: else a :class:`DatasetError`
    names the file, the missing columns and those present.
    """
    if not path.is_file():
        raise DatasetError(f"{path} not found; check the dataset root and the file name keys")
    table = _parse_csv(path, sep=",")
    if table.shape[1] == 1 and "\t" in str(table.columns[0]):
        table = _parse_csv(path, sep="\t")
    table.columns = [str(c).strip() for c in table.columns]
    table = table.apply(lambda column: column.str.strip())
    table = table.mask(table == "")
    require_columns(table, path, required or [])
    return table


def require_columns(table: pd.DataFrame, path: Path, columns: list[str]) -> None:
    """Raise a :class:`DatasetError` naming ``path``, the missing columns and those present."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{path}: no column {', '.join(map(repr, missing))}; its columns are "
            f"{list(table.columns)}. Set the column-name keys of this dataset to match"
        )


def _parse_csv(path: Path, sep: str) -> pd.DataFrame:
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return pd.read_csv(path, sep=sep, dtype=str, encoding=encoding, skipinitialspace=True)
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DatasetError(f"{path}: not a readable CSV ({exc}); repair or replace it") from exc
    raise AssertionError("latin-1 decodes any bytes")
