"""Tagging new music with a trained model: ``merflow predict``.

A model is a finished run folder or a folder written by ``merflow export``; both load as one
:class:`TaggingModel`, which decodes a song, computes the feature the model was trained on with
the very parameters of its feature table, z-scores it with the training statistics and predicts:

* regression (Malik models, ``mean``/``ridge``): arousal and valence for every 500 ms window of
  the whole song, whatever its length -- cut into the run's ``seq_len`` chunks and stitched back
  as evaluation does (:class:`~merflow.learn.inference.NetworkPredictor`) -- and their song means;
* classification (Velankar models, ``majority``/``logistic``): class probabilities per segment of
  the model's input length (``n_frames`` log-mel frames: 640 = 14.9 s at Velankar's settings) and
  the song's vote, the mean of the segments' probabilities. Segments follow one another from the
  start; the last is aligned to the song's end (it overlaps its predecessor) so that no audio is
  left out and none is padded. A song shorter than one segment is one segment padded as in
  training (the feature's ``pad`` policy), which is then exactly the training input.

Outputs of :func:`predict_files` (CSV or Parquet; docs/tagging.md)::

    songs.<fmt>                  one row a song: clip_id, path, duration_s, and n_windows +
                                 arousal, valence (means) or n_segments + predicted, p_<class>
    windows/<clip_id>.<fmt>      regression: clip_id, t (end of the 500 ms window), arousal, valence
    segments/<clip_id>.<fmt>     classification: clip_id, segment, start_s, end_s, predicted,
                                 p_<class>...
    plots/<clip_id>.png          with ``plot=True``
    predict.json                 the model used, the files tagged, the unreadable ones and why

``clip_id`` is a file's path below the folder it was found in, without its suffix (a file given
by name: its stem), so a folder of albums keeps its sub-folders.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from merflow import audio, models
from merflow.errors import AudioError, ConfigError, DatasetError
from merflow.export import FORMAT, MODEL_FILE, WEIGHTS_FILE, run_spec
from merflow.features.clip import DecodedClip
from merflow.features.registry import FEATURES, columns, computed, resolve_params
from merflow.features.views import is_fused
from merflow.features.windows import window_end_times
from merflow.io import atomic_path, read_json, write_json, write_table
from merflow.learn import baselines, fitted
from merflow.learn.data import ZScore
from merflow.learn.inference import NetworkPredictor, load_predictor
from merflow.learn.sequences import chunk_starts
from merflow.provenance import package_versions
from merflow.runs import BASELINE_FILE, NORM_FILE, RETRAIN, RUN_FILE, RunFileError, damaged

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")
REPORT_FILE = "predict.json"


@dataclass
class SongPrediction:
    """One song's predictions: per window or segment (``table``) and for the song (``summary``)."""

    clip_id: str
    path: Path
    duration_s: float
    table: pd.DataFrame
    summary: dict[str, Any]


