"""Log-mel features: Velankar's fixed-size spectrogram and Malik's 500 ms log mel-band energies.

Decibels are absolute: ``librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)``. A per-clip
reference (``ref=np.max``) or a ``top_db`` clamp would rescale each clip by its own loudest bin
and erase the level differences between clips that arousal depends on; absolute dB keeps them,
and gives one floor for every clip: :data:`DB_FLOOR` = -100 dB, the value of digital silence.

* ``logmel`` (frame-level): ``(n_mels, n_frames)`` per clip. Clips with more frames are cropped
  (``crop: center`` keeps the middle, ``start`` the beginning); clips with fewer are padded at the
  end (``pad: constant`` with :data:`DB_FLOOR`, i.e. silence; ``repeat`` loops the clip's own
  frames; ``edge`` repeats its last frame). dB is computed over the whole clip before cropping.
  ``n_valid_frames`` records how many frames came from audio. Velankar's shape is 128 x 640; at
  22.05 kHz and hop 512 that is 14.9 s, so ``crop: center`` takes the middle 15 s of a 30 s clip.
* ``logmel_500ms`` (windowed): the mean (and optionally std) of the dB frames whose centres fall
  in each 500 ms window (:mod:`merflow.features.windows`). Malik pools "log mel-band energies
  from 500 ms segments"; averaging dB frames is the geometric mean of the energies, which follows
  loudness as heard rather than the loudest frame. 64 bands by default: Malik's ~10 k-parameter
  model implies 64-80 bands.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from merflow.errors import ConfigError
from merflow.features import params as check
from merflow.features.clip import DecodedClip
from merflow.features.spec import FeatureSpec
from merflow.features.windows import WINDOW_S, min_samples, n_windows, pool_windows, pooled_names

AMIN = 1e-10
DB_FLOOR = float(10 * np.log10(AMIN))  # -100 dB: power_to_db of zero power
CROP_POLICIES = ("center", "start")
MAX_MELS = 512  # 4x Velankar's 128; beyond it the filters are narrower than the FFT bins
MAX_FRAMES = 20_000  # 7.7 min at 22.05 kHz and hop 512: a frame matrix per clip stays < 10 MB
PAD_POLICIES = ("constant", "repeat", "edge")

_SPECTROGRAM_DEFAULTS: dict[str, Any] = {
    "sample_rate": 22050,
    "n_fft": 2048,
    "hop_length": 512,
    "fmin": 0.0,
    "fmax": None,  # None: sample_rate / 2
}
LOGMEL_DEFAULTS: dict[str, Any] = {
    **_SPECTROGRAM_DEFAULTS,
    "n_mels": 128,
    "n_frames": 640,
    "crop": "center",
    "pad": "constant",
}
LOGMEL_500MS_DEFAULTS: dict[str, Any] = {
    **_SPECTROGRAM_DEFAULTS,
    "n_mels": 64,
    "window_s": WINDOW_S,
    "stats": ["mean"],
}


def log_mel(clip: DecodedClip, params: dict[str, Any]) -> np.ndarray:
    """Absolute-dB mel spectrogram of the whole clip, ``(n_mels, n_stft_frames)`` float32.

    The same as ``librosa.feature.melspectrogram`` + ``power_to_db`` on the clip's samples, with
    the STFT shared between features and the filterbank applied by one matrix product.
    """
    import librosa

    power = clip.power_spectrogram(params["n_fft"], params["hop_length"])
    filterbank = mel_filterbank(
        clip.sample_rate, params["n_fft"], params["n_mels"], params["fmin"], params["fmax"]
    )
    return librosa.power_to_db(filterbank @ power, ref=1.0, amin=AMIN, top_db=None)


@functools.cache
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> np.ndarray:
    """librosa's (Slaney) mel filterbank, ``(n_mels, 1 + n_fft // 2)`` float32, built once."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


def band_names(params: dict[str, Any]) -> list[str]:
    return [f"mel_{i:03d}" for i in range(params["n_mels"])]


# --- logmel: frame-level, fixed size -----------------------------------------------------------


def fit_frames(matrix: np.ndarray, n_frames: int, crop: str, pad: str) -> np.ndarray:
    """Crop or pad ``(n_bands, n)`` to ``(n_bands, n_frames)`` by the policies in the module doc."""
    available = matrix.shape[1]
    if available >= n_frames:
        start = 0 if crop == "start" else (available - n_frames) // 2
        return np.ascontiguousarray(matrix[:, start : start + n_frames])
    width = ((0, 0), (0, n_frames - available))
    if pad == "constant":
        return np.pad(matrix, width, mode="constant", constant_values=DB_FLOOR)
    return np.pad(matrix, width, mode="wrap" if pad == "repeat" else "edge")


