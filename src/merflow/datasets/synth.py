"""The synthetic demo dataset: music composed from a known emotion, so every stage can be checked.

A new user without a dataset still sees the whole pipeline work on data whose answer is known.
Each clip is *composed* from a smooth arousal/valence curve through the musical cues that MER
research ties to each dimension (Gabrielsson & Lindström 2010; Eerola, Friberg & Bresin 2013):

* **arousal** (activation) → tempo (50–175 bpm), loudness (a 16 dB range), note density,
  articulation (legato → detached), chord rhythm (held → stabs), percussive energy (hi-hat
  density, snares, extra kicks, their level) and half of the brightness;
* **valence** (pleasantness) → mode (major; natural minor; phrygian when strongly negative),
  consonance (added sixths and ninths when positive; semitone and tritone clusters and chromatic
  melody steps when negative), register (the ensemble moves up to an octave; octave doublings
  above when positive, below when negative; the balance shifts from bass to treble) and the
  other half of the brightness: happy music is bright, sad music dull (Juslin & Laukka 2004).

Brightness is how strong and long-lived the upper harmonics are: the additive rolloff, the FM
index, the pluck's excitation and string damping. The music changes *within* a clip as its
curves move, so the 500 ms regression targets are learnable from the audio of their window.
What keeps it from being trivial: a random key, tempo offset, register offset and instrument set
per song (additive wavetables with varied harmonic decay, two-operator FM, Karplus–Strong
plucked strings, noise percussion), random mix levels, one of a few rooms (reverb), pink
background noise, random note-level choices and a per-clip gain independent of arousal. A ridge
regression on 500 ms log-mel means, tested on unheard songs, explains about half to two thirds
of the variance of each dimension (tests/test_synth.py).

Targets and labels
------------------
``targets.csv`` holds one row per 500 ms window, labelled by the window's *end* time
``t = 0.5, 1.0, …`` (docs/tables.md); the value is the curve at the window's centre, in [-1, 1].

A clip's categorical ``label`` comes from its mean point — the means of its target rows — by the
angle ``θ = atan2(mean arousal, mean valence)`` in equal sectors of the valence (x) / arousal (y)
plane; :data:`CLASS_NAMES` lists the classes in sector order, :func:`label_for` is the rule:

* 2 classes: ``positive`` θ ∈ [-90°, 90°), ``negative`` [90°, 270°) — the sign of valence;
* 3 classes: ``energetic`` [30°, 150°) (high arousal, either valence), ``sad`` [150°, 270°)
  (negative valence, low arousal), ``calm`` [270°, 390°) (positive valence, low arousal);
* 4 classes: Russell's quadrants as in the 4Q dataset: ``Q1`` [0°, 90°) (+valence, +arousal),
  ``Q2`` [90°, 180°), ``Q3`` [180°, 270°), ``Q4`` [270°, 360°).

Songs take their base emotion at a uniform angle inside a sector, and sectors are dealt to songs
in shuffled blocks of ``n_classes``, so classes are balanced (a clip whose curve wanders near a
border can land in the neighbouring class; about one in fifteen does). Base arousal and valence
are uncorrelated.

Songs and seeds
---------------
``clips_per_song`` consecutive clips form a song (``group``): they share the base emotion, key,
tempo, register, instruments and room, and differ in their curves, notes and levels — so a split
that separates clips of one song leaks. Song ``s`` draws from ``default_rng([seed, 0, s])``, clip
``i`` from ``default_rng([seed, 1, i])`` and the sector block ``b`` from ``[seed, 2, b]``: the same
seed gives bit-identical audio, and clip ``i`` does not depend on ``n_clips``.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from merflow import __version__
from merflow.datasets.base import RawIndex
from merflow.errors import ConfigError, DatasetError
from merflow.io import atomic_path, read_json, write_json

# the classes for each n_classes, in sector order from SECTOR_START_DEG (see the module doc)
CLASS_NAMES: dict[int, tuple[str, ...]] = {
    2: ("positive", "negative"),
    3: ("energetic", "sad", "calm"),
    4: ("Q1", "Q2", "Q3", "Q4"),
}
SECTOR_START_DEG: dict[int, float] = {2: -90.0, 3: 30.0, 4: 0.0}
WINDOW_S = 0.5
CONTROL_RATE = 100  # Hz: emotion curves and tempo are evaluated on this grid
MASTER_GAIN = 0.16  # keeps the loudest clips just below the soft limiter's knee

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PHRYGIAN = (0, 1, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 3, 0, 4), (0, 5, 1, 4))


# --- labels ----------------------------------------------------------------------------------


def label_for(arousal: float, valence: float, n_classes: int) -> str:
    """The class of a clip whose mean point is (``valence``, ``arousal``): see the module doc."""
    _check_n_classes(n_classes)
    return CLASS_NAMES[n_classes][_sector(arousal, valence, n_classes)]


def _sector(arousal: float, valence: float, n_classes: int) -> int:
    angle = math.degrees(math.atan2(arousal, valence)) - SECTOR_START_DEG[n_classes]
    return int((angle % 360.0) // (360.0 / n_classes)) % n_classes


def _check_n_classes(n_classes: int) -> None:
    if n_classes not in CLASS_NAMES:
        raise ConfigError(f"synth: n_classes must be 2, 3 or 4 (got {n_classes!r})")


# --- songs and emotion curves ----------------------------------------------------------------


@dataclass(frozen=True)
class Instrument:
    """One synthetic instrument: a synthesis method and the timbre it gets in this song."""

    kind: str  # "additive" | "fm" | "pluck"
    level_db: float
    rolloff: float  # harmonic k has amplitude k**-rolloff at medium brightness (additive)
    harmonic_decay_s: float  # how long the upper harmonics / the FM index last
    attack_s: float
    decay_s: float  # the whole note's exponential decay
    fm_ratio: float
    fm_index: float


@dataclass(frozen=True)
class Song:
    """What the clips of one song share."""

    arousal: float
    valence: float
    tonic: int  # pitch class of the key, 0 = C
    tempo_offset_bpm: float
    register_offset: float  # semitones added to every part's centre pitch
    progression: tuple[int, ...]
    melody: Instrument
    chords: Instrument
    bass: Instrument
    drum_level_db: float
    hat_decay_s: float
    room: tuple[int, int]  # (seed, index): the songs of a dataset share N_ROOMS rooms
    reverb_mix: float

    def parts(self) -> dict[str, Instrument]:
        return {"melody": self.melody, "chords": self.chords, "bass": self.bass}


def draw_song(song_index: int, *, seed: int, n_classes: int) -> Song:
    """The song's base emotion (in its dealt class sector), key, tempo, instruments and room."""
    block, slot = divmod(song_index, n_classes)
    sector = int(np.random.default_rng([seed, 2, block]).permutation(n_classes)[slot])
    rng = np.random.default_rng([seed, 0, song_index])
    width = 360.0 / n_classes
    angle = math.radians(SECTOR_START_DEG[n_classes] + width * (sector + rng.uniform(0.08, 0.92)))
    radius = rng.uniform(0.3, 0.8)
    return Song(
        arousal=radius * math.sin(angle),
        valence=radius * math.cos(angle),
        tonic=int(rng.integers(12)),
        tempo_offset_bpm=rng.normal(0.0, 8.0),
        register_offset=rng.normal(0.0, 2.0),
        progression=PROGRESSIONS[rng.integers(len(PROGRESSIONS))],
        melody=_draw_instrument(rng, ("additive", "fm", "pluck"), sustained=False),
        chords=_draw_instrument(rng, ("additive", "fm", "pluck"), sustained=True),
        bass=_draw_instrument(rng, ("additive", "pluck", "fm"), sustained=False),
        drum_level_db=rng.uniform(-6.0, 0.0),
        hat_decay_s=rng.uniform(0.02, 0.08),
        room=(seed, int(rng.integers(N_ROOMS))),
        reverb_mix=rng.uniform(0.05, 0.35),
    )


