"""PMEmo (Zhang et al. 2018): chorus clips with valence/arousal rated every 0.5 s.

Two layouts, told apart by what is in ``root``:

* **official CSV release** (PMEmo2019): ``annotations/dynamic_annotations.csv`` with columns
  ``musicId, frameTime, Arousal(mean), Valence(mean)``; audio ``chorus/<musicId>.mp3``; artists in
  ``metadata.csv`` (``musicId, …, artist, …``) when present.
* **JSON per song** (the pmemo-sample layout): ``<id>.json`` holding ``artist`` and ``dynamic``
  ``{t, v, a}`` (also spelled ``valence``, ``arousal``) beside ``<id>.mp3``. JSON files whose
  name is not a number (``index.json``, ``overview.json``) are summaries, not songs.

Keys of the dataset's config entry (``spec``), all optional: ``audio_dir``, the folder of
``<id>.<ext>`` audio relative to ``root`` (default ``chorus`` for the CSV layout, ``root`` itself
for the JSON layout).

Values. PMEmo rates on [0, 1]; merflow's targets live in [-1, 1], so every value ``v`` becomes
``2 v - 1`` (0.5, the scale's midpoint, becomes 0).

Times. PMEmo samples each listener's slider at 2 Hz and drops the first 15 s, so its first
time is 15.5 s, measured from the start of the chorus clip (the audio file). As with DEAM, the
slider's position at time ``f`` rates what the listener has just heard: the window ending at
``f``. So ``t = frameTime`` unchanged — PMEmo's times already lie on the 0.5 s grid of window
ends, and ``15.5`` describes the audio from 15.0 s to 15.5 s.

``group`` is the artist where known, else the song id. An annotated song without audio and
audio without annotations both reach the index stage, which quarantines them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from merflow.audio import SUPPORTED_SUFFIXES
from merflow.datasets.base import RawIndex
from merflow.datasets.folder import audio_files
from merflow.datasets.manifest import read_csv_table
from merflow.errors import DatasetError

DYNAMIC_CSV = "annotations/dynamic_annotations.csv"
CSV_COLUMNS = {"musicId": "clip_id", "frameTime": "t", "Arousal(mean)": "arousal"}
CSV_COLUMNS |= {"Valence(mean)": "valence"}
JSON_KEYS = {"t": ("t",), "valence": ("valence", "v"), "arousal": ("arousal", "a")}


def read(spec: dict) -> RawIndex:
    root = Path(spec["root"])
    index = RawIndex(clips=pd.DataFrame())
    if (root / DYNAMIC_CSV).is_file():
        audio_dir = root / spec.get("audio_dir", "chorus")
        targets, artists = _read_csv_layout(root)
        annotated = set(targets["clip_id"])
    elif any(p.stem.isdigit() for p in root.glob("*.json")):
        audio_dir = root / spec["audio_dir"] if spec.get("audio_dir") else root
        targets, artists, annotated = _read_json_layout(root, index)
    else:
        raise DatasetError(
            f"dataset '{spec['name']}': {root} holds neither {DYNAMIC_CSV} (PMEmo's release) nor "
            "<id>.json annotation files; unpack PMEmo there or point 'root' at it"
        )
    if not audio_dir.is_dir():
        raise DatasetError(
            f"dataset '{spec['name']}': audio folder {audio_dir} does not exist; unpack PMEmo's "
            "chorus clips there or set 'audio_dir'"
        )
    audio = {p.stem: p for p in audio_files(audio_dir, SUPPORTED_SUFFIXES)}
    unreadable = {q["clip_id"] for q in index.quarantine}
    song_ids = sorted((annotated | set(audio)) - unreadable)
    index.clips = pd.DataFrame(
        {
            "clip_id": song_ids,
            "path": [str(audio.get(i, audio_dir / f"{i}.mp3")) for i in song_ids],
            "group": [artists.get(i) or i for i in song_ids],
            "label": None,
        }
    )
    for column in ("arousal", "valence"):
        targets[column] = 2.0 * targets[column] - 1.0
    index.targets = targets.sort_values(["clip_id", "t"], ignore_index=True)
    return index


def _read_csv_layout(root: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    path = root / DYNAMIC_CSV
    table = read_csv_table(path, required=list(CSV_COLUMNS))
    targets = table[list(CSV_COLUMNS)].rename(columns=CSV_COLUMNS)
    for column in ("t", "arousal", "valence"):
        targets[column] = pd.to_numeric(targets[column], errors="coerce")
    targets = targets.dropna(subset=["clip_id"])
    artists = {}
    if (root / "metadata.csv").is_file():
        metadata = read_csv_table(root / "metadata.csv")
        if {"musicId", "artist"} <= set(metadata.columns):
            known = metadata.dropna(subset=["musicId", "artist"])
            artists = dict(zip(known["musicId"], known["artist"], strict=True))
    return targets, artists


def _read_json_layout(root: Path, index: RawIndex) -> tuple[pd.DataFrame, dict[str, str], set[str]]:
    """Targets and artists of every ``<id>.json``; unreadable files are quarantined."""
    frames, artists, annotated = [], {}, set()
    for path in sorted(p for p in root.glob("*.json") if p.stem.isdigit()):
        try:
            song = json.loads(path.read_text(encoding="utf-8"))
            frame = _json_dynamic(song.get("dynamic") or {}, path.stem)
        except (ValueError, AttributeError) as exc:
            index.exclude(path.stem, None, f"{path.name}: {exc}; repair or re-download it")
            continue
        frames.append(frame)
        annotated.add(path.stem)
        if song.get("artist"):
            artists[path.stem] = str(song["artist"]).strip()
    columns = ["clip_id", "t", "arousal", "valence"]
    targets = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return targets, artists, annotated


def _json_dynamic(dynamic: dict, song_id: str) -> pd.DataFrame:
    """``{t: [...], v: [...], a: [...]}`` → rows ``clip_id, t, arousal, valence``."""
    series = {}
    for name, spellings in JSON_KEYS.items():
        key = next((k for k in spellings if k in dynamic), None)
        series[name] = [] if key is None else dynamic[key]
    lengths = {name: len(values) for name, values in series.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"its dynamic series have different lengths {lengths}")
    frame = pd.DataFrame(
        {
            name: pd.to_numeric(pd.Series(v, dtype=object), errors="coerce")
            for name, v in series.items()
        }
    )
    frame.insert(0, "clip_id", song_id)
    return frame[["clip_id", "t", "arousal", "valence"]]