def stft_frame_count(n_samples: int, params: dict[str, Any]) -> int:
    """Frames librosa's centred STFT gives for ``n_samples`` (short signals padded to n_fft)."""
    return 1 + max(n_samples, params["n_fft"]) // params["hop_length"]


def compute_logmel(clip: DecodedClip, params: dict[str, Any]) -> np.ndarray:
    return fit_frames(log_mel(clip, params), params["n_frames"], params["crop"], params["pad"])


def valid_logmel_frames(n_samples: int, params: dict[str, Any]) -> int:
    """Frames of the fixed-size matrix that come from audio rather than padding."""
    return min(stft_frame_count(n_samples, params), params["n_frames"])


def check_logmel(params: dict[str, Any]) -> None:
    _check_spectrogram("logmel", params)
    check.int_in_range(
        "logmel", params, "n_frames", 1, MAX_FRAMES, "frames per clip; 640 is Velankar's 15 s"
    )
    check.choice("logmel", params, "crop", CROP_POLICIES)
    check.choice("logmel", params, "pad", PAD_POLICIES)


# --- logmel_500ms: pooled over windows ---------------------------------------------------------


def compute_logmel_500ms(clip: DecodedClip, params: dict[str, Any]) -> np.ndarray:
    window_s = params["window_s"]
    shortfall = min_samples(clip.sample_rate, window_s) - len(clip.signal)
    if shortfall > 0:  # shorter than one window: zero-pad to one window (docs/tables.md)
        clip = DecodedClip(clip.padded_to(len(clip.signal) + shortfall), clip.sample_rate)
    db = log_mel(clip, params)
    centres_s = np.arange(db.shape[1]) * params["hop_length"] / clip.sample_rate
    count = n_windows(clip.duration_s, window_s)
    return pool_windows(db.T, centres_s, count, window_s, params["stats"])


def logmel_500ms_columns(params: dict[str, Any]) -> list[str]:
    return pooled_names(band_names(params), params["stats"])


def check_logmel_500ms(params: dict[str, Any]) -> None:
    _check_spectrogram("logmel_500ms", params)
    check.positive_number("logmel_500ms", params, "window_s")
    check.stats("logmel_500ms", params)


def _check_spectrogram(feature: str, params: dict[str, Any]) -> None:
    check.int_in_range(
        feature, params, "sample_rate", 8000, 192000, "audio rates in use; 22050 by default"
    )
    check.power_of_two(
        feature, params, "n_fft", 64, 16384, "the STFT's size: 3 ms to 0.7 s at 22.05 kHz"
    )
    check.int_in_range(
        feature, params, "hop_length", 1, params["n_fft"], "at most n_fft, or samples are skipped"
    )
    n_bins = params["n_fft"] // 2 + 1
    check.int_in_range(
        feature,
        params,
        "n_mels",
        1,
        min(MAX_MELS, n_bins),
        f"no more bands than the n_fft/2 + 1 = {n_bins} FFT bins, whose filters would be empty, "
        f"and at most {MAX_MELS}",
    )
    check.frequency(feature, params, "fmin")
    check.frequency(feature, params, "fmax", optional=True)
    if params["fmax"] is not None and params["fmin"] >= params["fmax"]:
        raise ConfigError(
            f"config error: features.{feature}: fmin ({params['fmin']}) must be below fmax "
            f"({params['fmax']})"
        )


LOGMEL = FeatureSpec(
    name="logmel",
    kind="frames",
    label="log-mel spectrogram",
    defaults=LOGMEL_DEFAULTS,
    compute=compute_logmel,
    columns=band_names,
    check=check_logmel,
    valid_frames=valid_logmel_frames,
    description="log-mel spectrogram, fixed number of frames (Velankar)",
)
LOGMEL_500MS = FeatureSpec(
    name="logmel_500ms",
    kind="windows",
    label="log mel-band energy",
    malik_table="b",
    defaults=LOGMEL_500MS_DEFAULTS,
    compute=compute_logmel_500ms,
    columns=logmel_500ms_columns,
    check=check_logmel_500ms,
    description="log mel-band energies pooled over 500 ms windows (Malik, raw features)",
)