@dataclass
class TaggingModel:
    """A trained model with everything needed to tag raw audio (see the module docstring)."""

    spec: dict[str, Any]  # run_spec(): model, task, feature, feature_params, outputs, ...
    zscore: ZScore
    predictor: NetworkPredictor | baselines.Baseline
    source: Path

    @property
    def task(self) -> str:
        return self.spec["task"]

    @property
    def outputs(self) -> list[str]:
        return list(self.spec["outputs"])

    @property
    def title(self) -> str:
        return f"{self.spec['model']} on {self.spec['feature']}"

    def predict_file(self, path: str | os.PathLike, clip_id: str | None = None) -> SongPrediction:
        """Decode ``path`` and predict it; AudioError if it cannot be decoded."""
        path = Path(path)
        params = self.spec["feature_params"]
        signal = audio.load(path, params["sample_rate"])
        if finding := audio.inspect(path, len(signal) / params["sample_rate"]).finding:
            raise AudioError(path, finding.reason)
        clip = DecodedClip(signal, params["sample_rate"])
        clip_id = clip_id or path.stem
        kind = FEATURES[self.spec["feature"]].kind
        if kind == "windows":
            table, summary = self._predict_windows(clip, clip_id, path)
        elif kind == "clip":
            table, summary = self._predict_clip(clip, clip_id, path)
        else:
            table, summary = self._predict_segments(clip, clip_id, path)
        head = {"clip_id": clip_id, "path": str(path), "duration_s": clip.duration_s}
        return SongPrediction(clip_id, path, clip.duration_s, table, head | summary)

    def _predict_windows(self, clip: DecodedClip, clip_id: str, path: Path):
        params = self.spec["feature_params"]
        x = _finite(FEATURES[self.spec["feature"]].compute(clip, params), path)
        y = self.predictor.predict_windows([self.zscore.apply(x)])[0]
        table = pd.DataFrame(
            {"clip_id": clip_id, "t": window_end_times(len(x), params["window_s"])}
        )
        for j, name in enumerate(self.outputs):
            table[name] = y[:, j].astype(np.float32)
        summary = {"n_windows": len(table)} | {n: float(table[n].mean()) for n in self.outputs}
        return table, summary

    def _predict_segments(self, clip: DecodedClip, clip_id: str, path: Path):
        params = self.spec["feature_params"]
        segments, n_valid, starts = segment_frames(self.spec["feature"], clip, params)
        probabilities = self.predictor.predict_proba(
            self.zscore.apply(_finite(segments, path)), n_valid
        )
        frame_s = params["hop_length"] / clip.sample_rate
        starts_s = np.asarray(starts) * frame_s
        ends_s = np.minimum((np.asarray(starts) + n_valid) * frame_s, clip.duration_s)
        return self._segment_table(clip_id, probabilities, starts_s, ends_s)

    def _predict_clip(self, clip: DecodedClip, clip_id: str, path: Path):
        """A clip-level feature: one vector, one segment (the whole song)."""
        vector = FEATURES[self.spec["feature"]].compute(clip, self.spec["feature_params"])
        probabilities = self.predictor.predict_proba(
            self.zscore.apply(_finite(vector, path)), np.ones(1, dtype=np.int64)
        )
        return self._segment_table(clip_id, probabilities, [0.0], [clip.duration_s])

    def _segment_table(self, clip_id: str, probabilities: np.ndarray, starts_s, ends_s):
        classes = np.asarray(self.outputs)
        table = pd.DataFrame(
            {
                "clip_id": clip_id,
                "segment": np.arange(len(probabilities)),
                "start_s": np.asarray(starts_s, dtype=np.float64),
                "end_s": np.asarray(ends_s, dtype=np.float64),
                "predicted": classes[probabilities.argmax(1)],
            }
        )
        song = probabilities.mean(0)
        summary: dict[str, Any] = {
            "n_segments": len(table),
            "predicted": str(classes[song.argmax()]),
        }
        for j, name in enumerate(classes):
            table[f"p_{name}"] = probabilities[:, j].astype(np.float32)
            summary[f"p_{name}"] = float(song[j])
        return table, summary


# --- loading -------------------------------------------------------------------------------------


def load_model(path: str | os.PathLike, device: torch.device | None = None) -> TaggingModel:
    """A run folder (with ``run.json``) or an exported model folder (with ``model.json``)."""
    path = Path(path)
    device = device or torch.device("cpu")
    if (path / MODEL_FILE).is_file():
        spec = _read_model_file(path / MODEL_FILE)
        predictor = _exported_predictor(path, spec, device)
        fix = REEXPORT
    elif (path / RUN_FILE).is_file() or (path / NORM_FILE).is_file():  # a run, finished or not
        spec = run_spec(path)
        predictor = load_predictor(path, device)
        fix = RETRAIN
    else:
        raise DatasetError(
            f"{path}: neither an exported model ({MODEL_FILE}) nor a finished run ({RUN_FILE}); "
            "give a run folder under results/<dataset>/<experiment>/runs/ or the folder "
            "`merflow export` wrote"
        )
    spec = {**spec, "feature_params": _feature_params(path, spec)}
    zscore = ZScore.load(path / NORM_FILE, fix)
    _check_sizes(path, spec, zscore)
    return TaggingModel(spec, zscore, predictor, path)


REEXPORT = "export the model again from its run folder (merflow export RUN_DIR OUT)"


def _read_model_file(path: Path) -> dict[str, Any]:
    try:
        spec = read_json(path)
    except ValueError as exc:
        raise damaged(path, exc, REEXPORT) from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise RunFileError(f"{path} is not a merflow model description; {REEXPORT}")
    return spec


def _exported_predictor(path: Path, spec: dict, device: torch.device):
    if spec["baseline"]:
        return fitted.load(path / BASELINE_FILE, REEXPORT)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    network = models.build_from_record(spec["build"])
    try:
        network.load_state_dict(load_file(path / WEIGHTS_FILE, device="cpu"))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise damaged(path / WEIGHTS_FILE, exc, REEXPORT) from None
    return NetworkPredictor(
        network.to(device),
        device,
        spec["seq_len"],
        spec["batch_size"],
        **spec.get("prediction", {}),  # exports of format_version 1 have none
    )


def _feature_params(path: Path, spec: dict) -> dict:
    feature = spec["feature"]
    if is_fused(feature):
        raise ConfigError(
            f"{path}: the model reads the fused views '{feature}', which predict does not "
            "compute yet; to tag new audio, train on one of its views alone"
        )
    if feature not in FEATURES or not FEATURES[feature].computed:
        raise ConfigError(
            f"{path}: the model reads feature '{feature}', which merflow cannot compute from "
            f"audio (it computes {', '.join(computed())}): it was trained on features that came "
            "with the dataset. Train on one of those features to tag new audio"
        )
    return resolve_params(feature, spec["feature_params"])


