"""One decoded clip, shared by every feature computed from it.

A shard job decodes each clip once per sample rate and hands the same :class:`DecodedClip` to
every feature. The clip memoises its power spectrogram per ``(n_fft, hop_length)``, so ``logmel``
(128 bands) and ``logmel_500ms`` (64 bands) with the same STFT settings share one STFT: only the
mel filterbank differs between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DecodedClip:
    """Mono float32 samples at ``sample_rate`` Hz, with a cache of derived spectrograms."""

    signal: np.ndarray
    sample_rate: int
    _power: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, init=False, repr=False)

    @property
    def duration_s(self) -> float:
        return len(self.signal) / self.sample_rate

    def padded_to(self, n_samples: int) -> np.ndarray:
        """The signal, zero-padded at the end to at least ``n_samples`` samples."""
        missing = n_samples - len(self.signal)
        return np.pad(self.signal, (0, missing)) if missing > 0 else self.signal

    def power_spectrogram(self, n_fft: int, hop_length: int) -> np.ndarray:
        """``|STFT|**2`` (``(1 + n_fft // 2, n_frames)``), as librosa's melspectrogram makes it.

        Frames are centred (``center=True``, zero padding): frame ``i`` is centred on sample
        ``i * hop_length``. Signals shorter than ``n_fft`` are zero-padded to ``n_fft`` first.
        """
        key = (n_fft, hop_length)
        if key not in self._power:
            import librosa

            stft = librosa.stft(
                self.padded_to(n_fft), n_fft=n_fft, hop_length=hop_length, center=True
            )
            self._power[key] = np.abs(stft) ** 2
        return self._power[key]
