"""The pieces training recipes are made of: small functions the training loop plugs in.

* crops of a clip's log-mel frames, for training (centre or random) and for prediction (every
  ``eval_crop_hop`` frames, the probabilities averaged);
* SpecAugment-style time and frequency masks and a random gain, on the z-scored ``(N, n_mels,
  n_frames)`` arrays training holds: masks set frames or bands to 0, the training mean, so the
  masked part carries no information and no new level; a gain of ``g`` dB adds ``g / std`` to
  each band (:func:`apply_gain`);
* the epoch's order of training items (a permutation, or class-balanced draws), the learning
  rate of every batch (constant, or warm-up then cosine decay), the choice of the validation
  value that selects the best epochs, and the moving average that smooths predictions over time.

Every random piece takes a numpy ``Generator`` (or a seed) that training derives from ``(seed,
epoch)``, so an epoch's data are a pure function of the epoch and a resumed run draws exactly
what an uninterrupted one would.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from merflow.devices import epoch_seed
from merflow.errors import DatasetError
from merflow.learn.data import ClipVectors, FrameClips, WindowedClips
from merflow.learn.recipes import TrainConfig
from merflow.learn.run_data import RunData
from merflow.learn.sequences import chunk_starts, make_sequences

# --- crops ---------------------------------------------------------------------------------------


def crop_start(
    n_valid: int, n_total: int, length: int, rng: np.random.Generator | None = None
) -> int:
    """Start of a ``length``-frame crop of a clip with ``n_valid`` audio frames in ``n_total``.

    Without ``rng``: the centre of the valid frames (the paper recipe: stored at 640 frames with
    ``crop: center`` this is the whole matrix, stored longer it is the same middle ~15 s). With
    ``rng``: uniform over every crop that lies within the valid frames. A clip shorter than
    ``length`` starts at 0 and keeps its stored padding.
    """
    if length > n_total:
        raise DatasetError(
            f"crops of {length} frames asked from a feature table of {n_total} frames; extract "
            f"logmel with n_frames >= {length} or lower the training setting input_frames"
        )
    spare = max(int(n_valid) - length, 0)
    start = spare // 2 if rng is None else int(rng.integers(0, spare + 1))
    return min(start, n_total - length)


def crop_frames(
    features: np.ndarray,
    n_valid_frames: np.ndarray,
    length: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One ``length``-frame crop of each clip of ``features (N, n_mels, T)``: ``(N, n_mels, L)``."""
    n_total = features.shape[2]
    if length == n_total:
        return features
    starts = [crop_start(n, n_total, length, rng) for n in n_valid_frames]
    return np.stack([x[:, s : s + length] for x, s in zip(features, starts, strict=True)])


def eval_crop_starts(n_valid: int, n_total: int, length: int, hop: int | None) -> list[int]:
    """Starts of the crops a clip is predicted from: every ``hop`` frames over its valid frames
    (the last one aligned to their end, as :func:`chunk_starts`), or the centre crop alone when
    ``hop`` is None."""
    if hop is None:
        return [crop_start(n_valid, n_total, length)]
    crop_start(n_valid, n_total, length)  # the same check of the table's width
    return chunk_starts(max(int(n_valid), length), length, hop)


# --- augmentation --------------------------------------------------------------------------------


def time_mask(x: np.ndarray, rng: np.random.Generator, n_masks: int, max_width: int) -> None:
    """Zero ``n_masks`` runs of up to ``max_width`` frames in each clip of ``x`` (in place)."""
    _mask(x, rng, n_masks, max_width, axis=2)


def freq_mask(x: np.ndarray, rng: np.random.Generator, n_masks: int, max_width: int) -> None:
    """Zero ``n_masks`` runs of up to ``max_width`` mel bands in each clip of ``x`` (in place)."""
    _mask(x, rng, n_masks, max_width, axis=1)


def _mask(x: np.ndarray, rng: np.random.Generator, n_masks: int, max_width: int, axis: int):
    size = x.shape[axis]
    if n_masks <= 0 or max_width <= 0 or size == 0:
        return
    for i in range(len(x)):
        for _ in range(n_masks):
            width = int(rng.integers(0, min(max_width, size) + 1))
            start = int(rng.integers(0, size - width + 1))
            window = slice(start, start + width)
            index = (i, window) if axis == 1 else (i, slice(None), window)
            x[index] = 0.0


