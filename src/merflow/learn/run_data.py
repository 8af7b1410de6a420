"""What one run learns from: the training and validation parts of its split, read, z-scored
with training statistics, and fingerprinted.

z-score statistics are fitted on the training part only (:class:`ZScore`), saved beside the model
(``norm.npz``) and applied unchanged to validation, test and new audio. Clips that cannot be used
are never dropped silently: each is a problem with a reason, logged and written to the run's
quarantine table (:func:`write_problems`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from merflow import runs
from merflow.errors import ConfigError, DatasetError
from merflow.io import atomic_path, write_table
from merflow.learn.data import (
    ClipVectors,
    FrameClips,
    WindowedClips,
    feature_kind,
    load_frames,
    load_vectors,
    load_windowed,
    read_split,
)
from merflow.learn.recipes import TrainConfig
from merflow.models.registry import ModelSpec
from merflow.models.registry import spec as model_spec
from merflow.tables import FEATURE_KINDS, metadata_of

log = logging.getLogger(__name__)
_MIN_STD = 1e-8  # below this a feature is constant in training: centre it, do not scale it


@dataclass
class ZScore:
    """Per-feature mean and standard deviation, fitted on training data only.

    ``axis`` is where the features sit: -1 for windows ``(..., F)``, -2 for log-mel matrices
    ``(..., n_mels, n_frames)`` (one statistic per mel band over all frames).
    """

    mean: np.ndarray
    std: np.ndarray
    axis: int = -1

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
        return ((x - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)

    def save(self, path: str | os.PathLike, feature_names: Sequence[str] = ()) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                mean=self.mean,
                std=self.std,
                axis=np.int64(self.axis),
                feature_names=np.array(list(feature_names), dtype=str),
            )

    @classmethod
    def load(cls, path: str | os.PathLike, fix: str = runs.RETRAIN) -> ZScore:
        stored = runs.load_arrays(path, fix)
        try:
            return cls(stored["mean"], stored["std"], int(stored["axis"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise runs.damaged(Path(path), exc, fix) from None


@dataclass
class RunData:
    """The normalized training and validation parts of a run, and what had to be left out."""

    model: ModelSpec
    input: str  # the feature's kind: "windows" | "frames" | "clip"
    feature: str
    train: WindowedClips | FrameClips
    val: WindowedClips | FrameClips
    zscore: ZScore
    feature_names: list[str]
    problems: list[dict]


def load_part(
    config: TrainConfig, clip_ids: Sequence[str]
) -> tuple[WindowedClips | FrameClips, list[dict]]:
    """The clips ``clip_ids`` of the run's feature table, with targets or labels."""
    model, kind = model_spec(config.model), feature_kind(config.features_path)
    if kind not in model.inputs:
        raise ConfigError(
            f"model {model.name} learns from {' or '.join(model.inputs)} features, but "
            f"{config.features_path} holds {kind} features"
        )
    if kind == "windows":
        if model.task == "regression" and not config.targets_path:
            raise ConfigError(f"model {config.model} learns arousal/valence: give targets_path")
        return load_windowed(config.features_path, clip_ids, config.targets_path)
    if kind == "clip":
        return load_vectors(config.features_path, config.clips_path, clip_ids)
    return load_frames(config.features_path, config.clips_path, clip_ids)


def prepare_data(config: TrainConfig) -> RunData:
    """Read the train and val parts, fit z-scores on train, normalize both."""
    parts = read_split(config.split_path)
    if not parts["train"]:
        raise DatasetError(f"{config.split_path}: the split has no training clips")
    train, problems = load_part(config, parts["train"])
    val, val_problems = load_part(config, parts["val"])
    if not train.clip_ids:
        raise DatasetError(
            f"none of the {len(parts['train'])} training clips of {config.split_path} could be "
            f"used with {config.features_path}; see the problems logged above"
        )
    kind = feature_kind(config.features_path)
    meta = metadata_of(config.features_path, FEATURE_KINDS)
    if kind == "windows":
        zscore, names = ZScore.fit_windows(train), train.feature_names
    elif kind == "clip":
        zscore, names = ZScore.fit_vectors(train), list(meta.get("columns", []))
    else:
        zscore, names = ZScore.fit_frames(train), []
    return RunData(
        model=model_spec(config.model),
        input=kind,
        feature=meta.get("feature") or Path(config.features_path).stem,
        train=train.normalized(zscore),
        val=val.normalized(zscore),
        zscore=zscore,
        feature_names=names,
        problems=[{**p, "split": "train"} for p in problems]
        + [{**p, "split": "val"} for p in val_problems],
    )


def data_fingerprint(data: RunData) -> str:
    """A digest of what a run learns from (the clips, inputs and labels of its training and
    validation parts): a checkpoint resumes only the data it was trained on."""
    digest = hashlib.sha256()
    for part in (data.train, data.val):
        digest.update("\0".join(part.clip_ids).encode())
        if isinstance(part, WindowedClips):
            arrays = [*part.times, *part.features, *(part.targets or [])]
        else:
            arrays = [part.features, part.n_valid_frames, part.labels]
        for array in arrays:
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def write_problems(path: Path, problems: list[dict], stage: str) -> None:
    """Log each unusable clip and write them in the quarantine layout (docs/tables.md)."""
    rows = []
    for p in problems:
        note = "" if not p.get("kept") else " (clip kept)"
        split = f"[{p['split']}] " if "split" in p else ""
        log.warning("clip %s: %s%s%s", p["clip_id"], split, p["reason"], note)
        rows.append(
            {"clip_id": p["clip_id"], "path": None, "stage": stage, "reason": split + p["reason"]}
        )
    frame = pd.DataFrame(rows, columns=["clip_id", "path", "stage", "reason"]).astype("string")
    write_table(frame, path)
