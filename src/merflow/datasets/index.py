"""The index stage: an adapter's reading of a dataset becomes the validated tables of the contract.

:func:`build_index` runs the adapter named in the dataset's spec, then checks what it returned
identically for every dataset, and applies the bad-input policy ``on_bad_audio``:

* ``quarantine`` — each bad clip is left out and listed in ``quarantine.parquet`` with a reason a
  person can act on; everything else goes on;
* ``fail`` — any bad clip stops the run before anything is written: a :class:`DatasetError`
  lists every problem found (file or row, what is wrong, what to do).

First, a clip whose path leads outside the dataset root is refused unless the dataset sets
``allow_outside_root`` (whichever adapter formed the path). The checks, in order (a clip gets the
reason of the first it fails): unique clip ids; an audio file where the labels point; a label
among the classes (labelled datasets); annotations for every clip, with finite times on the
window grid, no time twice, arousal and valence present and in [-1, 1] (time-continuous
datasets); a regular file (a named pipe is never opened) whose header reads and which is whole
(a truncated download keeps its header); annotations that end within one window of the audio's
end.

Probing (:func:`merflow.audio.probe_clip`) reads headers and container bookkeeping only, so
thousands of files index in seconds. Outputs are sorted by ``clip_id`` and written through
:mod:`merflow.io`, so a re-run on the same data writes byte-identical files.
"""

from __future__ import annotations

import importlib
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from merflow.audio import AudioInfo, probe_clip
from merflow.datasets import ADAPTERS
from merflow.datasets.base import RawIndex
from merflow.errors import AudioError, ConfigError, DatasetError
from merflow.features.windows import WINDOW_S
from merflow.io import write_table
from merflow.tables import (
    CLIPS_SCHEMA,
    TARGETS_SCHEMA,
    metadata_of,
    quarantine_table,
    read_frame,
)

log = logging.getLogger(__name__)

POLICIES = ("quarantine", "fail")
GRID_TOLERANCE = 1e-6  # in windows: 15.0000001 s is 15.0 s, 15.25 s is off the grid
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class IndexResult:
    """What :func:`build_index` wrote, for logs and for the caller's decisions."""

    dataset: str
    out_dir: Path
    n_clips: int
    n_quarantined: int
    has_targets: bool
    classes: list[str] | None

    def __str__(self) -> str:
        kind = f"classes {self.classes}" if self.classes else "no classes"
        targets = "with arousal/valence targets" if self.has_targets else "without targets"
        return (
            f"dataset '{self.dataset}': {self.n_clips} clips indexed ({kind}, {targets}), "
            f"{self.n_quarantined} quarantined; tables in {self.out_dir}"
        )


def build_index(
    spec: dict, out_dir: Path, *, on_bad_audio: str = "quarantine", n_shards: int = 1
) -> IndexResult:
    """Index the dataset ``spec`` describes into ``out_dir`` (clips, targets, quarantine tables).

    ``targets.parquet`` is always written so that the workflow's outputs are fixed; it is empty
    (and ``has_targets`` is false) for a dataset without time-continuous labels.
    """
    if on_bad_audio not in POLICIES:
        raise ConfigError(f"on_bad_audio must be one of {POLICIES}, got {on_bad_audio!r}")
    if not isinstance(n_shards, int) or n_shards < 1:
        raise ConfigError(f"the number of shards must be a positive integer, got {n_shards!r}")
    spec = {**spec, "root": Path(spec["root"])} if spec.get("root") else dict(spec)
    raw = read_dataset(spec)
    _refuse_paths_outside_root(raw, spec)
    clips, targets, quarantine = validate(raw)
    name = spec["name"]
    if quarantine and on_bad_audio == "fail":
        raise DatasetError(_failure_message(name, quarantine))
    if clips.empty:
        raise DatasetError(
            f"dataset '{name}': no usable clip; all {len(quarantine)} were left out. "
            + _listing(quarantine)
        )
    _log_quarantine(name, quarantine)
    clips["shard"] = [shard_of(clip_id, n_shards) for clip_id in clips["clip_id"]]
    _write_tables(Path(out_dir), spec, raw.classes, n_shards, clips, targets, quarantine)
    has_targets = targets is not None
    return IndexResult(name, Path(out_dir), len(clips), len(quarantine), has_targets, raw.classes)


