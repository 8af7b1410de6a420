"""Training one run: a model (network or baseline) on one feature table, split and seed.

A run directory holds everything that reproduces and uses the run::

    run.json            provenance: resolved config, seed, split id + sha256, versions, git
                        revision, device, parameter count, wall time, result summary
    norm.npz            z-score statistics of the training split (mean, std, axis, feature_names)
    history.csv         one row per epoch: epoch, train_loss, val_loss, train_metric,
                        val_metric, seconds
    best.pt             networks: weights of the epoch with the best validation value (or of the
                        ``checkpoint_ensemble`` best epochs, as one ensemble model), and the
                        arguments that rebuild the model
    last.pt             networks: everything needed to resume after the last finished epoch
    baseline.npz        baselines: their fitted weights (see :mod:`merflow.baselines`)
    quarantine.parquet  clips of the split that could not be used, and why (maybe empty)

Losses and metrics (the columns of ``history.csv``): regression trains on the RMSE of the paper
(the mean over arousal and valence of each dimension's RMSE) plus ``model.penalty()``; its metric
is the same RMSE without the penalty. Classification trains on cross-entropy (+ penalty); its
metric is accuracy. Training columns average the epoch's batches (in training mode, as Keras
reports them); validation columns score whole songs stitched from ``seq_len`` chunks, exactly as
evaluation does, without the penalty. Early stopping watches the validation loss; without a
validation part every epoch counts as the best.

Determinism and resuming: every source of randomness in epoch ``e`` (batch order, random chunk
offsets, dropout) is reseeded from ``(seed, e)`` at the start of the epoch. An epoch is thus a
pure function of the weights and optimizer state it starts from, and a run that is killed and
started again resumes from ``last.pt`` and ends with the very numbers of an uninterrupted run (on
the CPU; CUDA kernels are deterministic only as far as ``torch.use_deterministic_algorithms``
reaches). For the same reason ``last.pt`` stores no RNG states: there are none to carry over.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812 (the torch convention)
from sklearn.metrics import f1_score
from torch import nn

from merflow import augment, baselines, models
from merflow.data import (
    FrameClips,
    WindowedClips,
    ZScore,
    chunk_starts,
    crop_frames,
    crop_start,
    eval_crop_starts,
    load_frames,
    load_windowed,
    make_sequences,
    moving_average,
    read_split,
    stitch_song_predictions,
)
from merflow.errors import ConfigError, DatasetError
from merflow.io import atomic_path, remove_debris, write_json, write_table
from merflow.provenance import run_record
from merflow.runs import (
    BASELINE_FILE,
    BEST_FILE,
    HISTORY_FILE,
    LAST_FILE,
    NORM_FILE,
    QUARANTINE_FILE,
    RUN_FILE,
    RunFileError,
    load_checkpoint,
    read_record,
)
from merflow.tables import metadata_of

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "train_metric", "val_metric", "seconds")
# Prediction keeps no activations for backward, so batches this many times the training batch fit
# in the memory that training needed.
PREDICTION_BATCH_FACTOR = 4


@dataclass
class TrainConfig:
    """Everything a training run depends on. ``seq_len=None`` trains on whole songs."""

    model: str
    features_path: str
    clips_path: str
    split_path: str
    targets_path: str | None = None
    model_options: dict = field(default_factory=dict)
    seq_len: int | None = None
    hop: int | None = None  # windows between training chunk starts (default seq_len)
    random_offset: bool = False  # shift each song's chunk grid randomly every epoch
    seed: int = 0
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 10
    use_gpu: bool = True
    threads: int | None = None
    # The recipe settings (merflow.recipes documents each); these defaults are the paper recipe.
    recipe: str = "paper"
    hop_fraction: float | None = None  # hop = round(seq_len * hop_fraction) when hop is unset
    optimizer: str = "adam"  # "adam" | "adamw" | "sgd" (Nesterov momentum 0.9)
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # "constant" | "cosine" (linear warm-up, cosine decay)
    warmup_epochs: float = 0.0
    lr_cycles: int = 1  # cosine: restart the decay this many times (snapshot ensembles); 1 is off
    select_by: str = "loss"  # "loss" | "score" (macro-F1 or RMSE) | "auto" (select_rule)
    score_min_val_per_class: int = 5  # select_by auto: macro-F1 only with this many per class
    input_frames: int | None = None  # frames the network sees; None: the table's n_frames
    train_crop: str = "center"  # "center" | "random": the crop of each clip trained on
    eval_crop_hop: int | None = None  # None: centre crop; else mean over crops every hop frames
    time_masks: int = 0
    time_mask_frames: int = 0
    freq_masks: int = 0
    freq_mask_bands: int = 0
    freq_shift_bands: int = 0  # shift each clip by up to this many mel bands; 0 is off
    gain_db: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha); 0 is off
    balanced_sampling: bool = False
    label_smoothing: float = 0.0
    smooth_windows: int = 1  # centred moving average over predicted windows; 1 is off
    checkpoint_ensemble: int = 1  # predict with the mean of this many best epochs; 1 is off

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; allowed: {sorted(known)}")
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Raise a ConfigError naming the setting whose value is not allowed."""
        choices = {
            "recipe": ("paper", "merflow"),
            "optimizer": ("adam", "adamw", "sgd"),
            "lr_schedule": ("constant", "cosine"),
            "select_by": ("loss", "score", "auto"),
            "train_crop": ("center", "random"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"training setting {name} = {getattr(self, name)!r}; allowed: {allowed}"
                )
        non_negative = [
            "weight_decay",
            "warmup_epochs",
            "time_masks",
            "time_mask_frames",
            "freq_masks",
            "freq_mask_bands",
            "freq_shift_bands",
            "gain_db",
            "mixup",
            "label_smoothing",
        ]
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"training setting {name} = {getattr(self, name)}; must be >= 0")
        for name in ("seq_len", "input_frames", "eval_crop_hop", "hop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"training setting {name} = {value}; must be >= 1 or null")
        for name in (
            "epochs",
            "patience",
            "batch_size",
            "lr_cycles",
            "checkpoint_ensemble",
            "score_min_val_per_class",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"training setting {name} = {getattr(self, name)}; must be >= 1")
        if not self.lr > 0:
            raise ConfigError(f"training setting lr = {self.lr}; must be > 0")
        if self.smooth_windows < 1 or self.label_smoothing >= 1:
            raise ConfigError(
                "training settings: smooth_windows must be >= 1 and label_smoothing below 1"
            )
        if self.hop_fraction is not None and not 0 < self.hop_fraction <= 1:
            raise ConfigError(f"training setting hop_fraction = {self.hop_fraction}; in (0, 1]")

    @property
    def chunk_hop(self) -> int | None:
        """Windows between training chunk starts: ``hop``, else from ``hop_fraction``."""
        if self.hop is not None or self.hop_fraction is None or self.seq_len is None:
            return self.hop
        return max(1, round(self.seq_len * self.hop_fraction))

    def to_dict(self) -> dict[str, Any]:
        return {
            k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in asdict(self).items()
        }

    def resume_key(self) -> dict[str, Any]:
        """The settings a checkpoint must share to be resumed: all but the stopping rule,
        the device and the thread count, which do not change what an epoch computes on the CPU."""
        ignored = {"epochs", "patience", "use_gpu", "threads"}
        if self.lr_schedule != "constant":  # the schedule's length changes every epoch's rate
            ignored.discard("epochs")
        return {k: v for k, v in self.to_dict().items() if k not in ignored}


@dataclass(frozen=True)
class ModelKind:
    task: str  # "regression" | "classification"
    input: str  # "windows" | "frames"
    is_baseline: bool


def model_kind(name: str) -> ModelKind:
    """Task and input kind of a network or baseline, by name."""
    if name in baselines.BASELINES:
        cls = baselines.BASELINES[name]
        return ModelKind(cls.task, cls.input, True)
    spec = models.get_spec(name)
    return ModelKind(spec.task, spec.input, False)


# --- devices and seeds ---------------------------------------------------------------------------


def select_device(gpu_requested: int | bool) -> torch.device:
    """CUDA when a GPU is requested (the job's ``resources.gpu``) and present; else the CPU."""
    if gpu_requested and torch.cuda.is_available():
        device = torch.device("cuda")
        log.info("device: %s (%s)", device, torch.cuda.get_device_name(device))
    elif gpu_requested:
        device = torch.device("cpu")
        log.warning("device: cpu (a GPU was requested but torch sees no CUDA device)")
    else:
        device = torch.device("cpu")
        log.info("device: cpu (no GPU requested)")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (for libraries that use the global state)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for epoch ``epoch`` of run ``seed``: independent streams, no carried state."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


# --- the data of a run ---------------------------------------------------------------------------


@dataclass
class RunData:
    """The normalized training and validation parts of a run, and what had to be left out."""

    kind: ModelKind
    feature: str
    train: WindowedClips | FrameClips
    val: WindowedClips | FrameClips
    zscore: ZScore
    feature_names: list[str]
    problems: list[dict]


def load_part(
    kind: ModelKind, config: TrainConfig, clip_ids: Sequence[str]
) -> tuple[WindowedClips | FrameClips, list[dict]]:
    """The clips ``clip_ids`` of the run's feature table, with targets or labels."""
    if kind.input == "windows":
        if kind.task == "regression" and not config.targets_path:
            raise ConfigError(f"model {config.model} learns arousal/valence: give targets_path")
        return load_windowed(config.features_path, clip_ids, config.targets_path)
    return load_frames(config.features_path, config.clips_path, clip_ids)


def prepare_data(config: TrainConfig) -> RunData:
    """Read the train and val parts, fit z-scores on train, normalize both."""
    kind = model_kind(config.model)
    parts = read_split(config.split_path)
    if not parts["train"]:
        raise DatasetError(f"{config.split_path}: the split has no training clips")
    train, problems = load_part(kind, config, parts["train"])
    val, val_problems = load_part(kind, config, parts["val"])
    if not train.clip_ids:
        raise DatasetError(
            f"none of the {len(parts['train'])} training clips of {config.split_path} could be "
            f"used with {config.features_path}; see the problems logged above"
        )
    if kind.input == "windows":
        zscore, names = ZScore.fit_windows(train), train.feature_names
    else:
        zscore, names = ZScore.fit_frames(train), []
    meta = metadata_of(config.features_path, ("windows", "frames"))
    return RunData(
        kind=kind,
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


# --- losses and scores ---------------------------------------------------------------------------


def rmse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over output dimensions of each dimension's RMSE over the unmasked windows.

    Malik et al. train each branch (arousal, valence) on its own RMSE; their sum, halved, is this.
    """
    weight = mask.unsqueeze(-1).to(pred.dtype)
    mse = ((pred - target) ** 2 * weight).sum((0, 1)) / weight.sum((0, 1)).clamp_min(1.0)
    return torch.sqrt(mse + 1e-12).mean()


def regression_scores(
    predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray]
) -> tuple[float, float]:
    """(loss, metric) on whole songs: both the RMSE pooled over windows, averaged over dims."""
    pred, true = np.concatenate(predictions), np.concatenate(targets)
    rmse = float(np.sqrt(((pred - true) ** 2).mean(0)).mean())
    return rmse, rmse


def classification_scores(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(cross-entropy, accuracy) of class probabilities against label indices."""
    picked = probabilities[np.arange(len(labels)), labels]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return loss, float((probabilities.argmax(1) == labels).mean())


def select_rule(config: TrainConfig, val: WindowedClips | FrameClips) -> str:
    """The validation value that picks the best epochs: ``loss`` or ``score``.

    ``select_by: auto`` takes the score (macro-F1) only when every class has at least
    ``score_min_val_per_class`` validation clips: on fewer, macro-F1 moves in coarse steps and
    peaks early by chance (docs/recipes.md), while the loss still falls. Regression's score is
    the RMSE, which is its loss too.
    """
    if config.select_by != "auto":
        return config.select_by
    if isinstance(val, WindowedClips):
        return "score"
    per_class = np.bincount(val.labels, minlength=len(val.classes))
    return "score" if per_class.min() >= config.score_min_val_per_class else "loss"


def validate(predictor, data: WindowedClips | FrameClips, select_by: str = "loss"):
    """(loss, metric, selection value) on a normalized part; the selection value (lower is
    better) is the loss, or with ``select_by: score`` -macro-F1 / RMSE."""
    if not data.clip_ids:
        return math.nan, math.nan, math.nan
    if isinstance(data, WindowedClips):
        loss, metric = regression_scores(predictor.predict_windows(data.features), data.targets)
        return loss, metric, loss if select_by == "loss" else metric
    probabilities = predictor.predict_proba(data.features, data.n_valid_frames)
    loss, metric = classification_scores(probabilities, data.labels)
    if select_by == "loss":
        return loss, metric, loss
    f1 = f1_score(data.labels, probabilities.argmax(1), average="macro", zero_division=0)
    return loss, metric, -float(f1)


def score(predictor, data: WindowedClips | FrameClips) -> tuple[float, float]:
    """(loss, metric) of any predictor (network or baseline) on a normalized data part."""
    if not data.clip_ids:
        return math.nan, math.nan
    if isinstance(data, WindowedClips):
        return regression_scores(predictor.predict_windows(data.features), data.targets)
    return classification_scores(
        predictor.predict_proba(data.features, data.n_valid_frames), data.labels
    )


# --- networks: prediction --------------------------------------------------------------------


class NetworkPredictor:
    """A trained network behind the predictor interface that baselines share.

    ``predict_windows`` cuts each song into ``seq_len`` chunks (:func:`chunk_starts`), runs them
    in batches of equal length and stitches the outputs back (every window predicted once), then
    smooths each song with a centred moving average of ``smooth_windows`` windows (1: none).
    ``predict_proba`` returns class probabilities of whole clips: the network sees crops of
    ``input_frames`` frames (None: the whole stored matrix), the centre crop of the valid frames
    when ``crop_hop`` is None, else crops every ``crop_hop`` frames whose probabilities are
    averaged (:func:`~merflow.data.eval_crop_starts`).
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        seq_len: int | None = None,
        batch_size: int = 32 * PREDICTION_BATCH_FACTOR,
        *,
        input_frames: int | None = None,
        crop_hop: int | None = None,
        smooth_windows: int = 1,
    ):
        self.model, self.device, self.seq_len = model, device, seq_len
        self.batch_size = batch_size
        self.input_frames, self.crop_hop = input_frames, crop_hop
        self.smooth_windows = smooth_windows

    @classmethod
    def for_config(cls, model: nn.Module, device: torch.device, config: TrainConfig):
        """The predictor a run trained with ``config`` validates and is evaluated with."""
        return cls(
            model,
            device,
            config.seq_len,
            config.batch_size * PREDICTION_BATCH_FACTOR,
            input_frames=config.input_frames,
            crop_hop=config.eval_crop_hop,
            smooth_windows=config.smooth_windows,
        )

    @torch.no_grad()
    def predict_windows(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.model.eval()
        plans = [chunk_starts(len(x), self.seq_len or len(x)) for x in features]
        chunks = [
            (song, start, min(self.seq_len or len(x), len(x)))
            for song, (x, starts) in enumerate(zip(features, plans, strict=True))
            for start in starts
        ]
        outputs: dict[tuple[int, int], np.ndarray] = {}
        for length in sorted({c[2] for c in chunks}):
            same = [c for c in chunks if c[2] == length]
            for i in range(0, len(same), self.batch_size):
                batch = same[i : i + self.batch_size]
                x = np.stack([features[s][start : start + length] for s, start, _ in batch])
                y = self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
                outputs.update({(s, start): y[j] for j, (s, start, _) in enumerate(batch)})
        return [
            moving_average(
                stitch_song_predictions(len(x), starts, [outputs[(song, s)] for s in starts]),
                self.smooth_windows,
            )
            for song, (x, starts) in enumerate(zip(features, plans, strict=True))
        ]

    @torch.no_grad()
    def predict_proba(self, features: np.ndarray, n_valid_frames: np.ndarray) -> np.ndarray:
        self.model.eval()
        length = self.input_frames or features.shape[2]
        crops = [
            (clip, start)
            for clip, n_valid in enumerate(n_valid_frames)
            for start in eval_crop_starts(n_valid, features.shape[2], length, self.crop_hop)
        ]
        sums = np.zeros((len(features), 0), dtype=np.float64)
        counts = np.zeros(len(features))
        for i in range(0, len(crops), self.batch_size):
            batch = crops[i : i + self.batch_size]
            x = np.stack([features[c, :, s : s + length] for c, s in batch])
            y = self.model(torch.from_numpy(x).to(self.device)).float()
            p = torch.softmax(y, dim=1).cpu().numpy()
            if not sums.shape[1]:
                sums = np.zeros((len(features), p.shape[1]))
            clips = np.array([c for c, _ in batch])
            np.add.at(sums, clips, p)
            np.add.at(counts, clips, 1)
        return (sums / counts[:, None]).astype(np.float32)


def load_predictor(run_dir: str | os.PathLike, device: torch.device | None = None):
    """The trained predictor of a finished run (network from ``best.pt``, or baseline)."""
    run_dir = Path(run_dir)
    config = TrainConfig.from_dict(read_record(run_dir)["config"])
    if model_kind(config.model).is_baseline:
        return baselines.load(run_dir / BASELINE_FILE)
    device = device or torch.device("cpu")
    checkpoint = load_checkpoint(run_dir / BEST_FILE, device)
    model = models.build_from_record(checkpoint["build"]).to(device)
    model.load_state_dict(checkpoint["model"])
    return _predictor(model, device, config)


def _predictor(model: nn.Module, device: torch.device, config: TrainConfig) -> NetworkPredictor:
    return NetworkPredictor.for_config(model, device, config)


# --- networks: training --------------------------------------------------------------------------


@dataclass
class Progress:
    """What survives between epochs (and runs): stored in ``last.pt``."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    epochs_since_best: int = 0
    stopped_early: bool = False
    # [value, epoch] of the epochs the checkpoint ensemble keeps, best first
    kept: list[list] = field(default_factory=list)


def train(
    run_dir: str | os.PathLike,
    config: TrainConfig,
    *,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train ``config.model`` into ``run_dir`` (resuming from ``last.pt`` if there) and return
    a summary: best epoch and scores, epochs run, whether early stopping ended it, device.

    ``on_epoch_end(epoch, history_row)`` is called after each epoch's checkpoint is written.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_debris(run_dir)  # what a killed writer of this run left
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    data = prepare_data(config)
    write_problems(run_dir / QUARANTINE_FILE, data.problems, stage="train")
    data.zscore.save(run_dir / NORM_FILE, data.feature_names)
    if data.kind.is_baseline:
        device, options = torch.device("cpu"), dict(config.model_options)
        result, n_parameters = _fit_baseline(run_dir, config, data)
    else:
        device = select_device(config.use_gpu)
        options = resolved_options(config.model, data.feature, config.model_options)
        result, n_parameters = _fit_network(run_dir, config, data, options, device, on_epoch_end)
    record = run_record(
        config.to_dict(),
        resolved={"task": data.kind.task, "feature": data.feature, "model_options": options},
        split_path=config.split_path,
        device=str(device),
        n_parameters=n_parameters,
        wall_time_s=time.perf_counter() - started,
        result=result,
    )
    write_json(record, run_dir / RUN_FILE)
    return result


def resolved_options(model: str, feature: str, user_options: dict) -> dict:
    """The model's defaults, under the paper's per-feature settings, under the user's options."""
    spec = models.get_spec(model)
    return {**spec.defaults, **models.feature_options(model, feature), **user_options}


def _fit_baseline(run_dir: Path, config: TrainConfig, data: RunData) -> tuple[dict, int]:
    started = time.perf_counter()
    fitted = baselines.fit(config.model, data.train, config.model_options, seed=config.seed)
    fitted.save(run_dir / BASELINE_FILE)
    train_loss, train_metric = score(fitted, data.train)
    val_loss, val_metric = score(fitted, data.val)
    row = _history_row(1, train_loss, val_loss, train_metric, val_metric, started)
    _write_history(run_dir / HISTORY_FILE, [row])
    log.info("%s fitted: %s", config.model, _describe(row))
    result = {
        "best_epoch": 1,
        "best_val_loss": _finite(val_loss),
        "best_val_metric": _finite(val_metric),
        "epochs_run": 1,
        "stopped_early": False,
        "epoch_seconds_total": row["seconds"],
    }
    return result, fitted.n_parameters


def _fit_network(
    run_dir: Path,
    config: TrainConfig,
    data: RunData,
    options: dict,
    device: torch.device,
    on_epoch_end: Callable[[int, dict], None] | None,
) -> tuple[dict, int]:
    build_args = _build_args(config.model, data, options)
    if config.input_frames and "n_frames" in build_args:
        crop_start(0, build_args["n_frames"], config.input_frames)  # the table is wide enough
        build_args["n_frames"] = config.input_frames
    torch.manual_seed(config.seed)
    model = models.build_from_record(build_args).to(device)
    n_parameters = models.count_parameters(model)
    optimizer = _optimizer(model, config)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    data_key = data_fingerprint(data)
    progress, kept_states = _resume(
        run_dir / LAST_FILE, config, model, optimizer, scaler, device, data_key
    )
    log.info(
        "%s: %d parameters, %d train / %d val clips, %s, from epoch %d",
        config.model,
        n_parameters,
        len(data.train.clip_ids),
        len(data.val.clip_ids),
        device,
        progress.epoch + 1,
    )
    if not data.val.clip_ids:
        log.warning("no validation clips: no early stopping; the last epoch is kept as best")
    predictor = _predictor(model, device, config)
    select_by = select_rule(config, data.val)
    fixed_tensors = None if _varies_by_epoch(config) else _training_tensors(data, config, None)
    while progress.epoch < config.epochs and not progress.stopped_early:
        epoch = progress.epoch + 1
        started = time.perf_counter()
        torch.manual_seed(epoch_seed(config.seed, epoch))  # dropout of this epoch
        if fixed_tensors is not None:
            tensors = fixed_tensors
        else:  # new random crops, chunk grids or augmentation every epoch
            rng = np.random.default_rng(epoch_seed(config.seed, epoch))
            tensors = _training_tensors(data, config, rng)
        train_loss, train_metric = _train_epoch(
            model, optimizer, scaler, tensors, data.kind.task, config, epoch, device, use_amp
        )
        val_loss, val_metric, selection = validate(predictor, data.val, select_by)
        row = _history_row(epoch, train_loss, val_loss, train_metric, val_metric, started)
        _advance(progress, row, config.patience, selection, keep=config.checkpoint_ensemble)
        if config.checkpoint_ensemble > 1:
            kept_states = _keep_state(kept_states, progress, epoch, model)
        if progress.best_epoch == epoch or epoch in kept_states:
            _save_atomic(_best(model, build_args, progress, kept_states), run_dir / BEST_FILE)
        _save_atomic(
            _checkpoint(config, data_key, model, optimizer, scaler, progress, kept_states),
            run_dir / LAST_FILE,
        )
        _write_history(run_dir / HISTORY_FILE, progress.history)
        log.info(
            "epoch %d/%d %s%s",
            epoch,
            config.epochs,
            _describe(row),
            " *" if progress.best_epoch == epoch else "",
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    _write_history(run_dir / HISTORY_FILE, progress.history)  # also when resumed finished
    if progress.stopped_early:
        log.info(
            "early stopping: no better validation %s for %d epochs",
            select_by,
            config.patience,
        )
    best = progress.history[progress.best_epoch - 1] if progress.best_epoch else {}
    result = {
        "best_epoch": progress.best_epoch,
        "best_val_loss": _finite(best.get("val_loss")),
        "best_val_metric": _finite(best.get("val_metric")),
        "epochs_run": progress.epoch,
        "stopped_early": progress.stopped_early,
        "selected_by": select_by,
        **({"ensemble_epochs": _kept_epochs(progress)} if config.checkpoint_ensemble > 1 else {}),
        "epoch_seconds_total": round(sum(row["seconds"] for row in progress.history), 3),
    }
    return result, n_parameters


def _build_args(name: str, data: RunData, options: dict) -> dict:
    if isinstance(data.train, WindowedClips):
        return {
            "name": name,
            "n_features": data.train.n_features,
            "n_outputs": data.train.targets[0].shape[1],
            "options": options,
        }
    n_mels, n_frames = data.train.features.shape[1:]
    return {
        "name": name,
        "n_features": int(n_mels),
        "n_outputs": len(data.train.classes),
        "n_frames": int(n_frames),
        "options": options,
    }


def _varies_by_epoch(config: TrainConfig) -> bool:
    """Whether the training data differ between epochs (crops, chunk grids, augmentation)."""
    return (
        config.random_offset
        or config.train_crop == "random"
        or (config.time_masks > 0 and config.time_mask_frames > 0)
        or (config.freq_masks > 0 and config.freq_mask_bands > 0)
        or config.gain_db > 0
        or config.freq_shift_bands > 0
    )


def _training_tensors(
    data: RunData, config: TrainConfig, rng: np.random.Generator | None
) -> tuple[torch.Tensor, ...]:
    """(inputs, targets[, mask]) of the whole training part as CPU tensors.

    Frames: one crop of ``input_frames`` per clip (random with ``train_crop: random``), then the
    recipe's masks and gain (:mod:`merflow.augment`). Windows: ``seq_len`` chunks every
    ``chunk_hop`` windows, on a randomly offset grid with ``random_offset``.
    """
    train = data.train
    if isinstance(train, FrameClips):
        length = config.input_frames or train.features.shape[2]
        random_crop = rng if config.train_crop == "random" else None
        x = crop_frames(train.features, train.n_valid_frames, length, random_crop)
        if rng is not None:
            x = _augment(x, rng, config, data.zscore.std)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(train.labels)
    x, y, mask = make_sequences(
        train.features,
        train.targets,
        config.seq_len,
        hop=config.chunk_hop,
        rng=rng if config.random_offset else None,
    )
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


def _augment(
    x: np.ndarray, rng: np.random.Generator, config: TrainConfig, band_std: np.ndarray
) -> np.ndarray:
    x = augment.random_gain(x, rng, config.gain_db, band_std)
    x = augment.freq_shift(x, rng, config.freq_shift_bands)
    x = np.array(x, dtype=np.float32)  # a copy: masks write in place
    augment.time_mask(x, rng, config.time_masks, config.time_mask_frames)
    augment.freq_mask(x, rng, config.freq_masks, config.freq_mask_bands)
    return x


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params, lr, decay = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=lr, weight_decay=decay)


def scheduled_lr(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate of batch ``step`` of ``epoch`` (1-based): a pure function, so a resumed
    run needs no scheduler state. ``cosine``: linear warm-up over ``warmup_epochs``, then cosine
    decay to zero at the end of epoch ``epochs``; with ``lr_cycles`` > 1 the time after the
    warm-up is cut into that many equal cycles, each decaying from ``lr`` to zero (warm
    restarts): the epochs a checkpoint ensemble keeps can then come from different cycles."""
    if config.lr_schedule == "constant":
        return config.lr
    position = (epoch - 1) + step / max(steps_per_epoch, 1)  # epochs done before this batch
    warmup = config.warmup_epochs
    if position < warmup:
        return config.lr * (position + 1 / max(steps_per_epoch, 1)) / warmup
    span = max(config.epochs - warmup, 1e-9)
    elapsed = position - warmup
    if elapsed >= span:
        return 0.0
    cycle = span / config.lr_cycles
    progress = (elapsed % cycle) / cycle
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _batch_order(
    tensors: tuple[torch.Tensor, ...], task: str, config: TrainConfig, epoch: int
) -> torch.Tensor:
    """The epoch's order of training items: a seeded permutation, or with
    ``balanced_sampling`` as many draws (with replacement) weighted by 1 / class frequency."""
    generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
    n = len(tensors[0])
    if not (config.balanced_sampling and task == "classification"):
        return torch.randperm(n, generator=generator)
    labels = tensors[1]
    weights = 1.0 / torch.bincount(labels).double()[labels]
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    tensors: tuple[torch.Tensor, ...],
    task: str,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    use_amp: bool,
) -> tuple[float, float]:
    """One pass over the training tensors in a seeded order; mean loss and metric per item."""
    model.train()
    order = _batch_order(tensors, task, config, epoch)
    mix_rng = np.random.default_rng([epoch_seed(config.seed, epoch), 1])  # its own stream
    on_cuda = device.type == "cuda"
    n_steps = math.ceil(len(order) / config.batch_size)
    total_loss = total_metric = 0.0
    for step, start in enumerate(range(0, len(order), config.batch_size)):
        index = order[start : start + config.batch_size]
        batch = [t[index] for t in tensors]
        if on_cuda:
            batch = [t.pin_memory().to(device, non_blocking=True) for t in batch]
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(config, epoch, step, n_steps)
        lam, partner = (None, None)
        if task == "classification":
            lam, partner = augment.mixup_pairs(len(index), config.mixup, mix_rng)
        inputs = batch[0]
        if lam is not None:
            partner = torch.from_numpy(partner).to(inputs.device)
            inputs = lam * inputs + (1.0 - lam) * inputs[partner]
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            output = model(inputs)
        data_loss, metric = _batch_loss(output.float(), batch[1:], task, config.label_smoothing)
        if lam is not None:
            other, _ = _batch_loss(
                output.float(), [batch[1][partner]], task, config.label_smoothing
            )
            data_loss = lam * data_loss + (1.0 - lam) * other
        loss = data_loss + model.penalty().float()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total_loss += loss.item() * len(index)
        total_metric += metric * len(index)
    return total_loss / len(order), total_metric / len(order)


def _batch_loss(
    output: torch.Tensor, truth: Sequence[torch.Tensor], task: str, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, float]:
    if task == "regression":
        loss = rmse_loss(output, truth[0], truth[1])
        return loss, loss.item()
    loss = F.cross_entropy(output, truth[0], label_smoothing=label_smoothing)
    return loss, (output.argmax(1) == truth[0]).float().mean().item()


def _advance(
    progress: Progress, row: dict, patience: int, selection: float | None = None, keep: int = 1
) -> None:
    """Record an epoch; track the best validation value (``selection``, lower is better; the
    validation loss by default; kept in ``best_loss``), the ``keep`` best epochs (``kept``; ties
    go to the earlier epoch; without validation the latest epochs) and decide on early
    stopping."""
    progress.epoch = row["epoch"]
    progress.history.append(row)
    val_loss = row["val_loss"] if selection is None else selection
    if keep > 1:
        value = -float(row["epoch"]) if math.isnan(val_loss) else float(val_loss)
        progress.kept = sorted([*progress.kept, [value, row["epoch"]]])[:keep]
    without_validation = math.isnan(val_loss)
    if without_validation or val_loss < progress.best_loss:
        progress.best_epoch, progress.epochs_since_best = row["epoch"], 0
        if not without_validation:
            progress.best_loss = val_loss
    else:
        progress.epochs_since_best += 1
        progress.stopped_early = progress.epochs_since_best >= patience


def _history_row(epoch, train_loss, val_loss, train_metric, val_metric, started) -> dict:
    return {
        "epoch": int(epoch),
        "train_loss": float(train_loss),
        "val_loss": float(val_loss),
        "train_metric": float(train_metric),
        "val_metric": float(val_metric),
        "seconds": round(time.perf_counter() - started, 4),
    }


def _describe(row: dict) -> str:
    return (
        " ".join(f"{k}={row[k]:.4f}" for k in HISTORY_COLUMNS[1:-1]) + f" ({row['seconds']:.1f} s)"
    )


def _write_history(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).to_csv(tmp, index=False)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# --- checkpoints ---------------------------------------------------------------------------------


def _save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _checkpoint(
    config, data_key, model, optimizer, scaler, progress: Progress, kept_states: dict
) -> dict:
    return {
        "resume_key": {**config.resume_key(), "data": data_key},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "progress": asdict(progress),
        "kept_states": {str(epoch): state for epoch, state in kept_states.items()},
    }


def _kept_epochs(progress: Progress) -> list[int]:
    return [epoch for _, epoch in progress.kept]


def _keep_state(kept_states: dict, progress: Progress, epoch: int, model: nn.Module) -> dict:
    """The weights of the epochs in ``progress.kept``: this epoch's, if it is one of them."""
    kept = _kept_epochs(progress)
    states = {e: state for e, state in kept_states.items() if e in kept}
    if epoch in kept:
        states[epoch] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return states


def _best(model: nn.Module, build_args: dict, progress: Progress, kept_states: dict) -> dict:
    """What ``best.pt`` holds: the best epoch's weights, or the kept epochs' as one
    :class:`~merflow.models.CheckpointEnsemble` (best first)."""
    if len(kept_states) <= 1:  # the best epoch alone: this epoch
        return {"model": model.state_dict(), "build": build_args, "epoch": progress.best_epoch}
    epochs = _kept_epochs(progress)
    state = {
        f"members.{i}.{name}": value
        for i, epoch in enumerate(epochs)
        for name, value in kept_states[epoch].items()
    }
    build = {**build_args, "members": len(epochs)}
    return {"model": state, "build": build, "epoch": progress.best_epoch, "epochs": epochs}


def _resume(path: Path, config, model, optimizer, scaler, device, data_key: str):
    """Load ``last.pt`` when it belongs to this run: the same settings and the same data
    (``data_key``); a fresh start otherwise, and when the file is damaged (it is then kept as
    ``last.pt.damaged``). Also the weights of the epochs the checkpoint ensemble keeps."""
    if not path.is_file():
        return Progress(), {}
    if not (path.parent / BEST_FILE).is_file():
        log.warning("%s has no %s beside it; starting afresh", path, BEST_FILE)
        return Progress(), {}
    try:
        checkpoint = load_checkpoint(path, device)
    except RunFileError as exc:
        os.replace(path, path.with_name(path.name + ".damaged"))
        log.warning("%s; moved aside as %s.damaged, starting afresh", exc, path.name)
        return Progress(), {}
    if checkpoint.get("resume_key") != {**config.resume_key(), "data": data_key}:
        why = "other data" if checkpoint.get("resume_key", {}).get("data") != data_key else None
        log.warning("%s was written with %s; starting afresh", path, why or "other settings")
        return Progress(), {}
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scaler.load_state_dict(checkpoint["scaler"])
    progress = Progress(**checkpoint["progress"])
    if progress.stopped_early and config.patience > progress.epochs_since_best:
        progress.stopped_early = False  # a larger patience lets the run go on
    log.info("resuming %s after epoch %d", path.parent, progress.epoch)
    kept_states = {int(e): state for e, state in checkpoint.get("kept_states", {}).items()}
    return progress, kept_states
