"""From feature tables to arrays a model can learn from: the clips of a split part, aligned, and
their z-scoring.

Everything here is numpy: each table is read once with pyarrow (filtered to the clips asked for),
turned into per-clip arrays, and handed to training or evaluation, which move it to torch.

* Windowed features (Malik) meet their 500 ms targets by an inner join on ``(clip_id, t)``; ``t``
  is compared in whole microseconds so that two writers' float round-off cannot break the join.
  A clip whose targets do not all find a feature window is reported (never silently dropped):
  :func:`load_windowed` returns the list of such problems beside the data, for the caller to log
  and write to the run's quarantine table.
* Frame-level features (Velankar) come with the clip's class index from the clips table.

z-scoring (:class:`ZScore`) is fitted on the training part by :mod:`merflow.learn.run_data`;
cutting songs into sequences is :mod:`merflow.learn.sequences`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from merflow import runs, tables
from merflow.errors import DatasetError
from merflow.io import atomic_path

TARGET_NAMES = ("arousal", "valence")
_KEY_COLUMNS = ("clip_id", "t")
_MICROSECONDS = 1_000_000
_MIN_STD = 1e-8  # below this a feature is constant in training: centre it, do not scale it


# --- splits ------------------------------------------------------------------------------------


def feature_kind(path: str | os.PathLike) -> str:
    """``windows``, ``frames`` or ``clip``: the kind of a feature table, told by its metadata."""
    meta = tables.metadata_of(path, tables.FEATURE_KINDS)
    if meta.get("kind") in tables.FEATURE_KINDS:
        return meta["kind"]
    if "shape" in meta:
        return "frames"
    if "window_s" in meta:
        return "windows"
    raise DatasetError(
        f"{path}: a feature table without 'shape' or 'window_s' in its metadata; re-run the "
        "features stage to rewrite it"
    )


def read_split(path: str | os.PathLike) -> dict[str, list[str]]:
    """The clip ids of each part (train/val/test) of a split table ``(clip_id, group, split)``."""
    frame = tables.read_frame(path, "split", ["clip_id", "split"])
    unknown = sorted(set(frame["split"]) - set(tables.SPLIT_PARTS))
    if unknown:
        raise DatasetError(
            f"{path}: unknown split value(s) {unknown}; allowed: {tables.SPLIT_PARTS}"
        )
    duplicated = frame["clip_id"][frame["clip_id"].duplicated()].unique().tolist()
    if duplicated:
        raise DatasetError(
            f"{path}: clip(s) {duplicated[:5]} appear more than once; a clip belongs to one part. "
            "Re-run the splits stage."
        )
    return {
        name: frame.loc[frame["split"] == name, "clip_id"].tolist() for name in tables.SPLIT_PARTS
    }


# --- windowed features + targets -----------------------------------------------------------------


@dataclass
class WindowedClips:
    """Per-clip arrays of a windowed feature table, aligned with the targets where given."""

    clip_ids: list[str]
    times: list[np.ndarray]  # (T_i,) float64: window end times
    features: list[np.ndarray]  # (T_i, F) float32
    targets: list[np.ndarray] | None  # (T_i, 2) float32: arousal, valence
    feature_names: list[str]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_windows(self) -> int:
        return sum(len(t) for t in self.times)

    def select(self, clip_ids: Iterable[str]) -> WindowedClips:
        """The clips in ``clip_ids`` that are present here, in this object's order."""
        wanted = set(clip_ids)
        keep = [i for i, c in enumerate(self.clip_ids) if c in wanted]
        return WindowedClips(
            [self.clip_ids[i] for i in keep],
            [self.times[i] for i in keep],
            [self.features[i] for i in keep],
            None if self.targets is None else [self.targets[i] for i in keep],
            self.feature_names,
        )

    def normalized(self, zscore: ZScore) -> WindowedClips:
        features = [zscore.apply(x) for x in self.features]
        return WindowedClips(self.clip_ids, self.times, features, self.targets, self.feature_names)


