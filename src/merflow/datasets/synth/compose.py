"""Composing a clip from its emotion: classes and labels, songs, emotion curves, and the score
(chords, bass, melody, drums) whose tempo, loudness, density, mode, consonance, register and
brightness follow the curves (the cues are listed in :mod:`merflow.datasets.synth`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from merflow.errors import ConfigError
from merflow.features.windows import WINDOW_S

# the classes for each n_classes, in sector order from SECTOR_START_DEG (see the module doc)
CLASS_NAMES: dict[int, tuple[str, ...]] = {
    2: ("positive", "negative"),
    3: ("energetic", "sad", "calm"),
    4: ("Q1", "Q2", "Q3", "Q4"),
}
SECTOR_START_DEG: dict[int, float] = {2: -90.0, 3: 30.0, 4: 0.0}
CONTROL_RATE = 100  # Hz: emotion curves and tempo are evaluated on this grid
N_ROOMS = 8  # the rooms (reverberations) the songs of a dataset share
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