def read_dataset(spec: dict) -> RawIndex:
    """Run the adapter ``spec["adapter"]`` names; a missing root says what to download."""
    for key in ("name", "adapter"):
        if key not in spec:
            raise ConfigError(f"a dataset spec needs '{key}'; got keys {sorted(spec)}")
    adapter = spec["adapter"]
    if adapter not in ADAPTERS:
        raise ConfigError(
            f"dataset '{spec['name']}': unknown adapter {adapter!r}; the adapters are "
            f"{', '.join(sorted(ADAPTERS))}"
        )
    if adapter != "synth":  # the synthetic dataset explains its own absence (run `merflow synth`)
        _check_root(spec)
    return importlib.import_module(ADAPTERS[adapter].module).read(spec)


def _check_root(spec: dict) -> None:
    root = spec.get("root")
    hint = ADAPTERS[spec["adapter"]].download
    if root is None or not Path(root).is_dir():
        raise DatasetError(
            f"dataset '{spec['name']}': root {root} is not a folder. Download {hint}, unpack "
            f"it, and point 'datasets.{spec['name']}.root' at it"
        )


def _refuse_paths_outside_root(raw: RawIndex, spec: dict) -> None:
    """Quarantine clips whose path leads outside the root, whichever adapter formed it (a song id
    ``../x`` in DEAM's annotations would), unless ``allow_outside_root``. Containment is judged on
    the normalized path, as the manifest adapter does: symlinks inside the root may point anywhere.
    """
    if not spec.get("root") or spec.get("allow_outside_root") or raw.clips.empty:
        return
    root = os.path.normpath(spec["root"])
    paths = raw.clips["path"].astype(str)
    outside = ~paths.map(lambda p: Path(os.path.normpath(p)).is_relative_to(root))
    for clip_id, path in zip(raw.clips["clip_id"][outside], paths[outside], strict=True):
        raw.exclude(
            clip_id,
            path,
            f"its path leads outside the dataset root {root}; move the file under the root, or "
            f"set 'allow_outside_root: true' for dataset '{spec['name']}'",
        )
    if raw.targets is not None:
        left_out = raw.clips["clip_id"][outside].astype(str)
        raw.targets = raw.targets[~raw.targets["clip_id"].astype(str).isin(left_out)]
    raw.clips = raw.clips[~outside].reset_index(drop=True)


def shard_of(clip_id: str, n_shards: int) -> int:
    """A clip's shard: a hash of its id alone, so adding clips never moves the others."""
    return zlib.crc32(clip_id.encode("utf-8")) % n_shards


# --- validation -------------------------------------------------------------------------------


