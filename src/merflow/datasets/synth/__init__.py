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

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from merflow import __version__
from merflow.datasets.base import RawIndex
from merflow.datasets.synth.compose import (
    CLASS_NAMES,
    MASTER_GAIN,
    compose,
    draw_curves,
    draw_song,
    label_for,
    window_targets,
)
from merflow.datasets.synth.render import add_room, render_drums, render_part
from merflow.errors import ConfigError, DatasetError
from merflow.features.windows import WINDOW_S
from merflow.io import atomic_path, read_json, write_json
from merflow.schema import SYNTH_KEYS, synth_settings

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
    duration_s: float,
    sample_rate: int,
    n_classes: int,
    clips_per_song: int,
    seed: int,
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


def generate(out_dir: Path, **params) -> Path:
    """Write the dataset: ``audio/<clip_id>.flac``, ``clips.csv``, ``targets.csv``, ``synth.json``.

    ``params``: ``n_clips``, ``duration_s``, ``sample_rate``, ``n_classes``, ``clips_per_song``,
    ``seed``, each defaulting to the demo's (:func:`merflow.schema.synth_settings`). Every file is
    written atomically; ``clips.csv`` comes last, so its presence means the dataset is complete.
    Paths in ``clips.csv`` are relative to ``out_dir``.
    """
    unknown = sorted(set(params) - set(SYNTH_KEYS))
    if unknown:
        raise ConfigError(f"synth: unknown parameter(s) {unknown}; allowed: {list(SYNTH_KEYS)}")
    params = synth_settings(params)
    params["duration_s"] = float(params["duration_s"])
    out_dir = Path(out_dir)
    clip_rows, target_tables = [], []
    for index in range(params["n_clips"]):
        clip = synthesize_clip(index, **{k: v for k, v in params.items() if k != "n_clips"})
        relative = f"audio/{clip.clip_id}.flac"
        with atomic_path(out_dir / relative) as tmp:
            sf.write(tmp, clip.audio, params["sample_rate"], format="FLAC", subtype="PCM_16")
        clip_rows.append(
            {"clip_id": clip.clip_id, "path": relative, "label": clip.label, "group": clip.group}
        )
        target_tables.append(clip.targets.assign(clip_id=clip.clip_id))
    targets = pd.concat(target_tables, ignore_index=True)[["clip_id", "t", "arousal", "valence"]]
    _write_csv(targets, out_dir / "targets.csv")
    write_json(
        {
            **params,
            "classes": list(CLASS_NAMES[params["n_classes"]]),
            "window_s": WINDOW_S,
            "merflow_version": __version__,
        },
        out_dir / "synth.json",
    )
    _write_csv(pd.DataFrame(clip_rows), out_dir / "clips.csv")
    return out_dir


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
        for key in SYNTH_KEYS
        if key in spec and params.get(key) != spec[key]
    ]
    if stale:
        raise DatasetError(
            f"{root} was generated with other parameters ({'; '.join(stale)}). Generate it "
            "again with `merflow synth` (the workflow's `synthesize` rule does so)"
        )
    return params
