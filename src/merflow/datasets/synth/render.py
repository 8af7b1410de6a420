"""Rendering a score to audio: wavetable, FM and plucked-string voices, noise drums, a room and
background noise (:mod:`merflow.datasets.synth`)."""

from __future__ import annotations

import functools

import numpy as np

from merflow.datasets.synth.compose import N_ROOMS, Instrument, Part, Song

# --- synthesis -------------------------------------------------------------------------------
# Notes are rendered in float32 (numpy's SIMD loops are several times faster than in float64).
# Oscillators read one-cycle tables through 32-bit fixed-point phase accumulators, which stay
# exact however long a note lasts.

TABLE_BITS = 12
TABLE_SIZE = 1 << TABLE_BITS
SINE = np.sin(2 * np.pi * np.arange(TABLE_SIZE) / TABLE_SIZE).astype(np.float32)
MAX_HARMONICS = 24
TAIL_S = 0.3  # rendered past a note's nominal end, for its release and ring
RELEASE_S = 0.06
ROOM_MAX_S = 1.8  # the longest reverberation time
PLUCK_MAX_S = 1.2  # a plucked string is cut off (released) after this
PLUCK_RING_S = 1.5  # its fundamental falls by 60 dB in this time
AXIS_SAMPLES = 8 * 48000  # cached time axes cover notes of up to 8 s


def _midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _phase(f0: float, n: int, sr: int) -> np.ndarray:
    """Table indices of an oscillator at ``f0`` Hz: the top bits of a wrapping uint32 phase."""
    step = np.uint32(int(round(f0 / sr * 2**32)) % 2**32)
    return (_sample_numbers(n) * step) >> np.uint32(32 - TABLE_BITS)


def _sample_numbers(n: int) -> np.ndarray:
    """``np.arange(n)`` as uint32 (a read-only view of a cached axis when short enough)."""
    axis = _cached_numbers()
    return axis[:n] if n <= axis.size else np.arange(n, dtype=np.uint32)


def _seconds(n: int, sr: int) -> np.ndarray:
    """``np.arange(n) / sr`` in float32 (a read-only view of a cached axis when short enough)."""
    axis = _cached_seconds(sr)
    return axis[:n] if n <= axis.size else (np.arange(n) / sr).astype(np.float32)


@functools.cache
def _cached_numbers() -> np.ndarray:
    axis = np.arange(AXIS_SAMPLES, dtype=np.uint32)
    axis.setflags(write=False)
    return axis


@functools.lru_cache(maxsize=8)
def _cached_seconds(sr: int) -> np.ndarray:
    axis = (np.arange(AXIS_SAMPLES) / sr).astype(np.float32)
    axis.setflags(write=False)
    return axis


@functools.lru_cache(maxsize=512)
def _wavetable(n_harmonics: int, rolloff: float) -> np.ndarray:
    """One cycle of sine harmonics 1..n with amplitudes k**-rolloff (the fundamental at 1)."""
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, dtype=complex)
    k = np.arange(1, n_harmonics + 1)
    spectrum[1 : n_harmonics + 1] = -0.5j * TABLE_SIZE * k**-rolloff
    table = np.fft.irfft(spectrum, TABLE_SIZE).astype(np.float32)
    table.setflags(write=False)
    return table


def _release(sound: np.ndarray, duration: float, sr: int) -> np.ndarray:
    """Fade out (in place) whatever sounds past the note's nominal ``duration``."""
    start = int(duration * sr)
    if start < sound.size:
        sound[start:] *= np.exp(_seconds(sound.size - start, sr) * np.float32(-1.0 / RELEASE_S))
    return sound


def _envelope(n: int, sr: int, inst: Instrument, duration: float) -> np.ndarray:
    """Linear attack, exponential decay, release after ``duration``."""
    envelope = np.exp(_seconds(n, sr) * np.float32(-1.0 / inst.decay_s))
    n_attack = min(n, max(1, int(inst.attack_s * sr)))
    envelope[:n_attack] *= np.linspace(0.0, 1.0, n_attack, dtype=np.float32)
    return _release(envelope, duration, sr)


def _additive(
    f0: float, duration: float, brightness: float, inst: Instrument, sr: int
) -> np.ndarray:
    """Harmonics k**-p; the upper ones die away first (a duller table takes over)."""
    n = int((duration + TAIL_S) * sr)
    n_harmonics = max(1, min(MAX_HARMONICS, int(0.45 * sr / f0)))
    rolloff = round(inst.rolloff + 1.4 * (0.5 - brightness), 2)
    bright, dull = _wavetable(n_harmonics, rolloff), _wavetable(n_harmonics, rolloff + 2.5)
    index = _phase(f0, n, sr)
    fade = np.exp(_seconds(n, sr) * np.float32(-1.0 / (inst.harmonic_decay_s * (0.5 + brightness))))
    base = np.take(dull, index)
    return (base + (np.take(bright, index) - base) * fade) * _envelope(n, sr, inst, duration)