def validate(raw: RawIndex) -> tuple[pd.DataFrame, pd.DataFrame | None, list[dict]]:
    """Kept clips (probed), their targets, and the quarantine list (the adapter's + new ones)."""
    clips = _clip_frame(raw.clips)
    targets = None if raw.targets is None else _target_frame(raw.targets)
    quarantine = list(raw.quarantine)
    reasons: dict[int, str] = {}

    def record(found: dict[int, str]) -> None:
        reasons.update({row: reason for row, reason in found.items() if row not in reasons})

    def remaining() -> pd.DataFrame:
        return clips.drop(index=list(reasons))

    record(_duplicate_ids(clips))
    record(_missing_audio(remaining()))
    if raw.classes is not None:
        record(_label_problems(remaining(), raw.classes))
    if targets is not None:
        record(_target_problems(remaining(), targets, raw.targets))
        quarantine += _orphan_targets(clips, targets)
    info, audio_reasons = _probe_all(remaining())
    record(audio_reasons)
    if targets is not None:
        record(_annotations_past_end(remaining(), targets, info))

    for row, reason in sorted(reasons.items()):
        clip = clips.loc[row]
        quarantine.append(
            {"clip_id": clip["clip_id"], "path": clip["path"], "stage": "index", "reason": reason}
        )
    kept = remaining()
    kept = kept.assign(
        duration_s=[info[r].duration_s for r in kept.index],
        sample_rate=[info[r].sample_rate for r in kept.index],
        channels=[info[r].channels for r in kept.index],
    )
    kept = kept.sort_values("clip_id", ignore_index=True)
    if targets is not None:
        targets = targets[targets["clip_id"].isin(kept["clip_id"])]
        targets = targets.assign(t=_snap_to_grid(targets["t"].to_numpy()))
        targets = targets.sort_values(["clip_id", "t"], ignore_index=True)
    return kept, targets, quarantine


def _clip_frame(clips: pd.DataFrame) -> pd.DataFrame:
    """The adapter's clips with every column of the contract, ids and paths as strings."""
    if "clip_id" not in clips or "path" not in clips:
        raise DatasetError("the adapter returned clips without 'clip_id' and 'path' columns")
    frame = clips.reset_index(drop=True).copy()
    frame["clip_id"] = frame["clip_id"].astype(str)
    frame["path"] = frame["path"].astype(str)
    for column in ("group", "label", "fixed_split"):
        if column not in frame:
            frame[column] = None
    frame["group"] = frame["group"].where(frame["group"].notna(), frame["clip_id"]).astype(str)
    for column in ("label", "fixed_split"):  # object columns: None stays None, not "nan"
        values = [None if pd.isna(v) else str(v) for v in frame[column]]
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return frame[["clip_id", "path", "group", "label", "fixed_split"]]


