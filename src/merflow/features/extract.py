"""The feature stage over one shard of the clips table: decode once, compute every feature.

:func:`extract_features` decodes each clip once per sample rate asked for (one decode when all
features share the rate, as by default) and computes every requested feature from the same
samples, sharing STFTs between the log-mel features (:class:`~merflow.features.clip.DecodedClip`).
:func:`extract_shard` is the one-feature case the CLI and the Snakemake rules call.

A clip that cannot be decoded, or whose features come out NaN or infinite, raises
:class:`~merflow.errors.AudioError`; with ``on_bad_audio="quarantine"`` it becomes a quarantine
row ``{clip_id, path, stage: "features", reason}`` and is left out of *every* feature table of the
shard (so all feature tables hold the same clips), with ``"fail"`` the error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from merflow import audio
from merflow.errors import AudioError, ConfigError, DatasetError
from merflow.features.clip import DecodedClip
from merflow.features.registry import resolve_params, spec
from merflow.features.tables import clip_table, frame_table, windowed_table
from merflow.features.windows import window_end_times

log = logging.getLogger(__name__)

ON_BAD_AUDIO = ("quarantine", "fail")
TRUNCATION_TOLERANCE_S = 1.0
FAIL_HINT = (
    "Fix or remove the file, or set on_bad_audio: quarantine to leave such clips out (they are "
    "then listed in features/<feature>.quarantine.parquet)"
)


@dataclass
class _Collected:
    """Per-clip results of one feature, in clip order, until they become one table."""

    clip_ids: list[str] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)
    extras: list[Any] = field(default_factory=list)  # window times, or n_valid_frames


def extract_features(
    clips: pd.DataFrame,
    params_by_name: Mapping[str, Mapping[str, Any]],
    *,
    on_bad_audio: str = "quarantine",
    progress: bool = False,
) -> tuple[dict[str, pa.Table], list[dict]]:
    """Compute several features for the clips of a shard from one decode per clip.

    ``clips`` needs ``clip_id`` and ``path`` columns. Returns one table per feature (in the
    layout of docs/tables.md, ready for :func:`~merflow.features.tables.write_feature_table`)
    and the quarantine rows of the clips left out.
    """
    if on_bad_audio not in ON_BAD_AUDIO:
        raise ConfigError(f"on_bad_audio = {on_bad_audio!r}; expected one of {ON_BAD_AUDIO}")
    _check_clips(clips)
    params = {name: resolve_params(name, p) for name, p in params_by_name.items()}
    collected = {name: _Collected() for name in params}
    quarantined: list[dict] = []
    for clip_id, path, indexed_s in _iterate(clips, progress, ", ".join(params)):
        try:
            results = compute_all(path, params, indexed_s=indexed_s)
        except AudioError as exc:
            if on_bad_audio == "fail":
                raise AudioError(exc.path, f"{exc.reason}. {FAIL_HINT}") from exc
            log.warning("quarantined %s: %s", clip_id, exc)
            quarantined.append(
                {"clip_id": clip_id, "path": path, "stage": "features", "reason": exc.reason}
            )
            continue
        for name, (matrix, extra) in results.items():
            collected[name].clip_ids.append(clip_id)
            collected[name].matrices.append(matrix)
            collected[name].extras.append(extra)
    tables = {name: _to_table(name, params[name], collected[name]) for name in params}
    return tables, quarantined


def extract_shard(
    clips: pd.DataFrame,
    name: str,
    params: Mapping[str, Any],
    *,
    on_bad_audio: str = "quarantine",
    progress: bool = False,
) -> tuple[pa.Table, list[dict]]:
    """One feature for the clips of a shard: :func:`extract_features` with a single feature."""
    tables, quarantined = extract_features(
        clips, {name: params}, on_bad_audio=on_bad_audio, progress=progress
    )
    return tables[name], quarantined


def compute_all(
    path: str, params: Mapping[str, dict[str, Any]], *, indexed_s: float | None = None
) -> dict[str, tuple[np.ndarray, Any]]:
    """Decode ``path`` once per sample rate and compute each feature: ``{name: (matrix, extra)}``.

    ``extra`` is the window end times for windowed features, ``n_valid_frames`` for frame-level
    ones and None for clip-level ones. Raises AudioError for undecodable audio, for audio that
    decodes more than a second shorter than the ``indexed_s`` seconds its header promised at the
    index stage (the file was cut or replaced since), and for non-finite feature values.
    """
    rates = sorted({p["sample_rate"] for p in params.values()})
    decoded = {rate: DecodedClip(audio.load(path, rate), rate) for rate in rates}
    if indexed_s is not None and rates:
        _check_length(path, decoded[rates[0]].duration_s, indexed_s)
    results = {}
    for name, feature_params in params.items():
        clip = decoded[feature_params["sample_rate"]]
        feature = spec(name)
        try:
            matrix = feature.compute(clip, feature_params)
        except Exception as exc:  # a bug or a library failure: say which clip triggered it
            exc.add_note(f"while computing feature '{name}' of {path}")
            raise
        if not np.isfinite(matrix).all():
            raise AudioError(
                path,
                f"feature '{name}' comes out NaN or infinite; listen to the file: is it "
                "corrupt or full of invalid samples?",
            )
        if feature.kind == "windows":
            extra = window_end_times(len(matrix), feature_params["window_s"])
        elif feature.kind == "frames":
            extra = feature.valid_frames(len(clip.signal), feature_params)
        else:
            extra = None
        results[name] = (matrix, extra)
    return results


def _check_length(path: str, decoded_s: float, indexed_s: float) -> None:
    # The index stage lets a cut within the last second pass (audio.probe_clip).
    if decoded_s < indexed_s - TRUNCATION_TOLERANCE_S:
        raise AudioError(
            path,
            f"decodes to {decoded_s:.2f} s but its header promised {indexed_s:.2f} s at the "
            "index stage: the file was cut or replaced since; re-download it and index again",
        )


def _check_clips(clips: pd.DataFrame) -> None:
    missing = [c for c in ("clip_id", "path") if c not in clips.columns]
    if missing:
        raise DatasetError(
            f"clips table lacks column(s) {missing}; was it written by the index stage?"
        )
    duplicated = clips["clip_id"][clips["clip_id"].duplicated()]
    if len(duplicated):
        raise DatasetError(f"clips table repeats clip_id(s) {sorted(set(duplicated))[:5]}")


def _iterate(clips: pd.DataFrame, progress: bool, label: str):
    """``(clip_id, path, indexed duration or None)`` per clip."""
    durations = clips["duration_s"] if "duration_s" in clips else [None] * len(clips)
    durations = [None if pd.isna(d) else float(d) for d in durations]
    ids, paths = clips["clip_id"].astype(str), clips["path"].astype(str)
    rows = zip(ids, paths, durations, strict=True)
    if not progress:
        return rows
    from tqdm import tqdm

    return tqdm(rows, total=len(clips), desc=label, unit="clip")


def _to_table(name: str, params: dict[str, Any], collected: _Collected) -> pa.Table:
    kind = spec(name).kind
    if kind == "windows":
        return windowed_table(
            name, params, collected.clip_ids, collected.matrices, collected.extras
        )
    if kind == "clip":
        return clip_table(name, params, collected.clip_ids, collected.matrices)
    return frame_table(name, params, collected.clip_ids, collected.matrices, collected.extras)