def _fm(f0: float, duration: float, brightness: float, inst: Instrument, sr: int) -> np.ndarray:
    """Two-operator FM: the index grows with brightness and decays within the note."""
    n = int((duration + TAIL_S) * sr)
    modulator_hz = inst.fm_ratio * f0
    peak = max(0.0, min(inst.fm_index * (0.2 + 2.0 * brightness), 0.45 * sr / modulator_hz - 1.0))
    index = peak * np.exp(_seconds(n, sr) * np.float32(-1.0 / inst.harmonic_decay_s))
    modulation = (
        index * np.take(SINE, _phase(modulator_hz, n, sr)) * np.float32(TABLE_SIZE / (2 * np.pi))
    )
    carrier = (_phase(f0, n, sr).astype(np.int32) + modulation.astype(np.int32)) & (TABLE_SIZE - 1)
    return np.take(SINE, carrier) * _envelope(n, sr, inst, duration)


def _pluck(f0: float, duration: float, brightness: float, inst: Instrument, sr: int) -> np.ndarray:
    """A Karplus–Strong plucked string, damped by the instrument, released at the note's end."""
    n = int(min(duration + TAIL_S, PLUCK_MAX_S) * sr)
    string = _string(round(sr / f0, 2), round(brightness * 4) / 4, sr)[:n]
    return _release(
        string * np.exp(_seconds(n, sr) * np.float32(-1.0 / inst.decay_s)), duration, sr
    )


@functools.lru_cache(maxsize=512)
def _string(period: float, brightness: float, sr: int) -> np.ndarray:
    """PLUCK_MAX_S of a plucked string: Karplus–Strong, y[n] = x[n] + g·((1−d)·y[n−D] + d·y[n−D−1]).

    A burst circulates in a delay loop whose two-point filter takes away the high harmonics; the
    damping d is 0.5 (classic KS) for a dull string and 0.05 for a bright one, whose burst is
    also less smoothed.
    The loop is evaluated through its frequency response: one FFT instead of a per-sample loop,
    and exact tuning through the fractional delay D = period − d (the filter adds d samples).
    g makes the fundamental ring for PLUCK_RING_S at every pitch (−60 dB), so a high string is
    not merely quieter, and the circular wrap of the FFT stays far below. The recording is
    scaled so that its fundamental starts at amplitude 1. Like a sampler, the recordings are kept
    per pitch and brightness step (a few hundred in all), so most notes cost no FFT; an
    instrument's own damping (``decay_s``) is applied to each note.
    """
    rng = np.random.default_rng([int(period * 100), int(brightness * 4)])
    length = max(2, int(round(period)))
    # the string's initial shape: a sawtooth (harmonics 1/k, like a pluck at the end) with noise
    burst = np.linspace(-1.0, 1.0, length) + rng.uniform(-0.3, 0.3, length)
    width = 1 + int((1.0 - brightness) * length / 4)  # a softer, rounder pluck when calm
    burst = np.convolve(np.tile(burst, 3), np.full(width, 1 / width), mode="same")[length:-length]
    burst -= burst.mean()  # the loop's DC mode is barely damped: give it nothing to ring
    # start the fundamental at amplitude 1, like the other instruments
    burst /= 2.0 * abs(np.sum(burst * np.exp(-2j * np.pi * np.arange(length) / period))) / period
    damping = 0.5 - 0.45 * brightness
    n = int(PLUCK_MAX_S * sr)
    size = _fast_length(2 * n)
    w = (2 * np.pi * np.fft.rfftfreq(size)).astype(np.float32)
    fundamental = abs((1.0 - damping) + damping * np.exp(-2j * np.pi / period))
    gain = min(10.0 ** (-3.0 * period / (PLUCK_RING_S * sr)) / fundamental, 0.9999)
    loop = gain * ((1.0 - damping) + damping * _delay(w, 1.0)) * _delay(w, period - damping)
    string = np.fft.irfft(np.fft.rfft(burst, size) / (1.0 - loop), size)[:n]
    string = string.astype(np.float32)
    string.setflags(write=False)
    return string


def _delay(w: np.ndarray, samples: float) -> np.ndarray:
    """exp(−i·w·samples): the response of a (fractional) delay, via float32 cos/sin (fast)."""
    angle = w * np.float32(samples)
    return np.cos(angle) - 1j * np.sin(angle)


SYNTHS = {"additive": _additive, "fm": _fm, "pluck": _pluck}  # f(f0, duration, brightness, …)


def render_part(part: Part, inst: Instrument, sr: int, out: np.ndarray) -> None:
    """Add every note of ``part``, played on ``inst``, into ``out`` (in place)."""
    synth = SYNTHS[inst.kind]
    for onset, duration, pitch, level_db, brightness in zip(
        part.onset, part.duration, part.pitch, part.level_db, part.brightness, strict=True
    ):
        note = synth(_midi_hz(pitch), duration, brightness, inst, sr)
        _mix_in(out, note, _db(level_db), onset, sr)