def apply_gain(x: np.ndarray, gain_db: np.ndarray, band_std: np.ndarray) -> np.ndarray:
    """``x`` (z-scored with per-band ``band_std``) as if each clip were ``gain_db[i]`` dB louder."""
    gain = np.asarray(gain_db, dtype=np.float32).reshape(-1, 1, 1)
    return x + gain / np.asarray(band_std, dtype=np.float32).reshape(1, -1, 1)


def random_gain(
    x: np.ndarray, rng: np.random.Generator, max_db: float, band_std: np.ndarray
) -> np.ndarray:
    """:func:`apply_gain` with a gain drawn uniformly in ``[-max_db, max_db]`` per clip."""
    if max_db <= 0:
        return x
    return apply_gain(x, rng.uniform(-max_db, max_db, size=len(x)), band_std)


def augment(
    x: np.ndarray, rng: np.random.Generator, config: TrainConfig, band_std: np.ndarray
) -> np.ndarray:
    x = random_gain(x, rng, config.gain_db, band_std)
    x = np.array(x, dtype=np.float32)  # a copy: masks write in place
    time_mask(x, rng, config.time_masks, config.time_mask_frames)
    freq_mask(x, rng, config.freq_masks, config.freq_mask_bands)
    return x


# --- what an epoch trains on ---------------------------------------------------------------------


def varies_by_epoch(config: TrainConfig) -> bool:
    """Whether the training data differ between epochs (crops, chunk grids, augmentation)."""
    return (
        config.random_offset
        or config.train_crop == "random"
        or (config.time_masks > 0 and config.time_mask_frames > 0)
        or (config.freq_masks > 0 and config.freq_mask_bands > 0)
        or config.gain_db > 0
    )


def training_tensors(
    data: RunData, config: TrainConfig, rng: np.random.Generator | None
) -> tuple[torch.Tensor, ...]:
    """(inputs, targets[, mask]) of the whole training part as CPU tensors.

    Frames: one crop of ``input_frames`` per clip (random with ``train_crop: random``), then the
    recipe's masks and gain. Clip vectors: as they are (crops and masks are for spectrograms).
    Windows: ``seq_len`` chunks every ``chunk_hop`` windows, on a randomly offset grid with
    ``random_offset``.
    """
    train = data.train
    if isinstance(train, ClipVectors):
        return torch.from_numpy(train.features), torch.from_numpy(train.labels)
    if isinstance(train, FrameClips):
        length = config.input_frames or train.features.shape[2]
        random_crop = rng if config.train_crop == "random" else None
        x = crop_frames(train.features, train.n_valid_frames, length, random_crop)
        if rng is not None:
            x = augment(x, rng, config, data.zscore.std)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(train.labels)
    x, y, mask = make_sequences(
        train.features,
        train.targets,
        config.seq_len,
        hop=config.chunk_hop,
        rng=rng if config.random_offset else None,
    )
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


def batch_order(
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


# --- optimizer, schedule, selection, smoothing --------------------------------------------------


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def scheduled_lr(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate of batch ``step`` of ``epoch`` (1-based): a pure function, so a resumed
    run needs no scheduler state. ``cosine``: linear warm-up over ``warmup_epochs``, then cosine
    decay to zero at the end of epoch ``epochs``."""
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
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * elapsed / span))


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


def moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over axis 0 of ``(T, D)`` values; near the ends the window is cut
    to the values that exist (no padding). ``width`` <= 1 returns the values unchanged."""
    if width <= 1 or len(values) < 2:
        return values
    before = (width - 1) // 2
    after = width - 1 - before
    cumulative = np.concatenate(
        [np.zeros((1, values.shape[1])), np.cumsum(values, axis=0, dtype=np.float64)]
    )
    index = np.arange(len(values))
    low = np.clip(index - before, 0, len(values))
    high = np.clip(index + after + 1, 0, len(values))
    sums = cumulative[high] - cumulative[low]
    return (sums / (high - low)[:, None]).astype(values.dtype)
