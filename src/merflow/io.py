"""Atomic, compact table and JSON I/O: the one place that decides how files are written.

Every writer goes through :func:`atomic_path`: data lands in a temporary file in a hidden folder
beside the target and is renamed only when complete, so a killed job never leaves a half-written
file that looks whole. Parquet follows the measured settings in docs/facts.md: zstd, dictionary
encoding only for id columns, byte-stream-split for float columns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"merflow"
ID_COLUMNS = ("clip_id", "group", "label", "path", "split", "stage", "reason", "fixed_split")
STAGING_SUFFIX = ".part"  # of the hidden folders writers stage their files in


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file bears ``path``'s own name, in a new hidden folder ``.<random>.part``
    beside it: a temporary name is never longer than the name it stands for (a name at the file
    system's limit stays writable), and a writer sees the true suffix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(path.parent, path.name)
    with _staging_folder(path.parent) as staging:
        tmp = staging / path.name
        tmp.touch()  # with the usual permissions, which the renamed file keeps
        yield tmp
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new folder for ``path``; it replaces ``path`` if the block succeeds.

    A folder cannot be renamed onto a non-empty one, so an old ``path`` is first moved aside:
    at no moment does ``path`` hold a mix of old and new files, or half of the new ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(path.parent, path.name)
    with _staging_folder(path.parent) as staging:
        tmp = staging / path.name
        tmp.mkdir()  # not mkdtemp: its 0700 mode would stay on the final folder
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
            return
        with _staging_folder(path.parent) as aside:
            os.replace(path, aside / path.name)
            os.replace(tmp, path)


@contextlib.contextmanager
def _staging_folder(parent: Path) -> Iterator[Path]:
    """A new hidden folder in ``parent``, removed on exit with whatever is left in it."""
    folder = Path(tempfile.mkdtemp(prefix=".", suffix=STAGING_SUFFIX, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_debris(folder: str | os.PathLike, name: str = "") -> None:
    """Remove what killed writers left in ``folder``: the staging folders of :func:`atomic_path`
    and :func:`atomic_dir` (those holding ``name`` only, if given), and the ``.<name>.<random>
    .part`` and ``.old`` leftovers of older merflow versions. Called when a file is written
    again, and by a stage when it starts on a folder it owns; a target has one writer at a time,
    so no live temporary is touched."""
    for stale in Path(folder).glob(".*"):
        if stale.suffix not in (STAGING_SUFFIX, ".old"):
            continue
        if name and not (stale.name.startswith(f".{name}.") or os.path.lexists(stale / name)):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _float_columns(table: pa.Table) -> list[str]:
    return [
        f.name
        for f in table.schema
        if pa.types.is_floating(f.type)
        or (pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type))
        and pa.types.is_floating(f.type.value_type)
    ]


def write_table(
    table: pa.Table | pd.DataFrame,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    row_group_size: int | None = None,
) -> Path:
    """Write a Parquet file atomically; ``metadata`` is stored as JSON under the key ``merflow``."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta.pop(b"pandas", None)
    if metadata is not None:
        schema_meta[METADATA_KEY] = json.dumps(metadata, sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    dictionary_columns = [c for c in table.column_names if c in ID_COLUMNS]
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            use_dictionary=dictionary_columns,
            column_encoding={c: "BYTE_STREAM_SPLIT" for c in _float_columns(table)},
            row_group_size=row_group_size,
        )
    return Path(path)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_table` into pandas."""
    return pq.read_table(path, columns=columns).to_pandas()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``merflow`` metadata dictionary of a Parquet file ({} when there is none)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically, sorted and indented so that diffs and checksums are stable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
