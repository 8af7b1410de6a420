"""The tables stages exchange (docs/tables.md): their schemas, and the one way to open them.

Every stage opens its input tables with :func:`open_table`, which checks that the file is there,
that it is Parquet, and that it is the table the stage expects (its columns), and otherwise
raises a :class:`~merflow.errors.DatasetError` that names the file, the table it should have
been and the stage that writes it: a damaged file or a wrong path never surfaces as a pyarrow
traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from merflow.errors import DatasetError
from merflow.io import METADATA_KEY

CLIPS_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("path", pa.string()),
        ("duration_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("channels", pa.int16()),
        ("group", pa.string()),
        ("label", pa.string()),
        ("fixed_split", pa.string()),
        ("shard", pa.int16()),
    ]
)
TARGETS_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("t", pa.float64()),
        ("arousal", pa.float32()),
        ("valence", pa.float32()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("path", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
    ]
)
FEATURE_KINDS = ("windows", "frames", "clip")
SPLIT_PARTS = ("train", "val", "test")  # the values of a split table's ``split`` column
SPLIT_SCHEMA = pa.schema([("clip_id", pa.string()), ("group", pa.string()), ("split", pa.string())])


@dataclass(frozen=True)
class TableKind:
    """A table of the contract: what it is called, the columns that identify it, its writer."""

    name: str
    columns: tuple[str, ...]
    writer: str


KINDS: dict[str, TableKind] = {
    "clips": TableKind("clips table", tuple(CLIPS_SCHEMA.names), "the index stage"),
    "targets": TableKind("targets table", tuple(TARGETS_SCHEMA.names), "the index stage"),
    "quarantine": TableKind("quarantine table", tuple(QUARANTINE_SCHEMA.names), "any stage"),
    "split": TableKind("split table", tuple(SPLIT_SCHEMA.names), "the splits stage"),
    "windows": TableKind("windowed feature table", ("clip_id", "t"), "the features stage"),
    "frames": TableKind(
        "frame-level feature table", ("clip_id", "n_valid_frames"), "the features stage"
    ),
    "clip": TableKind("clip-level feature table", ("clip_id",), "the features stage"),
    "regression_predictions": TableKind(
        "regression predictions table",
        ("clip_id", "t", "arousal_pred", "valence_pred"),
        "`merflow evaluate`",
    ),
    "class_predictions": TableKind(
        "class predictions table", ("clip_id", "label", "predicted"), "`merflow evaluate`"
    ),
}
PREDICTIONS = ("regression_predictions", "class_predictions")  # a run's, of its task


def open_table(
    path: str | os.PathLike, kind: str | tuple[str, ...], needed: Sequence[str] | None = None
) -> pq.ParquetFile:
    """``path`` opened as a table of ``kind`` (a key of :data:`KINDS`, or a tuple of keys any
    of which will do), or a DatasetError.

    The file must hold the ``needed`` columns (default: all of the kind's), and must not be
    another kind of table of the contract (a quarantine table given where clips are expected).
    """
    path = Path(path)
    kinds = [KINDS[k] for k in ((kind,) if isinstance(kind, str) else kind)]
    name, writer = " or ".join(k.name for k in kinds), kinds[0].writer
    if not path.is_file():
        raise DatasetError(f"{path}: {name} not found; run {writer} first")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(
            f"{path}: not a readable Parquet file ({_first_line(exc)}); expected the {name} that "
            f"{writer} writes. It is damaged or the path is wrong: re-run that stage (Snakemake "
            "re-runs it once the file is deleted)"
        ) from None
    names = parquet.schema_arrow.names
    problems = [_mismatch(names, k, kinds, needed) for k in kinds]
    if all(problems):
        raise DatasetError(
            f"{path}: not a {name}: {problems[0]}; give the {name} that {writer} writes "
            "(docs/tables.md)"
        )
    return parquet


def _mismatch(
    names: Sequence[str], kind: TableKind, accepted: list[TableKind], needed: Sequence[str] | None
) -> str:
    """Why columns ``names`` are not a table of ``kind`` ('' when they are)."""
    missing = [c for c in (kind.columns if needed is None else needed) if c not in names]
    other = _other_kind(names, kind, accepted)
    if not (missing or other):
        return ""
    lacks = f"it lacks column(s) {', '.join(missing)}" if missing else "its columns differ"
    return lacks + (f" (it looks like a {other.name})" if other else "")


def read_table(
    path: str | os.PathLike,
    kind: str | tuple[str, ...],
    columns: Sequence[str] | None = None,
    clip_ids: Iterable[str] | None = None,
    needed: Sequence[str] | None = None,
) -> pa.Table:
    """The rows of a ``kind`` table, ``columns`` only (default all), ``clip_ids`` only (default
    all); the file must hold ``needed`` (default ``columns``, else all of the kind's)."""
    open_table(path, kind, needed if needed is not None else columns)
    filters = None if clip_ids is None else clip_filter(clip_ids)
    try:
        return pq.read_table(path, columns=list(columns) if columns else None, filters=filters)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(
            f"{path}: the table is damaged ({_first_line(exc)}); re-run {_writer(kind)} to "
            "rewrite it"
        ) from None


def read_frame(
    path: str | os.PathLike,
    kind: str | tuple[str, ...],
    columns: Sequence[str] | None = None,
    clip_ids: Iterable[str] | None = None,
    needed: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`read_table` as pandas."""
    return read_table(path, kind, columns, clip_ids, needed).to_pandas()


def metadata_of(
    path: str | os.PathLike, kind: str | tuple[str, ...], needed: Sequence[str] | None = None
) -> dict[str, Any]:
    """The ``merflow`` metadata of a ``kind`` table ({} when it has none)."""
    raw = (open_table(path, kind, needed).schema_arrow.metadata or {}).get(METADATA_KEY)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise DatasetError(
            f"{path}: the table's metadata is garbled; re-run {_writer(kind)} to rewrite it"
        ) from None


def quarantine_table(entries: list[dict]) -> pa.Table:
    """Quarantine entries as the contract's table, sorted by clip id, path and reason."""
    frame = pd.DataFrame(entries, columns=QUARANTINE_SCHEMA.names)
    frame = frame.sort_values(["clip_id", "path", "reason"], na_position="first")
    return pa.Table.from_pandas(frame, schema=QUARANTINE_SCHEMA, preserve_index=False)


def clip_filter(clip_ids: Iterable[str]) -> pc.Expression:
    """A row filter keeping ``clip_ids``; typed, so that an empty list (a split without
    validation clips) selects nothing instead of failing to bind a null-typed array."""
    return pc.field("clip_id").isin(pa.array(list(clip_ids), type=pa.string()))


def _other_kind(
    columns: Sequence[str], expected: TableKind, accepted: list[TableKind]
) -> TableKind | None:
    """Another kind of table that ``columns`` identify more closely than ``expected``'s (a
    quarantine table's columns, given for a clips table), if any; a kind told by ``clip_id``
    alone (clip-level features) tells nothing."""
    present = set(columns)
    fit = len(expected.columns) if set(expected.columns) <= present else 0
    closer = [
        k
        for k in KINDS.values()
        if k not in accepted and len(k.columns) > max(fit, 1) and set(k.columns) <= present
    ]
    return max(closer, key=lambda k: len(k.columns), default=None)


def _writer(kind: str | tuple[str, ...]) -> str:
    return KINDS[kind if isinstance(kind, str) else kind[0]].writer


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
