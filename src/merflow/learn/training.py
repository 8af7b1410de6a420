"""Training one run: a model (network or baseline) on one feature table, split and seed.

What a run folder holds is :mod:`merflow.runs`; what the run learns from, :mod:`.run_data`; the
pieces a recipe adds (crops, masks, sampling, schedules), :mod:`.recipe_pieces`; how a trained
network predicts, :mod:`.inference`; what a network must offer the loop (``forward`` and
``penalty``), :class:`merflow.models.network.Network`. This module is the loop.

Losses and metrics (the columns of ``history.csv``): regression trains on the RMSE of the paper
(the mean over arousal and valence of each dimension's RMSE) plus ``model.penalty()``; its metric
is the same RMSE without the penalty. Classification trains on cross-entropy (+ penalty); its
metric is accuracy. Training columns average the epoch's batches (in training mode, as Keras
reports them); validation columns score whole songs stitched from ``seq_len`` chunks, exactly as
evaluation does, without the penalty. The best epochs are chosen on the validation value of
``select_by``; without a validation part every epoch counts as the best.

Determinism and resuming: every source of randomness in epoch ``e`` (batch order, random chunk
offsets, crops, masks, dropout) is reseeded from ``(seed, e)`` at the start of the epoch. An epoch
is thus a pure function of the weights and optimizer state it starts from, and a run that is
killed and started again resumes from ``last.pt`` and ends with the very numbers of an
uninterrupted run (on the CPU; CUDA kernels are deterministic only as far as
``torch.use_deterministic_algorithms`` reaches). For the same reason ``last.pt`` stores no RNG
states: there are none to carry over. A checkpoint resumes only the settings and the data
(:func:`~merflow.learn.run_data.data_fingerprint`) that wrote it.
What a run reports while it trains (``history.csv``, ``status.json``, TensorBoard) is
:mod:`merflow.learn.tracking`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the torch convention)
from sklearn.metrics import f1_score

from merflow import models
from merflow.devices import epoch_seed, seed_everything, select_device
from merflow.io import remove_debris, write_json
from merflow.learn import baselines, tracking
from merflow.learn.checkpoints import (
    Progress,
    best_state,
    keep_state,
    kept_epochs,
    last_state,
    resume,
    save_atomic,
)
from merflow.learn.data import ClipVectors, FrameClips, WindowedClips
from merflow.learn.fusion import LateFusion
from merflow.learn.inference import NetworkPredictor
from merflow.learn.recipe_pieces import (
    batch_order,
    crop_start,
    make_optimizer,
    scheduled_lr,
    select_rule,
    training_tensors,
    varies_by_epoch,
)
from merflow.learn.recipes import TrainConfig
from merflow.learn.run_data import RunData, data_fingerprint, prepare_data, write_problems
from merflow.models.network import Network
from merflow.provenance import run_record
from merflow.runs import (
    BASELINE_FILE,
    BEST_FILE,
    HISTORY_FILE,
    LAST_FILE,
    NORM_FILE,
    QUARANTINE_FILE,
    RUN_FILE,
    TENSORBOARD_DIR,
)

log = logging.getLogger(__name__)


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


# --- networks: training --------------------------------------------------------------------------


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
    baseline = models.spec(config.model).baseline
    device = torch.device("cpu") if baseline else select_device(config.use_gpu)
    seed_everything(config.seed, cuda=device.type == "cuda")
    tracking.write_status(run_dir, 1 if baseline else config.epochs, device)
    data = prepare_data(config)
    write_problems(run_dir / QUARANTINE_FILE, data.problems, stage="train")
    data.zscore.save(run_dir / NORM_FILE, data.feature_names)
    options = models.resolved_options(config.model, data.feature, config.model_options)
    if baseline:
        result, n_parameters = _fit_baseline(run_dir, config, data, options)
    else:
        result, n_parameters = _fit_network(run_dir, config, data, options, device, on_epoch_end)
    record = run_record(
        config.to_dict(),
        resolved={"task": data.model.task, "feature": data.feature, "model_options": options},
        split_path=config.split_path,
        device=str(device),
        n_parameters=n_parameters,
        wall_time_s=time.perf_counter() - started,
        result=result,
    )
    write_json(record, run_dir / RUN_FILE)
    return result


def _fit_baseline(
    run_dir: Path, config: TrainConfig, data: RunData, options: dict
) -> tuple[dict, int]:
    started = time.perf_counter()
    if config.fusion.get("method") == "late":
        fitted = LateFusion.fit(
            config.model, data.train, options, config.seed, config.features_path, config.fusion
        )
    else:
        fitted = baselines.fit(config.model, data.train, options, seed=config.seed)
    fitted.save(run_dir / BASELINE_FILE)
    train_loss, train_metric = score(fitted, data.train)
    val_loss, val_metric = score(fitted, data.val)
    row = tracking.history_row(1, train_loss, val_loss, train_metric, val_metric, started)
    tracking.write_history(run_dir / HISTORY_FILE, [row])
    log.info("%s fitted: %s", config.model, tracking.describe(row))
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
    optimizer = make_optimizer(model, config)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    # A checkpoint resumes only the run that wrote it: same settings, network and data.
    resume_key = {**config.resume_key(), "build": build_args, "data": data_fingerprint(data)}
    progress, kept_states = resume(
        run_dir / LAST_FILE, resume_key, model, optimizer, scaler, device
    )
    if progress.stopped_early and config.patience > progress.epochs_since_best:
        progress.stopped_early = False  # a larger patience lets the run go on
    log.info(
        "%s: %d parameters, %d train / %d val clips, %s, from epoch %d",
        config.model,
        n_parameters,
        len(data.train.clip_ids),
        len(data.val.clip_ids),
        device,
        progress.epoch + 1,
    )
    validated = bool(data.val.clip_ids)
    if not validated:
        log.warning("no validation clips: no early stopping; the last epoch is kept as best")
    predictor = NetworkPredictor.for_config(model, device, config)
    select_by = select_rule(config, data.val)
    fixed_tensors = None if varies_by_epoch(config) else training_tensors(data, config, None)
    board = tracking.TensorBoard(run_dir / TENSORBOARD_DIR, first_epoch=progress.epoch + 1)
    while progress.epoch < config.epochs and not progress.stopped_early:
        epoch = progress.epoch + 1
        started = time.perf_counter()
        torch.manual_seed(epoch_seed(config.seed, epoch))  # dropout of this epoch
        if fixed_tensors is not None:
            tensors = fixed_tensors
        else:  # new random crops, chunk grids or augmentation every epoch
            rng = np.random.default_rng(epoch_seed(config.seed, epoch))
            tensors = training_tensors(data, config, rng)
        train_loss, train_metric = _train_epoch(
            model, optimizer, scaler, tensors, data.model.task, config, epoch, device, use_amp
        )
        val_loss, val_metric, selection = validate(predictor, data.val, select_by)
        row = tracking.history_row(epoch, train_loss, val_loss, train_metric, val_metric, started)
        _advance(progress, row, config.patience, selection, config.checkpoint_ensemble, validated)
        if config.checkpoint_ensemble > 1:
            kept_states = keep_state(kept_states, progress, epoch, model)
        if progress.best_epoch == epoch or epoch in kept_states:
            save_atomic(best_state(model, build_args, progress, kept_states), run_dir / BEST_FILE)
        save_atomic(
            last_state(resume_key, model, optimizer, scaler, progress, kept_states),
            run_dir / LAST_FILE,
        )
        tracking.write_history(run_dir / HISTORY_FILE, progress.history)
        board.add(row, lr=optimizer.param_groups[0]["lr"])
        star = " *" if progress.best_epoch == epoch else ""
        log.info("epoch %d/%d %s%s", epoch, config.epochs, tracking.describe(row), star)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    board.close()
    tracking.write_history(run_dir / HISTORY_FILE, progress.history)  # also when resumed finished
    if progress.stopped_early:
        log.info(
            "early stopping: no better validation %s for %d epochs", select_by, config.patience
        )
    best = progress.history[progress.best_epoch - 1] if progress.best_epoch else {}
    result = {
        "best_epoch": progress.best_epoch,
        "best_val_loss": _finite(best.get("val_loss")),
        "best_val_metric": _finite(best.get("val_metric")),
        "epochs_run": progress.epoch,
        "stopped_early": progress.stopped_early,
        "selected_by": select_by,
        **({"ensemble_epochs": kept_epochs(progress)} if config.checkpoint_ensemble > 1 else {}),
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
    if isinstance(data.train, ClipVectors):
        return {
            "name": name,
            "n_features": int(data.train.features.shape[1]),
            "n_outputs": len(data.train.classes),
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


def _train_epoch(
    model: Network,
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
    order = batch_order(tensors, task, config, epoch)
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
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            output = model(batch[0])
        data_loss, metric = _batch_loss(output.float(), batch[1:], task, config.label_smoothing)
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
    progress: Progress,
    row: dict,
    patience: int,
    selection: float | None = None,
    keep: int = 1,
    validated: bool = True,
) -> None:
    """Record an epoch; track the best validation value (``selection``, lower is better; the
    validation loss by default; kept in ``best_loss``), the ``keep`` best epochs (``kept``; ties
    go to the earlier epoch; without validation the latest epochs) and decide on early
    stopping. A validation value that is not a number (a diverged epoch) is never the best."""
    progress.epoch = row["epoch"]
    progress.history.append(row)
    val_loss = row["val_loss"] if selection is None else selection
    if validated and math.isnan(val_loss):
        val_loss = math.inf
    if keep > 1:
        value = float(val_loss) if validated else -float(row["epoch"])
        progress.kept = sorted([*progress.kept, [value, row["epoch"]]])[:keep]
    if not validated or val_loss < progress.best_loss:
        progress.best_epoch, progress.epochs_since_best = row["epoch"], 0
        if validated:
            progress.best_loss = val_loss
    else:
        progress.epochs_since_best += 1
        progress.stopped_early = progress.epochs_since_best >= patience


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
