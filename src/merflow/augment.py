"""Spectrogram augmentation for the merflow recipe: crops, masks and gain on z-scored log-mels.

Everything works on the z-scored ``(N, n_mels, n_frames)`` arrays training holds, with a numpy
``Generator`` that training reseeds every epoch, so an epoch's augmented data is a pure function
of ``(seed, epoch)`` and a resumed run sees the very same batches.

* Masks (SpecAugment's time and frequency masking) set bands or frames to 0, which after
  z-scoring is the training mean: the masked part carries no information, and no new level.
* A frequency shift moves every band of a clip by the same number of mel bands.
* A gain of ``g`` dB adds ``g`` to every dB value of the clip; z-scored, that is ``g / std`` of
  each band (:func:`apply_gain`).
"""

from __future__ import annotations

import numpy as np


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


def freq_shift(x: np.ndarray, rng: np.random.Generator, max_bands: int) -> np.ndarray:
    """Each clip of ``x`` moved up or down by up to ``max_bands`` mel bands (a rough pitch
    shift); the bands shifted in are 0, the training mean."""
    if max_bands <= 0:
        return x
    shifted = np.zeros_like(x)
    n_bands = x.shape[1]
    for i, shift in enumerate(rng.integers(-max_bands, max_bands + 1, size=len(x))):
        shift = int(np.clip(shift, -n_bands, n_bands))
        if shift >= 0:
            shifted[i, shift:] = x[i, : n_bands - shift]
        else:
            shifted[i, :shift] = x[i, -shift:]
    return shifted


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


def mixup_pairs(n: int, alpha: float, generator) -> tuple[float, np.ndarray] | tuple[None, None]:
    """A mixing weight ``lam ~ Beta(alpha, alpha)`` and a permutation of ``n`` items, or Nones
    when mixup is off (``alpha <= 0``). ``generator`` is a numpy Generator."""
    if alpha <= 0 or n < 2:
        return None, None
    lam = float(generator.beta(alpha, alpha))
    return max(lam, 1.0 - lam), generator.permutation(n)
