"""The 500 ms window convention (docs/tables.md) and pooling of frames into windows."""

from __future__ import annotations

import numpy as np
import pytest

from merflow.features.windows import (
    min_samples,
    n_windows,
    pool_windows,
    pooled_names,
    window_end_times,
    window_index_of,
)


@pytest.mark.parametrize(
    ("duration_s", "expected"),
    [(30.0, 60), (3.2, 6), (2.999, 5), (0.5, 1), (0.3, 1), (0.0, 1), (45.146, 90)],
)
def test_n_windows_drops_partial_window_and_keeps_at_least_one(duration_s, expected):
    assert n_windows(duration_s, 0.5) == expected


def test_n_windows_counts_an_exact_multiple_computed_from_samples():
    # 6 windows of 11025 samples at 22.05 kHz, and 3 windows of 0.1 s (0.3 / 0.1 < 3 in floats)
    assert n_windows(6 * 11025 / 22050, 0.5) == 6
    assert n_windows(0.3, 0.1) == 3


def test_window_end_times_label_each_window_by_its_end():
    np.testing.assert_array_equal(window_end_times(4, 0.5), [0.5, 1.0, 1.5, 2.0])
    assert window_end_times(0, 0.5).shape == (0,)


def test_window_index_assigns_boundaries_to_the_later_window():
    times = np.array([0.0, 0.2, 0.4999, 0.5, 0.75, 0.9999, 1.0, 1.49])
    np.testing.assert_array_equal(window_index_of(times, 0.5), [0, 0, 0, 1, 1, 1, 2, 2])


def test_window_index_is_robust_to_float_rounding_at_a_boundary():
    just_below = np.nextafter(1.5, 0.0)  # 1.5 computed with rounding error
    assert window_index_of(np.array([just_below]), 0.5)[0] == 3
    # STFT frame 43 at hop 512 is centred at 0.9985 s: inside window 1, not 2
    assert window_index_of(np.array([43 * 512 / 22050]), 0.5)[0] == 1


def test_min_samples_fills_one_window():
    assert min_samples(22050, 0.5) == 11025
    assert min_samples(11025, 0.5) == 5513  # 5512.5 rounded up


def test_pooled_names_are_descriptor_major():
    assert pooled_names(["a", "b"], ["mean", "std"]) == ["a_mean", "a_std", "b_mean", "b_std"]


def _pool_by_loop(values, times, count, window_s):
    """The definition, written plainly: stats of the frames whose centre lies in each window."""
    out = []
    for k in range(count):
        inside = (times >= k * window_s) & (times < (k + 1) * window_s)
        out.append(np.stack([values[inside].mean(0), values[inside].std(0)], axis=-1).ravel())
    return np.array(out)


def test_pool_windows_equals_plain_numpy_on_irregular_frames():
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0.0, 3.2, size=400))  # frames past 3.0 s fall in a dropped window
    values = rng.normal(size=(400, 3))
    pooled = pool_windows(values, times, 6, 0.5, ["mean", "std"])
    assert pooled.shape == (6, 6)
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, _pool_by_loop(values, times, 6, 0.5), rtol=1e-5, atol=1e-6)


def test_pool_windows_of_a_stepped_signal_steps_exactly():
    # 10 ms frames (centres 5, 15, ... ms) whose value is the window's index k: means step 0,1,2,...
    centres = (np.arange(300) + 0.5) * 0.01
    values = np.floor(centres / 0.5)[:, None] * np.array([[1.0, -2.0]])
    pooled = pool_windows(values, centres, 6, 0.5, ["mean", "std"])
    np.testing.assert_array_equal(pooled[:, 0], np.arange(6))
    np.testing.assert_array_equal(pooled[:, 2], -2 * np.arange(6))
    np.testing.assert_array_equal(pooled[:, [1, 3]], 0.0)


def test_pool_windows_order_of_frames_does_not_matter():
    rng = np.random.default_rng(1)
    times, values = rng.uniform(0, 2, 50), rng.normal(size=(50, 2))
    order = np.argsort(times)
    np.testing.assert_array_equal(
        pool_windows(values, times, 4, 0.5, ["mean", "std"]),
        pool_windows(values[order], times[order], 4, 0.5, ["mean", "std"]),
    )


def test_pool_windows_single_frame_has_zero_std_and_empty_window_takes_nearest_frame():
    times = np.array([0.1, 1.2])  # window 1 ([0.5, 1.0)) holds no frame
    values = np.array([[1.0], [5.0]])
    pooled = pool_windows(values, times, 3, 0.5, ["mean", "std"])
    np.testing.assert_array_equal(pooled, [[1.0, 0.0], [5.0, 0.0], [5.0, 0.0]])
    assert np.isfinite(pooled).all()


def test_pool_windows_rejects_unknown_stats_and_mismatched_shapes():
    with pytest.raises(ValueError, match="stats"):
        pool_windows(np.zeros((2, 1)), np.zeros(2), 1, 0.5, ["median"])
    with pytest.raises(ValueError, match="n_frames"):
        pool_windows(np.zeros((3, 1)), np.zeros(2), 1, 0.5, ["mean"])
