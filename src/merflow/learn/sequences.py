"""Songs as sequences of 500 ms windows: one chunk plan for training and prediction alike.

Songs are cut into chunks of ``seq_len`` windows by :func:`chunk_starts`, which training
(:func:`make_sequences`) and prediction share; :func:`stitch_song_predictions` puts chunk outputs
back together so that every window of a song is predicted exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def chunk_starts(
    n_windows: int, seq_len: int, hop: int | None = None, offset: int = 0
) -> list[int]:
    """Start indices of the ``seq_len``-window chunks of a song of ``n_windows`` windows.

    Chunks start at ``offset, offset + hop, …`` (``hop`` defaults to ``seq_len``: non-overlapping);
    when they stop short of the end, one more chunk is aligned to the song's end so that the last
    windows are covered too (it overlaps its predecessor). A song shorter than ``seq_len`` is a
    single, shorter chunk starting at 0.
    """
    hop = hop or seq_len
    if n_windows <= seq_len:
        return [0]
    starts = list(range(min(offset, n_windows - seq_len), n_windows - seq_len + 1, hop))
    if starts[-1] + seq_len < n_windows:
        starts.append(n_windows - seq_len)
    return starts


def make_sequences(
    features: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    seq_len: int | None,
    *,
    hop: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut songs into training sequences: ``x (N, L, F)``, ``y (N, L, 2)``, ``mask (N, L)``.

    ``seq_len=None`` keeps whole songs. With ``rng``, each song's chunk grid starts at a random
    offset in ``[0, hop)`` so that successive epochs see different chunk boundaries. Songs shorter
    than ``L`` are zero-padded and the padding is masked out of the loss.
    """
    length = seq_len or max(len(x) for x in features)
    hop = hop or length
    pieces = []
    for x, y in zip(features, targets, strict=True):
        offset = int(rng.integers(hop)) if rng is not None else 0
        pieces += [
            (x[s : s + length], y[s : s + length])
            for s in chunk_starts(len(x), length, hop, offset)
        ]
    n_features, n_targets = features[0].shape[1], targets[0].shape[1]
    xs = np.zeros((len(pieces), length, n_features), dtype=np.float32)
    ys = np.zeros((len(pieces), length, n_targets), dtype=np.float32)
    mask = np.zeros((len(pieces), length), dtype=bool)
    for i, (x, y) in enumerate(pieces):
        xs[i, : len(x)], ys[i, : len(y)], mask[i, : len(x)] = x, y, True
    return xs, ys, mask


def stitch_song_predictions(
    n_windows: int, starts: Sequence[int], chunk_outputs: Sequence[np.ndarray]
) -> np.ndarray:
    """Join the outputs of a song's chunks into one ``(n_windows, D)`` array.

    Each window takes its value from the first chunk that covers it; the end-aligned last chunk
    (see :func:`chunk_starts`) thus contributes only the windows its predecessor did not reach.
    """
    out = np.full((n_windows, chunk_outputs[0].shape[-1]), np.nan, dtype=np.float32)
    covered = 0
    for start, values in zip(starts, chunk_outputs, strict=True):
        stop = start + len(values)
        if stop > covered:
            out[max(start, covered) : stop] = values[max(start, covered) - start :]
            covered = stop
    if covered < n_windows or np.isnan(out).any():
        raise ValueError(f"chunks cover {covered} of {n_windows} windows; the chunk plan is wrong")
    return out