def _db(level_db: float) -> np.float32:
    return np.float32(10.0 ** (level_db / 20.0))


def _mix_in(out: np.ndarray, sound: np.ndarray, gain: np.float32, onset_s: float, sr: int) -> None:
    start = max(0, int(round(onset_s * sr)))
    n = min(sound.size, out.size - start)
    if n > 0:
        out[start : start + n] += gain * sound[:n]


def render_drums(drums: dict[str, Part], song: Song, sr: int, rng, out) -> None:
    """Kick: a falling sine; snare: noise plus a 185 Hz tone; hat: high-passed noise.

    Snares and hats cut their noise from one shared, pre-filtered block per clip (at random
    offsets), so each hit costs a multiply.
    """
    t = _seconds(int(0.35 * sr), sr)
    noise = rng.standard_normal(16 * t.size, dtype=np.float32)
    snare_noise, hat_noise = (
        np.diff(noise, prepend=np.float32(0)),
        np.diff(noise, n=2, prepend=np.zeros(2, np.float32)),
    )
    tone = 0.5 * np.sin(np.float32(2 * np.pi * 185.0) * t) * np.exp(t * np.float32(-1 / 0.05))
    snare_envelope = 0.6 * np.exp(t * np.float32(-1 / 0.09))
    hat_envelope = 0.5 * np.exp(t * np.float32(-1 / song.hat_decay_s))
    for name, part in drums.items():
        for onset, level_db, brightness in zip(
            part.onset, part.level_db, part.brightness, strict=True
        ):
            start = int(rng.integers(noise.size - t.size))
            if name == "kick":
                sound = _kick(round(brightness * 4) / 4, sr)
            elif name == "snare":
                sound = snare_noise[start : start + t.size] * snare_envelope + tone
            else:
                sound = hat_noise[start : start + t.size] * hat_envelope
            _mix_in(out, sound, _db(level_db), onset, sr)


@functools.lru_cache(maxsize=64)
def _kick(brightness: float, sr: int) -> np.ndarray:
    t = _seconds(int(0.35 * sr), sr)
    phase = 2 * np.pi * (48.0 * t + 3.0 * (1.0 - np.exp(-t / np.float32(0.03))))
    kick = 1.4 * np.sin(phase) * np.exp(-t / np.float32(0.08 + 0.08 * brightness))
    kick.setflags(write=False)
    return kick


def add_room(x: np.ndarray, song: Song, gain: float, noise_db: float, sr: int, rng) -> np.ndarray:
    """Reverb, the clip's gain and pink background noise, in one pass through the spectrum."""
    size = _fast_length(x.size + int(ROOM_MAX_S * sr))
    room = (1.0 - song.reverb_mix) + song.reverb_mix * _room_response(song.room, size, sr)
    noise = 10.0 ** (noise_db / 20.0) * _pink_spectrum(size, rng)
    spectrum = np.fft.rfft(x, size) * (room * gain) + noise
    return np.fft.irfft(spectrum, size)[: x.size]


@functools.lru_cache(maxsize=2 * N_ROOMS)
def _room_response(room: tuple[int, int], size: int, sr: int) -> np.ndarray:
    """The spectrum of a room: exponentially decaying noise, −60 dB after 0.4–ROOM_MAX_S s.

    Rooms are few and cached, so most clips skip this transform.
    """
    rng = np.random.default_rng([room[0], 3, room[1]])
    reverb_s = rng.uniform(0.4, ROOM_MAX_S)
    t = _seconds(int(reverb_s * sr), sr)
    impulse = rng.standard_normal(t.size).astype(np.float32) * np.exp(
        t * np.float32(-6.9 / reverb_s)
    )
    response = np.fft.rfft(impulse / np.sqrt(np.sum(impulse**2)), size)
    response.setflags(write=False)
    return response


def _pink_spectrum(size: int, rng: np.random.Generator) -> np.ndarray:
    """The rfft of unit-RMS (in expectation) noise whose power falls as 1/f."""
    n_bins = size // 2 + 1
    # uniform real and imaginary parts (variance 1 each): the time signal is Gaussian anyway
    spectrum = (rng.random(2 * n_bins, dtype=np.float32) - 0.5).view(np.complex64) * np.sqrt(12)
    spectrum[0] = 0.0
    # Parseval: E[mean x²] = (2/size²)·Σ 2/k over the bins ≈ 4·(ln(size/2) + γ)/size²
    scale = size / np.sqrt(4.0 * (np.log(size / 2) + 0.5772))
    spectrum[1:] *= np.float32(scale) / np.sqrt(np.arange(1, n_bins, dtype=np.float32))
    return spectrum


def _fast_length(n: int) -> int:
    """The smallest 2**a · 3**b · 5**c ≥ n: sizes pocketfft transforms fastest."""
    best = 1 << (n - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            length = power35
            while length < n:
                length *= 2
            best = min(best, length)
            power35 *= 3
        power5 *= 5
    return best
