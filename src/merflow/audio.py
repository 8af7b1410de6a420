"""Decoding: every clip is read here, once, as mono float32 at the configured sample rate.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3; soxr resamples. Channels are
down-mixed by averaging. Anything that cannot be decoded raises :class:`AudioError` naming the file,
so callers can quarantine it or fail, as the config says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from merflow.errors import AudioError

SUPPORTED_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int


def probe(path: str | os.PathLike) -> AudioInfo:
    """Duration, sample rate and channel count from the file header (no full decode)."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises several types; all mean "unreadable"
        raise AudioError(
            path, f"unreadable audio ({_short(exc, path)}); re-encode it as WAV/FLAC/MP3"
        ) from exc
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(path, "header has no sample rate or channels; the file is corrupt")
    return AudioInfo(info.frames / info.samplerate, int(info.samplerate), int(info.channels))


def load(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sample_rate`` Hz."""
    path = Path(path)
    _check_file(path)
    try:
        data, native_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(
            path,
            f"cannot decode ({_short(exc, path)}): it is truncated or not audio; re-download "
            "or re-encode it",
        ) from exc
    if data.shape[0] == 0:
        raise AudioError(path, "decodes to zero samples; the file is empty or truncated")
    # A matrix product down-mixes ~30x faster than mean(axis=1) on interleaved frames.
    mono = data @ np.full(data.shape[1], 1.0 / data.shape[1], dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise AudioError(
            path, "decodes to NaN or infinite samples: the file is corrupt; re-export or remove it"
        )
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise AudioError(path, "no such file; check the dataset root in the config")
    if path.stat().st_size == 0:
        raise AudioError(path, "the file is empty (0 bytes); re-download or remove it")


def _short(exc: Exception, path: Path) -> str:
    """libsndfile's message without its ``Error opening '<path>': `` prefix (the error names the
    file already); for a stream it cannot parse it claims the file "does not exist": it does."""
    text = str(exc).strip().splitlines()
    message = text[-1] if text else type(exc).__name__
    message = message.removeprefix(f"Error opening {str(path)!r}: ")
    if "does not exist or is not a regular file" in message:
        return "not a recognised audio stream"
    return message
