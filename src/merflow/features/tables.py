"""Feature tables on disk (docs/tables.md): their schema, metadata, shards and merge.

* windowed features: one row per clip and window -- ``clip_id``, ``t`` (window end, s), then one
  float32 column per feature; row groups of about :data:`ROW_GROUP_CLIPS` clips, so that reading
  one clip touches one small row group;
* frame-level features: one row per clip -- ``clip_id``, ``n_valid_frames`` (int32), and the
  ``(n_rows, n_frames)`` matrix as a fixed-size list of float32 in C order, in a column named
  after the feature;
* clip-level features: one row per clip -- ``clip_id``, then one float32 column per feature.

The metadata holds the resolved parameters, so a merge can refuse shards computed differently and
a reader never has to guess the shape or the column order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from merflow import __version__
from merflow.errors import DatasetError, MerflowError
from merflow.features.registry import columns, spec
from merflow.io import write_table
from merflow.tables import FEATURE_KINDS, metadata_of, read_table

ROW_GROUP_CLIPS = 50
# Metadata keys that must agree across the shards of one table (the version may differ harmlessly
# only if nothing else does; it is kept from the first shard).
_SHARD_INVARIANTS = ("feature", "params", "columns", "shape", "sample_rate", "window_s")


def feature_metadata(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The ``merflow`` metadata of a feature table (docs/tables.md)."""
    metadata: dict[str, Any] = {
        "feature": name,
        "kind": spec(name).kind,
        "params": params,
        "columns": columns(name, params),
        "sample_rate": params["sample_rate"],
        "merflow_version": __version__,
    }
    if spec(name).kind == "frames":
        metadata["shape"] = [len(metadata["columns"]), params["n_frames"]]
    elif spec(name).kind == "windows":
        metadata["window_s"] = params["window_s"]
    return metadata


def schema(name: str, params: dict[str, Any]) -> pa.Schema:
    names = columns(name, params)
    if spec(name).kind == "frames":
        size = len(names) * params["n_frames"]
        return pa.schema(
            [
                ("clip_id", pa.string()),
                ("n_valid_frames", pa.int32()),
                (name, pa.list_(pa.float32(), size)),
            ]
        )
    keys = [("clip_id", pa.string())] + (
        [("t", pa.float64())] if spec(name).kind == "windows" else []
    )
    return pa.schema(keys + [(c, pa.float32()) for c in names])


def windowed_table(
    name: str,
    params: dict[str, Any],
    clip_ids: Sequence[str],
    matrices: Sequence[np.ndarray],
    times: Sequence[np.ndarray],
) -> pa.Table:
    """One row per (clip, window) from per-clip ``(n_windows, n_columns)`` matrices."""
    target = schema(name, params)
    n_rows = [len(m) for m in matrices]
    stacked = (
        np.concatenate(matrices).astype(np.float32, copy=False)
        if matrices
        else np.empty((0, len(target) - 2), np.float32)
    )
    arrays = [
        pa.array(np.repeat(np.asarray(clip_ids, dtype=object), n_rows), pa.string()),
        pa.array(np.concatenate(times) if times else np.empty(0), pa.float64()),
        *(pa.array(stacked[:, j]) for j in range(stacked.shape[1])),
    ]
    return pa.Table.from_arrays(arrays, schema=target)


def clip_table(
    name: str, params: dict[str, Any], clip_ids: Sequence[str], vectors: Sequence[np.ndarray]
) -> pa.Table:
    """One row per clip from per-clip ``(1, n_columns)`` vectors."""
    target = schema(name, params)
    stacked = (
        np.concatenate(vectors).astype(np.float32, copy=False)
        if vectors
        else np.empty((0, len(target) - 1), np.float32)
    )
    arrays = [pa.array(list(clip_ids), pa.string())]
    arrays += [pa.array(stacked[:, j]) for j in range(stacked.shape[1])]
    return pa.Table.from_arrays(arrays, schema=target)


def frame_table(
    name: str,
    params: dict[str, Any],
    clip_ids: Sequence[str],
    matrices: Sequence[np.ndarray],
    n_valid_frames: Sequence[int],
) -> pa.Table:
    """One row per clip from per-clip fixed-size matrices."""
    target = schema(name, params)
    size = target.field(name).type.list_size
    flat = (
        np.concatenate([m.astype(np.float32, copy=False).ravel() for m in matrices])
        if matrices
        else np.empty(0, np.float32)
    )
    arrays = [
        pa.array(list(clip_ids), pa.string()),
        pa.array(np.asarray(n_valid_frames, dtype=np.int32), pa.int32()),
        pa.FixedSizeListArray.from_arrays(pa.array(flat), size),
    ]
    return pa.Table.from_arrays(arrays, schema=target)


def write_feature_table(
    table: pa.Table, path: str | os.PathLike, name: str, params: dict[str, Any]
) -> Path:
    """Write a feature table (or shard) atomically, sorted, with its metadata."""
    expected = schema(name, params)
    if not table.schema.equals(expected, check_metadata=False):
        raise MerflowError(
            f"{path}: table does not match the schema of feature '{name}' with these params "
            f"({table.num_columns} columns, expected {len(expected)}); it was built for other "
            "parameters"
        )
    return _write(table, path, feature_metadata(name, params))


def merge_shards(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> Path:
    """Concatenate shards of one feature table, sorted by ``clip_id`` (and ``t``).

    Shards must agree on feature, parameters, columns and shape, and no clip may appear in two
    shards: either would mean shards from different runs were mixed.
    """
    if not paths:
        raise MerflowError(f"{out_path}: no shards to merge")
    metadata = [metadata_of(p, FEATURE_KINDS) for p in paths]
    reference = metadata[0]
    for path, meta in zip(paths, metadata, strict=True):
        if "feature" not in meta:
            raise DatasetError(f"{path}: not a merflow feature table (no feature metadata)")
        differing = [k for k in _SHARD_INVARIANTS if meta.get(k) != reference.get(k)]
        if differing:
            raise DatasetError(
                f"{path}: its {', '.join(differing)} differ from those of {paths[0]}; the shards "
                "come from different runs. Delete the feature folder and re-run the stage."
            )
    tables = [read_table(p, FEATURE_KINDS) for p in paths]
    _check_disjoint(paths, tables)
    return _write(pa.concat_tables(tables), out_path, reference)


# --- helpers -----------------------------------------------------------------------------------


def _write(table: pa.Table, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    keys = [("clip_id", "ascending")] + ([("t", "ascending")] if "t" in table.column_names else [])
    table = table.sort_by(keys)
    n_clips = max(1, pc.count_distinct(table.column("clip_id")).as_py())
    rows_per_clip = max(1, -(-table.num_rows // n_clips))
    return write_table(table, path, metadata, row_group_size=ROW_GROUP_CLIPS * rows_per_clip)


def _check_disjoint(paths: Sequence[str | os.PathLike], tables: Sequence[pa.Table]) -> None:
    owner: dict[str, str | os.PathLike] = {}
    for path, table in zip(paths, tables, strict=True):
        for clip in pc.unique(table.column("clip_id")).to_pylist():
            if clip in owner:
                raise DatasetError(
                    f"clip '{clip}' is in two shards ({owner[clip]} and {path}); the shards "
                    "come from different clip tables. Re-run the feature stage."
                )
            owner[clip] = path