def _draw_instrument(
    rng: np.random.Generator, kinds: tuple[str, ...], sustained: bool
) -> Instrument:
    return Instrument(
        kind=str(rng.choice(kinds)),
        level_db=rng.uniform(-4.0, 2.0),
        rolloff=rng.uniform(1.2, 2.0),
        harmonic_decay_s=rng.uniform(0.1, 1.0),
        attack_s=rng.uniform(0.04, 0.25) if sustained else rng.uniform(0.003, 0.02),
        decay_s=rng.uniform(1.5, 4.0) if sustained else rng.uniform(0.3, 1.5),
        fm_ratio=float(rng.choice([1.0, 2.0, 3.0])),
        fm_index=rng.uniform(0.5, 3.0),
    )


@dataclass(frozen=True)
class Curves:
    """Arousal and valence of one clip on the control grid (CONTROL_RATE Hz), in [-1, 1]."""

    arousal: np.ndarray
    valence: np.ndarray

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.arousal.size) / CONTROL_RATE

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid = self.times
        return np.interp(times, grid, self.arousal), np.interp(times, grid, self.valence)


def draw_curves(rng: np.random.Generator, song: Song, duration_s: float) -> Curves:
    """The song's base emotion + a clip-level offset + a slow wander through random knots."""
    times = np.arange(int(math.ceil(duration_s * CONTROL_RATE)) + 1) / CONTROL_RATE
    arousal, valence = (
        np.clip(base + rng.normal(0.0, 0.12) + _smooth_wander(rng, times, 0.25), -1.0, 1.0)
        for base in (song.arousal, song.valence)
    )
    return Curves(arousal, valence)


