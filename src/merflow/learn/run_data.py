"""What one run learns from: the training and validation parts of its split, read, z-scored
with training statistics, and fingerprinted.

z-score statistics are fitted on the training part only (:class:`~merflow.learn.data.ZScore`),
saved beside the model (``norm.npz``) and applied unchanged to validation, test and new audio.
Clips that cannot be used are never dropped silently: each is a problem with a reason, logged and
written to the run's quarantine table (:func:`write_problems`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from merflow.errors import ConfigError, DatasetError
from merflow.io import write_table
from merflow.learn import fusion
from merflow.learn.data import (
    FrameClips,
    WindowedClips,
    ZScore,
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
        fusion.check(config.model, config.fusion, config.features_path)
        zscore, names = ZScore.fit_vectors(train), list(meta.get("columns", []))
        zscore = fusion.with_selection(zscore, train.normalized(zscore), config.fusion, config.seed)
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


def data_fingerprint(data: RunData) -> dict[str, str]:
    """Digests of what a run learns from, one for each part that can change on its own: ``split``
    (the clips of the training and validation parts), ``features`` (their inputs) and ``labels``
    (their targets or classes). A checkpoint resumes only the data it was trained on."""
    digests = {name: hashlib.sha256() for name in ("split", "features", "labels")}
    for part in (data.train, data.val):
        digests["split"].update("\0".join(part.clip_ids).encode() + b"\1")
        if isinstance(part, WindowedClips):
            inputs, labels = [*part.times, *part.features], part.targets or []
        else:
            inputs, labels = [part.features, part.n_valid_frames], [part.labels]
        for name, arrays in (("features", inputs), ("labels", labels)):
            for array in arrays:
                digests[name].update(np.ascontiguousarray(array).data)
    return {name: digest.hexdigest() for name, digest in digests.items()}


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