def _target_frame(targets: pd.DataFrame) -> pd.DataFrame:
    """The adapter's targets with numbers in ``t``, ``arousal``, ``valence`` (a cell that is not a
    number becomes NaN; :func:`_first_bad_target_row` names it from the adapter's cells)."""
    missing = [c for c in ("clip_id", "t", "arousal", "valence") if c not in targets]
    if missing:
        raise DatasetError(f"the adapter returned targets without the columns {missing}")
    frame = targets[["clip_id", "t", "arousal", "valence"]].copy()
    frame["clip_id"] = frame["clip_id"].astype(str)
    for column in ("t", "arousal", "valence"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return frame


def _duplicate_ids(clips: pd.DataFrame) -> dict[int, str]:
    duplicated = clips[clips["clip_id"].duplicated(keep=False)]
    reasons = {}
    for clip_id, rows in duplicated.groupby("clip_id", sort=False):
        paths = ", ".join(rows["path"])
        reason = (
            f"clip id '{clip_id}' is used {len(rows)} times ({paths}); ids must be unique: "
            "rename the files or remove all but one"
        )
        reasons.update(dict.fromkeys(rows.index, reason))
    return reasons


def _missing_audio(clips: pd.DataFrame) -> dict[int, str]:
    reason = "labelled, but no audio file is at this path; put its audio there or remove its labels"
    return {row: reason for row, path in clips["path"].items() if not Path(path).exists()}


def _label_problems(clips: pd.DataFrame, classes: list[str]) -> dict[int, str]:
    reasons = {}
    for row, label in clips["label"].items():
        if pd.isna(label):
            reasons[row] = "audio without a label; label it or remove the audio file"
        elif label not in classes:
            reasons[row] = f"label '{label}' is not one of the classes {classes}"
    return reasons


def _target_problems(
    clips: pd.DataFrame, targets: pd.DataFrame, cells: pd.DataFrame
) -> dict[int, str]:
    """Per clip, the first bad annotation row (or the absence of any)."""
    by_clip = _first_bad_target_row(targets, cells)
    annotated = set(targets["clip_id"])
    reasons = {}
    for row, clip_id in clips["clip_id"].items():
        if clip_id not in annotated:
            reasons[row] = (
                "audio without arousal/valence annotations; annotate it or remove the audio file"
            )
        elif clip_id in by_clip:
            reasons[row] = by_clip[clip_id]
    return reasons


def _first_bad_target_row(targets: pd.DataFrame, cells: pd.DataFrame) -> dict[str, str]:
    """Clip id → the reason of its first bad annotation row, checks taken in order. ``cells``
    are the adapter's targets, row for row, before they were read as numbers."""
    t = targets["t"].to_numpy()
    steps = t / WINDOW_S
    checks = [
        (
            ~np.isfinite(t),
            lambda i: (
                "an annotation row has no time (t is empty or not a number); fill in its "
                "window end time or remove the row"
            ),
        ),
        (
            t <= 0,
            lambda i: (
                f"annotation time t={t[i]:g} s is not after the start of the audio; times are "
                f"window ends ({WINDOW_S:g} s, {2 * WINDOW_S:g} s, …): shift the annotations"
            ),
        ),
        (
            np.abs(steps - np.round(steps)) > GRID_TOLERANCE,
            lambda i: (
                f"annotation time t={t[i]:g} s is not on the {WINDOW_S:g} s grid of window "
                "ends; resample the annotations to window end times"
            ),
        ),
        (
            targets.duplicated(["clip_id", "t"], keep=False).to_numpy(),
            lambda i: f"two annotation rows for t={t[i]:g} s; keep one",
        ),
    ]
    for column in ("arousal", "valence"):
        v = targets[column].to_numpy()
        cell = cells[column].to_numpy(dtype=object)
        checks.append(
            (
                np.isnan(v) & pd.notna(cell),
                lambda i, c=column, cell=cell: (
                    f"{c} {cell[i]!r} at t={t[i]:g} s is not a number; write the rating as a "
                    "number from -1 to 1 or remove the clip's annotations"
                ),
            )
        )
        checks.append(
            (
                np.isnan(v),
                lambda i, c=column: (
                    f"{c} is missing (NaN) at t={t[i]:g} s; fill in the rating "
                    "or remove the clip's annotations"
                ),
            )
        )
        checks.append(
            (
                np.abs(v) > 1.0,
                lambda i, c=column, v=v: (
                    f"{c} {v[i]:g} at t={t[i]:g} s is outside [-1, 1]; "
                    "rescale the labels (the adapter's docstring says which scale it expects)"
                ),
            )
        )
    reasons: dict[str, str] = {}
    clip_ids = targets["clip_id"].to_numpy()
    for bad, describe in checks:
        for i in np.flatnonzero(bad):
            reasons.setdefault(clip_ids[i], describe(i))
    return reasons


def _orphan_targets(clips: pd.DataFrame, targets: pd.DataFrame) -> list[dict]:
    orphans = sorted(set(targets["clip_id"]) - set(clips["clip_id"]))
    return [
        {
            "clip_id": clip_id,
            "path": None,
            "stage": "index",
            "reason": "arousal/valence annotations for a clip that has no audio entry; add its "
            "audio or remove the annotations",
        }
        for clip_id in orphans
    ]


def _annotations_past_end(
    clips: pd.DataFrame, targets: pd.DataFrame, info: dict[int, AudioInfo]
) -> dict[int, str]:
    last = targets.groupby("clip_id")["t"].max()
    reasons = {}
    for row, clip_id in clips["clip_id"].items():
        duration = info[row].duration_s
        if last[clip_id] > duration + WINDOW_S + 1e-9:
            reasons[row] = (
                f"annotations run to t={last[clip_id]:g} s but the audio lasts {duration:.2f} s; "
                "they belong to a longer version of the song: find the matching audio"
            )
    return reasons


def _snap_to_grid(t: np.ndarray) -> np.ndarray:
    """Times within the grid tolerance become exact multiples of the window (clean joins)."""
    return np.round(t / WINDOW_S) * WINDOW_S


# --- audio ------------------------------------------------------------------------------------


def _probe_all(clips: pd.DataFrame) -> tuple[dict[int, AudioInfo], dict[int, str]]:
    info, reasons = {}, {}
    for row, path in clips["path"].items():
        try:
            info[row] = probe_clip(path)
        except AudioError as exc:
            reasons[row] = exc.reason
    return info, reasons


# --- outputs ----------------------------------------------------------------------------------


def _write_tables(
    out_dir: Path,
    spec: dict,
    classes: list[str] | None,
    n_shards: int,
    clips: pd.DataFrame,
    targets: pd.DataFrame | None,
    quarantine: list[dict],
) -> None:
    meta = {"dataset": spec["name"], "adapter": spec["adapter"], "classes": classes}
    clips_table = pa.Table.from_pandas(
        clips[CLIPS_SCHEMA.names], schema=CLIPS_SCHEMA, preserve_index=False
    )
    write_table(clips_table, out_dir / "clips.parquet", metadata={**meta, "n_shards": n_shards})
    targets_meta = {**meta, "has_targets": targets is not None, "window_s": WINDOW_S}
    if targets is None:
        targets = pd.DataFrame({name: [] for name in TARGETS_SCHEMA.names})
    targets_table = pa.Table.from_pandas(targets, schema=TARGETS_SCHEMA, preserve_index=False)
    write_table(targets_table, out_dir / "targets.parquet", metadata=targets_meta)
    write_table(quarantine_table(quarantine), out_dir / "quarantine.parquet", metadata=meta)


def write_shard_lists(out_dir: str | Path, n_shards: int) -> list[Path]:
    """``shards/shard-<i>.parquet``: the rows of clips.parquet in shard ``i``, one file a shard.

    Feature jobs take their shard's list as input; an unchanged shard keeps identical bytes, so
    Snakemake's checksum sees no change and does not re-extract it.
    """
    out_dir = Path(out_dir)
    clips = read_frame(out_dir / "clips.parquet", "clips")
    meta = metadata_of(out_dir / "clips.parquet", "clips")
    if meta.get("n_shards") != n_shards:
        raise ConfigError(
            f"{out_dir / 'clips.parquet'} was indexed with {meta.get('n_shards')} shards, not "
            f"{n_shards}; index it again with --shards {n_shards}"
        )
    paths = []
    for shard in range(n_shards):
        rows = clips[clips["shard"] == shard]
        table = pa.Table.from_pandas(rows, schema=CLIPS_SCHEMA, preserve_index=False)
        path = out_dir / "shards" / f"shard-{shard}.parquet"
        paths.append(write_table(table, path, metadata={**meta, "shard": shard}))
    return paths


# --- messages ---------------------------------------------------------------------------------


def _listing(quarantine: list[dict]) -> str:
    lines = []
    for entry in quarantine[:MAX_LISTED_PROBLEMS]:
        where = f" ({entry['path']})" if entry.get("path") else ""
        lines.append(f"  - {entry['clip_id']}{where}: {entry['reason']}")
    if len(quarantine) > MAX_LISTED_PROBLEMS:
        lines.append(f"  … and {len(quarantine) - MAX_LISTED_PROBLEMS} more")
    return "\n".join(lines)


def _failure_message(name: str, quarantine: list[dict]) -> str:
    return (
        f"dataset '{name}': {len(quarantine)} problem(s) found while indexing "
        f"(on_bad_audio: fail):\n{_listing(quarantine)}\nFix them at the source, or set "
        "on_bad_audio: quarantine to leave these clips out (they are then listed in "
        "quarantine.parquet)."
    )


def _log_quarantine(name: str, quarantine: list[dict]) -> None:
    if not quarantine:
        return
    log.warning("dataset '%s': %d quarantined:\n%s", name, len(quarantine), _listing(quarantine))