def _smooth_wander(rng: np.random.Generator, times: np.ndarray, sd: float) -> np.ndarray:
    """Random knots every 4–8 s, joined by raised-cosine segments (smooth, no overshoot)."""
    spacing = rng.uniform(4.0, 8.0)
    knot_t = np.arange(-rng.uniform(0.0, spacing), times[-1] + 2 * spacing, spacing)
    knot_v = rng.normal(0.0, sd, knot_t.size)
    k = np.searchsorted(knot_t, times, side="right") - 1
    ease = (1.0 - np.cos(np.pi * (times - knot_t[k]) / spacing)) / 2.0
    return knot_v[k] + (knot_v[k + 1] - knot_v[k]) * ease


def window_targets(curves: Curves, duration_s: float) -> pd.DataFrame:
    """One row per whole 500 ms window: ``t`` = window end, values = the curves at its centre."""
    n_windows = max(1, int(math.floor(duration_s / WINDOW_S + 1e-9)))
    ends = np.arange(1, n_windows + 1) * WINDOW_S
    arousal, valence = curves.at(ends - WINDOW_S / 2)
    return pd.DataFrame({"t": ends, "arousal": arousal.round(4), "valence": valence.round(4)})


# --- composition -----------------------------------------------------------------------------


@dataclass
class Part:
    """The notes of one part, as parallel lists (seconds, MIDI pitch, dB, brightness 0–1)."""

    onset: list[float] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)
    pitch: list[float] = field(default_factory=list)
    level_db: list[float] = field(default_factory=list)
    brightness: list[float] = field(default_factory=list)

    def add(
        self, onset: float, duration: float, pitch: float, level_db: float, brightness: float
    ) -> None:
        self.onset.append(onset)
        self.duration.append(duration)
        self.pitch.append(pitch)
        self.level_db.append(level_db)
        self.brightness.append(brightness)


@dataclass
class Score:
    melody: Part = field(default_factory=Part)
    chords: Part = field(default_factory=Part)
    bass: Part = field(default_factory=Part)
    drums: dict[str, Part] = field(
        default_factory=lambda: {"kick": Part(), "snare": Part(), "hat": Part()}
    )