def load_windowed(
    features_path: str | os.PathLike,
    clip_ids: Sequence[str],
    targets_path: str | os.PathLike | None = None,
) -> tuple[WindowedClips, list[dict]]:
    """Read the windows of ``clip_ids`` and (optionally) align them with their targets.

    Returns the data and a list of problems, one dict per clip (``clip_id``, ``reason``, ``kept``):
    clips without feature rows or without any matching target are left out (``kept`` False);
    clips where only some target times find a feature window keep the matched windows (``kept``
    True). Feature windows without a target (e.g. DEAM's unannotated first 15 s) are not problems:
    the model learns and is scored where there are labels.
    """
    features_path = Path(features_path)
    keys, matrix, names = _read_window_table(features_path, clip_ids)
    problems = [
        {
            "clip_id": c,
            "kept": False,
            "reason": f"no rows in {features_path.name}; was it quarantined at the features "
            "stage? (see the dataset's quarantine.parquet)",
        }
        for c in sorted(set(clip_ids) - set(keys["clip_id"]))
    ]
    if targets_path is None:
        return _split_by_clip(keys, matrix, None, names), problems

    targets = _read_targets(Path(targets_path), clip_ids)
    joined = keys.reset_index(names="row").merge(targets, on=["clip_id", "t_us"], how="inner")
    joined = joined.sort_values(["clip_id", "t_us"], kind="stable", ignore_index=True)
    problems += _alignment_problems(keys, targets, joined, Path(targets_path).name)
    values = joined[list(TARGET_NAMES)].to_numpy(np.float32)
    data = _split_by_clip(joined, matrix[joined["row"].to_numpy()], values, names)
    return data, sorted(problems, key=lambda p: p["clip_id"])