def _check_sizes(path: Path, spec: dict, zscore: ZScore) -> None:
    expected = columns(spec["feature"], spec["feature_params"])
    recorded = spec.get("feature_columns")
    if (recorded and list(recorded) != expected) or len(zscore.mean) != len(expected):
        raise DatasetError(
            f"{path}: the model was trained on {len(zscore.mean)} '{spec['feature']}' values per "
            f"step, but its feature parameters give {len(expected)}; the feature code changed "
            "since training. Re-train, or predict with the merflow version that trained it"
        )


# --- features of a whole song --------------------------------------------------------------------


def segment_frames(
    name: str, clip: DecodedClip, params: dict
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(segments (N, rows, n_frames), n_valid_frames (N,), start frames)`` of a whole song."""
    feature, length = FEATURES[name], params["n_frames"]
    available = feature.valid_frames(len(clip.signal), {**params, "n_frames": sys.maxsize})
    if available <= length:  # one segment, padded exactly as the training clips were
        return feature.compute(clip, params)[None], np.array([available]), [0]
    whole = feature.compute(clip, {**params, "n_frames": available})
    starts = chunk_starts(available, length)
    segments = np.stack([whole[:, s : s + length] for s in starts])
    return segments, np.full(len(starts), length), starts


def _finite(values: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(values).all():
        raise AudioError(path, "its features come out NaN or infinite; is the file corrupt?")
    return values


# --- many files ----------------------------------------------------------------------------------


@dataclass
class PredictReport:
    """What :func:`predict_files` did: songs tagged, files that could not be, and why."""

    out_dir: Path
    songs: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)

    def describe(self) -> str:
        total = len(self.songs) + len(self.unreadable)
        lines = [f"tagged {len(self.songs)} of {total} file(s) into {self.out_dir}"]
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} could not be tagged:")
            lines += [f"  {p['path']}: {p['reason']}" for p in self.unreadable]
        return "\n".join(lines)


def _hidden(relative: Path) -> bool:
    """A hidden file, or any file inside a hidden folder (``.Trash/``, ``.cache/``)."""
    return any(part.startswith(".") for part in relative.parts)


def find_audio(inputs: Sequence[str | os.PathLike]) -> tuple[list[tuple[str, Path]], list[dict]]:
    """``[(clip_id, path)]`` of the audio files given or found below the folders given, and every
    input or file found that cannot be tagged, with the reason (``{path, reason}``): nothing is
    skipped silently. Hidden files are not inputs; links to folders are not followed."""
    found: list[tuple[str, Path]] = []
    problems: list[dict] = []
    taken: set[str] = set()
    for given in map(Path, inputs):
        if given.is_dir():
            entries = sorted(f for f in given.rglob("*") if not _hidden(f.relative_to(given)))
            files = [f for f in entries if not (f.is_dir() and not f.is_symlink())]
            if not files:
                reason = f"no audio files ({' '.join(audio.SUPPORTED_SUFFIXES)}) in this folder"
                problems.append({"path": str(given), "reason": reason})
            for f in files:
                reason = _unusable(f)
                if reason:
                    problems.append({"path": str(f), "reason": reason})
                else:
                    clip_id = f.relative_to(given).with_suffix("").as_posix()
                    found.append((_unique(clip_id, taken), f))
        elif given.is_file() or given.is_symlink():
            reason = _unusable(given)
            if reason:
                problems.append({"path": str(given), "reason": reason})
            else:
                found.append((_unique(given.stem, taken), given))
        else:
            problems.append({"path": str(given), "reason": "no such file or folder"})
    return found, problems


def _unusable(path: Path) -> str:
    """Why ``path`` cannot be tagged ('' when it can be tried)."""
    if path.is_symlink() and not path.exists():
        return "a broken symbolic link, or a loop of links; point it at an audio file"
    if path.is_dir():
        return "a link to a folder, which is not followed; give that folder itself"
    if not path.is_file():
        return "not a regular file"
    if path.suffix.lower() not in audio.SUPPORTED_SUFFIXES:
        supported = " ".join(audio.SUPPORTED_SUFFIXES)
        return f"not an audio format merflow decodes ({supported}); convert it, e.g. to FLAC"
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"cannot be opened ({exc.strerror or exc}); check its permissions"
    return ""


def _unique(clip_id: str, taken: set[str]) -> str:
    candidate, n = clip_id, 1
    while candidate in taken:
        n += 1
        candidate = f"{clip_id}-{n}"
    taken.add(candidate)
    return candidate


def predict_files(
    model: TaggingModel,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    fmt: str = "csv",
    plot: bool = False,
    progress: bool = True,
) -> PredictReport:
    """Tag every audio file of ``inputs`` into ``out_dir`` (module docstring).

    A file that cannot be decoded or predicted is logged and listed in the report; the others go
    on. Raises DatasetError when not a single file could be tagged.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    files, problems = find_audio(inputs)
    report = PredictReport(out_dir, unreadable=problems)
    per_song = "windows" if model.task == "regression" else "segments"
    for clip_id, path in _progress(files, progress):
        try:
            song = model.predict_file(path, clip_id)
            write_frame(song.table, out_dir / per_song / f"{clip_id}.{fmt}", fmt)
            if plot:
                plot_song(song, model, out_dir / "plots" / f"{clip_id}.png")
        except Exception as exc:  # one bad file must not stop the others; the reason is kept
            reason = _why_not_tagged(exc, f"{clip_id}.{fmt}")
            log.warning("cannot tag %s: %s", path, reason)
            log.debug("traceback of %s", path, exc_info=True)
            report.unreadable.append({"path": str(path), "reason": reason})
            continue
        report.songs.append(song.summary)
    _write_report(report, model, fmt)
    if not report.songs:
        raise DatasetError("no file could be tagged. " + report.describe())
    return report


def _why_not_tagged(exc: Exception, output_name: str) -> str:
    if isinstance(exc, AudioError):
        return exc.reason
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return (
            f"its output {output_name} would be a longer name than the file system allows; "
            "give the file a shorter name"
        )
    return f"{type(exc).__name__}: {exc}"


def _progress(files: list, enabled: bool):
    from tqdm import tqdm

    return tqdm(files, desc="tagging", unit="file", disable=not enabled, file=sys.stderr)


def write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> Path:
    """Write a table atomically as CSV or Parquet."""
    if fmt == "parquet":
        return write_table(frame, path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def _write_report(report: PredictReport, model: TaggingModel, fmt: str) -> None:
    if report.songs:
        write_frame(pd.DataFrame(report.songs), report.out_dir / f"songs.{fmt}", fmt)
    summary = {
        "model": {
            "source": str(model.source.resolve()),
            **{k: model.spec[k] for k in ("model", "task", "feature", "outputs", "seq_len")},
            "feature_params": model.spec["feature_params"],
        },
        "format": fmt,
        "n_files": len(report.songs) + len(report.unreadable),
        "n_tagged": len(report.songs),
        "unreadable": report.unreadable,
        "versions": package_versions(("merflow", "torch", "numpy", "librosa")),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(summary, report.out_dir / REPORT_FILE)


# --- figures -------------------------------------------------------------------------------------


def plot_song(song: SongPrediction, model: TaggingModel, path: str | os.PathLike) -> Path:
    """One PNG: arousal and valence over time, or class probabilities per segment."""
    import matplotlib.style

    from merflow.reporting.figures import new_figure, save_png

    with matplotlib.style.context("default"):
        fig, axes = new_figure(9.0, 3.6)
        if model.task == "regression":
            _draw_trajectory(axes[0, 0], song, model.outputs)
        else:
            _draw_segments(axes[0, 0], song, model.outputs)
        fig.suptitle(f"{song.clip_id} ({model.title})", fontsize=10)
        return save_png(fig, path)


def _draw_trajectory(ax, song: SongPrediction, dims: list[str]) -> None:
    table = song.table
    for dim, color in zip(dims, ("tab:red", "tab:blue"), strict=False):
        ax.plot(table["t"], table[dim], color=color, label=f"{dim} (mean {table[dim].mean():.2f})")
        ax.axhline(table[dim].mean(), color=color, linestyle="--", linewidth=0.8)
    limit = max(1.05, float(np.abs(table[dims].to_numpy()).max()) * 1.05)
    ax.set_ylim(-limit, limit)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("time (s, end of 500 ms window)")
    ax.set_ylabel("predicted value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")


def _draw_segments(ax, song: SongPrediction, classes: list[str]) -> None:
    table = song.table
    x, bottom = np.arange(len(table)), np.zeros(len(table))
    for name in classes:
        values = table[f"p_{name}"].to_numpy()
        ax.bar(x, values, bottom=bottom, width=0.8, label=name)
        bottom += values
    labels = [f"{a:.0f}-{b:.0f} s" for a, b in zip(table["start_s"], table["end_s"], strict=True)]
    ax.set_xticks(
        x, labels, rotation=45 if len(x) > 6 else 0, ha="right" if len(x) > 6 else "center"
    )
    ax.set_ylim(0, 1)
    ax.set_xlabel("segment")
    ax.set_ylabel("class probability")
    ax.set_title(f"song vote: {song.summary['predicted']}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