def sixteenth_times(curves: Curves, song: Song) -> np.ndarray:
    """Onsets of the sixteenth-note grid, with the tempo (50–175 bpm) following arousal."""
    bpm = np.clip(64.0 + 76.0 * _unit(curves.arousal) + song.tempo_offset_bpm, 50.0, 175.0)
    sixteenths = np.concatenate([[0.0], np.cumsum(bpm[:-1]) * 4.0 / 60.0 / CONTROL_RATE])
    return np.interp(np.arange(int(sixteenths[-1]) + 1), sixteenths, curves.times)


@dataclass(frozen=True)
class Moment:
    """One sixteenth-note slot: where it lies in the bar, the harmony, and the emotion there."""

    onset: float
    slot_s: float  # length of the slot
    pos: int  # 0..15 within the bar
    arousal: float
    valence: float
    chord: tuple[int, ...]
    scale: tuple[int, ...]

    @property
    def loudness_db(self) -> float:
        return -16.0 * (1.0 - _unit(self.arousal))

    @property
    def brightness(self) -> float:
        """Timbre, 0–1: bright when aroused or positive, dull when calm or negative."""
        return 0.5 * _unit(self.arousal) + 0.5 * _unit(self.valence)


def compose(rng: np.random.Generator, song: Song, curves: Curves) -> Score:
    """Bars of chords, bass, melody and drums whose every choice follows the curves at that time."""
    slots = sixteenth_times(curves, song)
    arousal, valence = curves.at(slots)
    slot_s = np.diff(slots, append=2 * slots[-1] - slots[-2] if slots.size > 1 else 0.1)
    mix = {role: inst.level_db + rng.normal(0.0, 1.5) for role, inst in song.parts().items()}
    score = Score()
    chord, scale, melody_pitch = (), MAJOR, 69.0 + song.register_offset
    for k, onset in enumerate(slots):
        if k % 16 == 0:  # a new bar: its mode and chord
            scale = _mode(valence[k] + rng.normal(0.0, 0.15))
            degree = song.progression[(k // 16) % len(song.progression)]
            chord = _chord(rng, song.tonic, scale, degree, valence[k])
        m = Moment(onset, slot_s[k], k % 16, arousal[k], valence[k], chord, scale)
        _chords(score.chords, rng, song, m, m.loudness_db + mix["chords"])
        # the ensemble's weight moves from the bass (negative valence) to the treble (positive)
        _bass(score.bass, rng, song, m, m.loudness_db + mix["bass"] - 8.0 * m.valence)
        melody_level = m.loudness_db + mix["melody"] + 6.0 * m.valence
        melody_pitch = _melody(score.melody, rng, song, m, melody_level, melody_pitch)
        _drums(score.drums, rng, song, m)
    _phrase(score.melody, slots, arousal)
    return score


def _unit(x):
    """[-1, 1] → [0, 1]."""
    return (x + 1.0) / 2.0


def _mode(valence: float) -> tuple[int, ...]:
    if valence > 0.0:
        return MAJOR
    return MINOR if valence > -0.55 else PHRYGIAN


def _chord(
    rng: np.random.Generator, tonic: int, scale: tuple[int, ...], degree: int, valence: float
) -> tuple[int, ...]:
    """A triad on ``degree`` of the scale, coloured by consonance (valence > 0) or dissonance."""
    steps = degree + np.array([0, 2, 4])
    tones = [tonic + scale[s % 7] + 12 * (s // 7) for s in steps]
    if rng.random() < 0.6 * max(0.0, valence):  # add6 or add9
        tones.append(tones[0] + int(rng.choice([9, 14])))
    if rng.random() < 0.8 * max(0.0, -valence):  # a minor-second or tritone cluster
        tones.append(tones[0] + int(rng.choice([1, 6, 13])))
    return tuple(tones)


def _near(pitch_class: int, centre: float) -> int:
    """The MIDI pitch of ``pitch_class`` closest to ``centre``."""
    return int(pitch_class + 12 * round((centre - pitch_class) / 12.0))


def _chords(part: Part, rng, song: Song, m: Moment, level_db: float) -> None:
    """Chords held through the bar when calm; stabs on the beats (and pushes) when aroused."""
    held = m.arousal < 0.1
    if held and m.pos != 0:
        return
    if not held and not (m.pos % 4 == 0 or (m.pos in (6, 14) and m.arousal > 0.55)):
        return
    duration = (16 if held else 1.6) * m.slot_s
    root = _near(m.chord[0] % 12, 53.0 + 12.0 * m.valence + song.register_offset)
    voicing = [root + tone - m.chord[0] for tone in m.chord]
    if rng.random() < m.valence:  # an open voicing, spread upwards: light and airy
        voicing += [pitch + 12 for pitch in voicing[1:]]
    for pitch in voicing:
        onset = m.onset + rng.uniform(0.0, 0.012)  # not quite together, like a hand
        part.add(onset, duration, pitch, level_db - 6.0 + rng.normal(0.0, 1.0), m.brightness)


def _bass(part: Part, rng, song: Song, m: Moment, level_db: float) -> None:
    """The root (sometimes the fifth) on the half bar; every beat, then eighths, when aroused."""
    pos, a = m.pos, m.arousal
    plays = pos in (0, 8) or (pos in (4, 12) and a > -0.2) or (pos % 2 == 0 and a > 0.6)
    if not plays or (pos not in (0, 8) and rng.random() < 0.2):
        return
    tone = m.chord[0] + (7 if pos in (8, 12) and rng.random() < 0.3 else 0)
    pitch = _near(tone % 12, 40.0 + 9.0 * m.valence + song.register_offset / 2)
    duration = (4.0 if a < -0.2 else 1.8) * m.slot_s
    level_db += rng.normal(0.0, 1.0)
    part.add(m.onset, duration, pitch, level_db, m.brightness)
    if rng.random() < -m.valence:  # doubled an octave lower: a darker, heavier register
        part.add(m.onset, duration, pitch - 12, level_db, m.brightness)


def _melody(part: Part, rng, song: Song, m: Moment, level_db: float, previous: float) -> float:
    """A random walk over the scale around a register set by valence; denser when aroused."""
    strong, a = m.pos in (0, 8), _unit(m.arousal)
    if m.pos % 4 == 0:
        p_note = 0.85 if strong else 0.6
    else:
        p_note = 0.15 + 0.5 * a if m.pos % 2 == 0 else 0.7 * a**2
    if rng.random() >= p_note:
        return previous
    centre = 69.0 + 12.0 * m.valence + song.register_offset
    candidates = np.array(
        [p for p in range(int(centre) - 10, int(centre) + 11) if (p - song.tonic) % 12 in m.scale]
    )
    weight = np.exp(-np.abs(candidates - previous) / 3.0 - np.abs(candidates - centre) / 2.5)
    if strong:  # chord tones on the strong beats
        weight *= np.where(np.isin(candidates % 12, np.array(m.chord) % 12), 3.0, 1.0)
    pitch = float(rng.choice(candidates, p=weight / weight.sum()))
    if rng.random() < 0.35 * max(0.0, -m.valence):  # a dissonant chromatic neighbour
        pitch += float(rng.choice([-1.0, 1.0]))
    onset, level_db = m.onset + rng.normal(0.0, 0.006), level_db + rng.normal(0.0, 1.5)
    part.add(onset, m.slot_s, pitch, level_db, m.brightness)
    if rng.random() < m.valence:  # doubled an octave higher: a brighter, lighter register
        part.add(onset, m.slot_s, pitch + 12.0, level_db - 4.0, m.brightness)
    return pitch


def _phrase(part: Part, slots: np.ndarray, arousal: np.ndarray) -> None:
    """Melody notes last until the next one: legato when calm, detached when aroused."""
    onsets = np.asarray(part.onset)
    if onsets.size == 0:
        return
    starts = np.unique(onsets)
    following = np.append(starts, starts[-1] + 0.5)[np.searchsorted(starts, onsets, side="right")]
    gaps = following - onsets  # to the next onset (an octave doubling shares its note's onset)
    articulation = 0.95 - 0.45 * _unit(np.interp(onsets, slots, arousal))
    part.duration = list(np.minimum(gaps, 2.0) * articulation)


def _drums(drums: dict[str, Part], rng, song: Song, m: Moment) -> None:
    """Kick, snare and hi-hat; their density and level rise with arousal."""
    pos, a = m.pos, _unit(m.arousal)
    hits = {
        "kick": pos == 0 or (pos == 8 and a > 0.2) or (pos in (10, 14) and rng.random() < 0.3 * a),
        "snare": pos in (4, 12) and rng.random() < 0.2 + a,
        "hat": rng.random() < (0.2 + 0.8 * a if pos % 2 == 0 else 1.6 * a - 0.8),
    }
    level_db = song.drum_level_db - 24.0 * (1.0 - a)
    for name, hit in hits.items():
        if hit:
            drums[name].add(m.onset, 0.0, 0.0, level_db + rng.normal(0.0, 1.5), a)


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
N_ROOMS = 8
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


# --- clips -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthClip:
    """One rendered clip, before it is written."""

    clip_id: str
    group: str
    label: str
    audio: np.ndarray  # mono float32 in [-1, 1]
    targets: pd.DataFrame  # t, arousal, valence


def clip_id(index: int) -> str:
    return f"synth_{index:04d}"


def synthesize_clip(
    index: int,
    *,
    duration_s: float = 30.0,
    sample_rate: int = 22050,
    n_classes: int = 3,
    clips_per_song: int = 1,
    seed: int = 0,
) -> SynthClip:
    """Compose and render clip ``index``; deterministic in all its arguments."""
    song_index = index // clips_per_song
    song = draw_song(song_index, seed=seed, n_classes=n_classes)
    rng = np.random.default_rng([seed, 1, index])
    curves = draw_curves(rng, song, duration_s)
    score = compose(rng, song, curves)
    out = np.zeros(int(round(duration_s * sample_rate)), dtype=np.float32)
    for role, inst in song.parts().items():
        render_part(getattr(score, role), inst, sample_rate, out)
    render_drums(score.drums, song, sample_rate, rng, out)
    gain = MASTER_GAIN * 10.0 ** (rng.uniform(-5.0, 5.0) / 20.0)  # not tied to arousal
    out = add_room(out, song, gain, rng.uniform(-62.0, -42.0), sample_rate, rng)
    targets = window_targets(curves, duration_s)
    label = label_for(targets["arousal"].mean(), targets["valence"].mean(), n_classes)
    return SynthClip(
        clip_id=clip_id(index),
        group=f"song_{song_index:04d}",
        label=label,
        audio=np.tanh(out).astype(np.float32),  # a soft limiter: never clips, keeps loudness order
        targets=targets,
    )


# --- the dataset on disk ---------------------------------------------------------------------


def generate(
    out_dir: Path,
    *,
    n_clips: int = 48,
    duration_s: float = 30.0,
    sample_rate: int = 22050,
    n_classes: int = 3,
    clips_per_song: int = 1,
    seed: int = 0,
) -> Path:
    """Write the dataset: ``audio/<clip_id>.flac``, ``clips.csv``, ``targets.csv``, ``synth.json``.

    Every file is written atomically; ``clips.csv`` comes last, so its presence means the dataset
    is complete. Paths in ``clips.csv`` are relative to ``out_dir``.
    """
    params = _checked_params(n_clips, duration_s, sample_rate, n_classes, clips_per_song, seed)
    out_dir = Path(out_dir)
    clip_rows, target_tables = [], []
    for index in range(n_clips):
        clip = synthesize_clip(index, **{k: v for k, v in params.items() if k != "n_clips"})
        relative = f"audio/{clip.clip_id}.flac"
        with atomic_path(out_dir / relative) as tmp:
            sf.write(tmp, clip.audio, sample_rate, format="FLAC", subtype="PCM_16")
        clip_rows.append(
            {"clip_id": clip.clip_id, "path": relative, "label": clip.label, "group": clip.group}
        )
        target_tables.append(clip.targets.assign(clip_id=clip.clip_id))
    targets = pd.concat(target_tables, ignore_index=True)[["clip_id", "t", "arousal", "valence"]]
    _write_csv(targets, out_dir / "targets.csv")
    write_json(
        {
            **params,
            "classes": list(CLASS_NAMES[n_classes]),
            "window_s": WINDOW_S,
            "merflow_version": __version__,
        },
        out_dir / "synth.json",
    )
    _write_csv(pd.DataFrame(clip_rows), out_dir / "clips.csv")
    return out_dir


def _checked_params(n_clips, duration_s, sample_rate, n_classes, clips_per_song, seed) -> dict:
    """The generation parameters, or a ConfigError naming every bad one."""
    _check_n_classes(n_classes)
    problems = [
        f"{name} must be an integer ≥ {minimum} (got {value!r})"
        for name, value, minimum in (
            ("n_clips", n_clips, 1),
            ("sample_rate", sample_rate, 8000),
            ("clips_per_song", clips_per_song, 1),
            ("seed", seed, 0),
        )
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum
    ]
    if not (isinstance(duration_s, int | float) and duration_s >= WINDOW_S):
        problems.append(f"duration_s must be at least {WINDOW_S} seconds (got {duration_s!r})")
    if problems:
        raise ConfigError("synth: " + "; ".join(problems))
    return {
        "n_clips": n_clips,
        "duration_s": float(duration_s),
        "sample_rate": sample_rate,
        "n_classes": n_classes,
        "clips_per_song": clips_per_song,
        "seed": seed,
    }


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def read(spec: dict) -> RawIndex:
    """Read what :func:`generate` wrote under ``spec["root"]``: clips (absolute paths), targets."""
    root = Path(spec["root"])
    clips_csv = root / "clips.csv"
    if not clips_csv.is_file():
        raise DatasetError(
            f"{clips_csv} not found: the synthetic dataset has not been generated. Run "
            f"`merflow synth --out {root}` (or the workflow's `synthesize` rule) first"
        )
    params = _read_params(root, spec)
    clips = pd.read_csv(clips_csv, dtype={"clip_id": str, "path": str, "label": str, "group": str})
    targets = pd.read_csv(root / "targets.csv", dtype={"clip_id": str})
    clips["path"] = [str(root / p) for p in clips["path"]]
    present = clips["path"].map(os.path.isfile).to_numpy(dtype=bool)
    index = RawIndex(
        clips=clips[present].reset_index(drop=True),
        targets=targets[targets["clip_id"].isin(clips["clip_id"][present])].reset_index(drop=True),
        classes=list(params["classes"]),
    )
    for row in clips[~present].itertuples():
        index.exclude(row.clip_id, row.path, "audio file missing; run `merflow synth` again")
    return index


def _read_params(root: Path, spec: dict) -> dict:
    """The parameters the data was made with; refuse data made with others than the config's."""
    path = root / "synth.json"
    if not path.is_file():
        raise DatasetError(
            f"{path} not found: the synthetic dataset is incomplete. Run "
            f"`merflow synth --out {root}` again"
        )
    params = read_json(path)
    stale = [
        f"{key}: data {params.get(key)!r}, config {spec[key]!r}"
        for key in ("n_clips", "duration_s", "sample_rate", "n_classes", "clips_per_song", "seed")
        if key in spec and params.get(key) != spec[key]
    ]
    if stale:
        raise DatasetError(
            f"{root} was generated with other parameters ({'; '.join(stale)}). Generate it "
            "again with `merflow synth` (the workflow's `synthesize` rule does so)"
        )
    return params
