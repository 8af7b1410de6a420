"""The 500 ms window convention: the code of record (docs/tables.md).

Time-continuous features and labels meet on one grid of non-overlapping windows of ``w`` seconds:

* window ``k`` (k = 0, 1, ...) covers ``[k*w, (k+1)*w)`` and is **labelled by its end time**
  ``t = (k+1)*w`` (a label at time t describes the window ending at t; DEAM's
  ``sample_15000ms`` is the audio from 14.5 s to 15.0 s);
* a clip of ``d`` seconds has ``floor(d / w)`` windows: a trailing partial window is dropped;
* a clip shorter than one window is zero-padded to one window (short audio is legitimate);
* an analysis frame (STFT or openSMILE) belongs to the window that holds its **centre** time.

Times within ``BOUNDARY_TOLERANCE`` windows of a boundary count as on it, so that float rounding
(``11025 / 22050`` or a nanosecond timestamp) never moves a frame to the neighbouring window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

WINDOW_S = 0.5  # docs/tables.md: the grid every time-continuous label lives on

BOUNDARY_TOLERANCE = 1e-9  # in units of one window
STATS = ("mean", "std")


def n_windows(duration_s: float, window_s: float) -> int:
    """Number of whole windows in a clip; at least one (short clips are padded to one window)."""
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    return max(1, math.floor(duration_s / window_s + BOUNDARY_TOLERANCE))


def min_samples(sample_rate: int, window_s: float) -> int:
    """Samples a signal is zero-padded to, so that it fills at least one window."""
    return math.ceil(window_s * sample_rate - BOUNDARY_TOLERANCE)


def window_end_times(count: int, window_s: float) -> np.ndarray:
    """Labels ``t`` of the first ``count`` windows: their end times ``(k+1)*w``, float64 seconds."""
    return (np.arange(count, dtype=np.float64) + 1.0) * window_s


def window_index_of(times_s: np.ndarray, window_s: float) -> np.ndarray:
    """Index ``k`` of the window holding each time (frame centre): ``floor(t / w)``."""
    times_s = np.asarray(times_s, dtype=np.float64)
    return np.floor(times_s / window_s + BOUNDARY_TOLERANCE).astype(np.int64)


def pooled_names(names: Sequence[str], stats: Sequence[str]) -> list[str]:
    """Column names of pooled features, descriptor by descriptor: ``a_mean, a_std, b_mean, ...``."""
    return [f"{name}_{stat}" for name in names for stat in stats]


def pool_windows(
    values: np.ndarray,
    frame_times_s: np.ndarray,
    count: int,
    window_s: float,
    stats: Sequence[str] = ("mean",),
) -> np.ndarray:
    """Pool frame-level values over the windows their centres fall in.

    ``values`` is ``(n_frames, n_features)``, ``frame_times_s`` the frames' centre times. Returns
    ``(count, n_features * len(stats))`` float32, ordered as :func:`pooled_names`. ``std`` is the
    population standard deviation (one frame gives 0). Frames outside windows ``0 .. count-1``
    (the dropped trailing partial window) are ignored. A window that no frame centre falls in
    (possible only when frames are sparser than windows) takes the frame whose centre is nearest
    to the window's middle, so that the output never holds NaN.
    """
    unknown = [s for s in stats if s not in STATS]
    if unknown or not stats:
        raise ValueError(f"stats must be a non-empty subset of {STATS}, got {list(stats)}")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != len(frame_times_s) or values.shape[0] == 0:
        raise ValueError(
            f"values must be (n_frames, n_features) with n_frames = {len(frame_times_s)} >= 1, "
            f"got shape {values.shape}"
        )
    index = window_index_of(frame_times_s, window_s)
    order = np.argsort(index, kind="stable")
    index, sorted_values = index[order], values[order]
    inside = (index >= 0) & (index < count)
    index, sorted_values = index[inside], sorted_values[inside]
    counts = np.bincount(index, minlength=count)
    filled = counts > 0
    starts = np.searchsorted(index, np.flatnonzero(filled))
    means = np.zeros((count, values.shape[1]))
    stds = np.zeros_like(means)
    if starts.size:
        n = counts[filled, None]
        means[filled] = np.add.reduceat(sorted_values, starts, axis=0) / n
        deviations = (sorted_values - means[index]) ** 2
        stds[filled] = np.sqrt(np.add.reduceat(deviations, starts, axis=0) / n)
    if not filled.all():
        middles = (np.flatnonzero(~filled) + 0.5) * window_s
        nearest = np.abs(np.asarray(frame_times_s)[None, :] - middles[:, None]).argmin(axis=1)
        means[~filled] = values[nearest]
    by_stat = {"mean": means, "std": stds}
    pooled = np.stack([by_stat[s] for s in stats], axis=-1)  # (count, n_features, n_stats)
    return pooled.reshape(count, -1).astype(np.float32)