def _read_window_table(
    path: Path, clip_ids: Sequence[str]
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    schema = tables.open_table(path, "windows").schema_arrow
    names = tables.metadata_of(path, "windows").get("columns") or [
        n for n in schema.names if n not in _KEY_COLUMNS
    ]
    table = tables.read_table(path, "windows", [*_KEY_COLUMNS, *names], clip_ids)
    keys = pd.DataFrame(
        {
            "clip_id": table.column("clip_id").to_numpy(zero_copy_only=False).astype(str),
            "t": table.column("t").to_numpy(),
        }
    )
    keys["t_us"] = _time_key(keys["t"].to_numpy())
    matrix = _float_matrix(table, names)
    _check_finite(path, keys, matrix, names)
    order = np.lexsort((keys["t_us"].to_numpy(), keys["clip_id"].to_numpy()))
    keys, matrix = keys.iloc[order].reset_index(drop=True), matrix[order]
    _check_unique_keys(path, keys)
    return keys, matrix, list(names)


def _float_matrix(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    matrix = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        matrix[:, j] = table.column(name).to_numpy()
    return matrix


def _time_key(t: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(t, dtype=np.float64) * _MICROSECONDS).astype(np.int64)


def _check_finite(path: Path, keys: pd.DataFrame, matrix: np.ndarray, names: list[str]) -> None:
    bad_rows, bad_cols = np.nonzero(~np.isfinite(matrix))
    if len(bad_rows):
        clips = sorted(set(keys["clip_id"].iloc[bad_rows]))
        columns = sorted({names[j] for j in bad_cols})
        raise DatasetError(
            f"{path}: NaN or infinite values in clip(s) {clips[:5]} (column(s) {columns[:5]}); "
            "the features stage should have quarantined them. Re-extract those clips."
        )


def _check_unique_keys(path: Path, keys: pd.DataFrame) -> None:
    duplicated = keys.duplicated(["clip_id", "t_us"])
    if duplicated.any():
        first = keys[duplicated].iloc[0]
        raise DatasetError(
            f"{path}: {int(duplicated.sum())} duplicated (clip_id, t) rows, e.g. "
            f"({first['clip_id']}, {first['t']}); each window must appear once: re-merge the "
            "shards."
        )


def _read_targets(path: Path, clip_ids: Sequence[str]) -> pd.DataFrame:
    targets = tables.read_frame(path, "targets", ["clip_id", "t", *TARGET_NAMES], clip_ids)
    targets["clip_id"] = targets["clip_id"].astype(str)
    targets["t_us"] = _time_key(targets["t"].to_numpy())
    targets = targets.drop(columns="t")
    _check_unique_keys(path, targets.assign(t=targets["t_us"] / _MICROSECONDS))
    if not np.isfinite(targets[list(TARGET_NAMES)].to_numpy()).all():
        clips = sorted(set(targets.loc[targets[list(TARGET_NAMES)].isna().any(axis=1), "clip_id"]))
        raise DatasetError(f"{path}: missing arousal/valence values for clip(s) {clips[:5]}")
    return targets


def _alignment_problems(
    keys: pd.DataFrame, targets: pd.DataFrame, joined: pd.DataFrame, targets_name: str
) -> list[dict]:
    n_targets = targets.groupby("clip_id").size()
    n_matched = joined.groupby("clip_id").size()
    have_features = set(keys["clip_id"])
    problems = []
    for clip in sorted(have_features):
        total, matched = int(n_targets.get(clip, 0)), int(n_matched.get(clip, 0))
        if total == 0:
            reason = f"no rows in {targets_name}: the clip has no time-continuous labels"
        elif matched == 0:
            reason = (
                f"none of its {total} target times matches a feature window; check the 500 ms "
                "window convention (docs/tables.md) of both tables"
            )
        elif matched < total:
            reason = (
                f"{total - matched} of {total} target times have no feature window (the audio "
                "is shorter than its annotations?); the matched windows are kept"
            )
        else:
            continue
        problems.append({"clip_id": clip, "kept": matched > 0, "reason": reason})
    return problems


def _split_by_clip(
    keys: pd.DataFrame, matrix: np.ndarray, targets: np.ndarray | None, names: list[str]
) -> WindowedClips:
    clip_column = keys["clip_id"].to_numpy()
    if not len(clip_column):
        return WindowedClips([], [], [], None if targets is None else [], names)
    starts = np.flatnonzero(np.r_[True, clip_column[1:] != clip_column[:-1]])
    bounds = starts[1:]
    return WindowedClips(
        clip_ids=[str(clip_column[s]) for s in starts],
        times=np.split(keys["t_us"].to_numpy() / _MICROSECONDS, bounds),
        features=np.split(matrix, bounds),
        targets=None if targets is None else np.split(targets, bounds),
        feature_names=names,
    )


# --- frame-level features + labels -------------------------------------------------------------


@dataclass
class FrameClips:
    """Fixed-size log-mel matrices of whole clips with their class indices."""

    clip_ids: list[str]
    features: np.ndarray  # (N, n_mels, n_frames) float32
    n_valid_frames: np.ndarray  # (N,) int: frames taken from audio before padding
    labels: np.ndarray  # (N,) int64 index into ``classes``
    classes: list[str]

    def select(self, clip_ids: Iterable[str]) -> FrameClips:
        wanted = set(clip_ids)
        return self.take([i for i, c in enumerate(self.clip_ids) if c in wanted])

    def take(self, rows: Sequence[int]) -> FrameClips:
        """The clips at positions ``rows``, in that order."""
        keep = np.asarray(rows, dtype=np.int64)
        return type(self)(
            [self.clip_ids[i] for i in keep],
            self.features[keep],
            self.n_valid_frames[keep],
            self.labels[keep],
            self.classes,
        )

    def normalized(self, zscore: ZScore) -> FrameClips:
        return FrameClips(
            self.clip_ids,
            zscore.apply(self.features),
            self.n_valid_frames,
            self.labels,
            self.classes,
        )


class ClipVectors(FrameClips):
    """One feature vector per clip (a clip-level feature), with the clip's class index:
    ``features`` is ``(N, D)``; every clip is one valid "frame" (``n_valid_frames`` all 1)."""

    def normalized(self, zscore: ZScore) -> ClipVectors:
        return ClipVectors(**vars(super().normalized(zscore)))


def load_frames(
    features_path: str | os.PathLike, clips_path: str | os.PathLike, clip_ids: Sequence[str]
) -> tuple[FrameClips, list[dict]]:
    """Read the log-mel matrices of ``clip_ids`` and their labels from the clips table.

    Returns the data and the problems (clips without feature rows or without a label), as
    :func:`load_windowed` does.
    """
    features_path = Path(features_path)
    meta = tables.metadata_of(features_path, "frames")
    shape, column = meta.get("shape"), meta.get("feature", "logmel")  # the matrix column
    if not shape or len(shape) != 2:
        raise DatasetError(
            f"{features_path}: metadata lacks 'shape' [n_mels, n_frames]; is this a frame-level "
            "feature table (docs/tables.md)?"
        )
    table = tables.read_table(
        features_path, "frames", ["clip_id", "n_valid_frames", column], clip_ids
    )
    matrices = _fixed_size_values(table.column(column)).reshape(table.num_rows, *shape)
    n_valid = table.column("n_valid_frames").to_numpy().astype(np.int64)
    return _labelled(FrameClips, features_path, clips_path, clip_ids, table, matrices, n_valid)


def load_vectors(
    features_path: str | os.PathLike, clips_path: str | os.PathLike, clip_ids: Sequence[str]
) -> tuple[ClipVectors, list[dict]]:
    """Read the clip-level vectors of ``clip_ids`` and their labels, as :func:`load_frames`."""
    features_path = Path(features_path)
    names = tables.metadata_of(features_path, "clip").get("columns")
    table = tables.read_table(features_path, "clip", ["clip_id", *names], clip_ids)
    vectors = _float_matrix(table, names)
    n_valid = np.ones(table.num_rows, dtype=np.int64)
    return _labelled(ClipVectors, features_path, clips_path, clip_ids, table, vectors, n_valid)


def _labelled(kind, features_path: Path, clips_path, clip_ids, table, values, n_valid):
    """The clips of ``table`` that have a label, sorted by id, as ``kind``; and the problems."""
    clips_path = Path(clips_path)
    ids = table.column("clip_id").to_numpy(zero_copy_only=False).astype(str)
    classes, labels_by_clip = _read_labels(clips_path, clip_ids)
    problems = [
        {
            "clip_id": c,
            "kept": False,
            "reason": f"no row in {features_path.name}; quarantined at "
            "the features stage? (see the dataset's quarantine.parquet)",
        }
        for c in sorted(set(clip_ids) - set(ids))
    ]
    problems += [
        {"clip_id": c, "kept": False, "reason": f"no label in {clips_path.name}"}
        for c in sorted(c for c in ids if c not in labels_by_clip)
    ]
    order = [i for i in np.argsort(ids, kind="stable") if ids[i] in labels_by_clip]
    data = kind(
        clip_ids=[str(ids[i]) for i in order],
        features=np.ascontiguousarray(values[order], dtype=np.float32),
        n_valid_frames=n_valid[order],
        labels=np.array([labels_by_clip[ids[i]] for i in order], dtype=np.int64),
        classes=classes,
    )
    finite = np.isfinite(data.features).all(axis=tuple(range(1, data.features.ndim)))
    if not finite.all():
        bad = [data.clip_ids[i] for i in np.flatnonzero(~finite)]
        raise DatasetError(f"{features_path}: NaN or infinite values in clip(s) {bad[:5]}")
    return data, problems


def _fixed_size_values(column: pa.ChunkedArray) -> np.ndarray:
    chunks = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32)


def _read_labels(clips_path: Path, clip_ids: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    classes = tables.metadata_of(clips_path, "clips", ("clip_id", "label")).get("classes")
    if not classes:
        raise DatasetError(
            f"{clips_path}: metadata has no 'classes'; a classification model needs a dataset "
            "with categorical labels"
        )
    clips = tables.read_frame(clips_path, "clips", ["clip_id", "label"], clip_ids)
    clips = clips.dropna(subset=["label"])
    unknown = sorted(set(clips["label"]) - set(classes))
    if unknown:
        raise DatasetError(
            f"{clips_path}: label(s) {unknown} are not among the classes {classes} in its metadata"
        )
    index = {name: i for i, name in enumerate(classes)}
    return list(classes), {
        str(c): index[lab] for c, lab in zip(clips["clip_id"], clips["label"], strict=True)
    }


# --- z-scoring -----------------------------------------------------------------------------------


@dataclass
class ZScore:
    """Per-feature mean and standard deviation, fitted on training data only.

    ``axis`` is where the features sit: -1 for windows ``(..., F)``, -2 for log-mel matrices
    ``(..., n_mels, n_frames)`` (one statistic per mel band over all frames).
    """

    mean: np.ndarray
    std: np.ndarray
    axis: int = -1
    keep: np.ndarray | None = None  # clip vectors: the columns kept (fused views' selection)

    @classmethod
    def fit_windows(cls, clips: WindowedClips) -> ZScore:
        if not clips.features:
            raise DatasetError("cannot fit z-score statistics: the training split has no windows")
        stacked = np.concatenate(clips.features)
        return cls._from_moments(
            stacked.mean(0, dtype=np.float64), stacked.std(0, dtype=np.float64)
        )

    @classmethod
    def fit_vectors(cls, clips: ClipVectors) -> ZScore:
        """Column statistics over the training clips' vectors."""
        if not len(clips.clip_ids):
            raise DatasetError("cannot fit z-score statistics: the training split has no clips")
        x = clips.features
        return cls._from_moments(x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64))

    @classmethod
    def fit_frames(cls, clips: FrameClips) -> ZScore:
        """Band statistics over the valid (audio, not padding) frames of every training clip."""
        if not len(clips.clip_ids):
            raise DatasetError("cannot fit z-score statistics: the training split has no clips")
        valid = [
            x[:, : max(int(n), 1)]
            for x, n in zip(clips.features, clips.n_valid_frames, strict=True)
        ]
        total = sum(v.shape[1] for v in valid)
        mean = sum(v.sum(1, dtype=np.float64) for v in valid) / total
        var = sum(((v - mean[:, None]) ** 2).sum(1) for v in valid) / total
        return cls._from_moments(mean, np.sqrt(var), axis=-2)

    @classmethod
    def _from_moments(cls, mean: np.ndarray, std: np.ndarray, axis: int = -1) -> ZScore:
        std = np.where(std < _MIN_STD, 1.0, std)
        return cls(mean.astype(np.float32), std.astype(np.float32), axis)

    def apply(self, x: np.ndarray) -> np.ndarray:
        shape = (-1,) if self.axis == -1 else (-1, 1)
        z = ((x - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)
        return z if self.keep is None else z[..., self.keep]

    def save(self, path: str | os.PathLike, feature_names: Sequence[str] = ()) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                mean=self.mean,
                std=self.std,
                axis=np.int64(self.axis),
                feature_names=np.array(list(feature_names), dtype=str),
                **({} if self.keep is None else {"keep": self.keep}),
            )

    @classmethod
    def load(cls, path: str | os.PathLike, fix: str = runs.RETRAIN) -> ZScore:
        stored = runs.load_arrays(path, fix)
        try:
            return cls(stored["mean"], stored["std"], int(stored["axis"]), stored.get("keep"))
        except (KeyError, TypeError, ValueError) as exc:
            raise runs.damaged(Path(path), exc, fix) from None
