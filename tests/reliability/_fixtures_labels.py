"""Tiny datasets with one planted fault each, for the bad-label tests (and the bad-audio ones).

Every builder writes a small, valid dataset (three 2-second WAVs, ids ``a``, ``b``, ``c``) into a
folder, plants exactly one fault, and returns a :class:`Case`: the spec to index, the clip id(s)
the fault must quarantine, a fragment of the reason (which also carries the fix), and what the
``fail`` error must name (the file or the row).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

GOOD_IDS = ("a", "b", "c")
SECONDS = 2.0
RATE = 8000
TIMES = (0.5, 1.0, 1.5, 2.0)  # window ends of a 2 s clip


@dataclass
class Case:
    spec: dict
    bad_ids: list[str]  # quarantine must list exactly these (a duplicate id twice)
    reason: str  # fragment of the quarantine reason
    names: list[str]  # fragments the `fail` error must contain (file, row, fix)


def write_wav(path: Path, seconds: float = SECONDS, rate: int = RATE, channels: int = 1) -> Path:
    """A short deterministic tone (never silence: a decoder bug would then go unnoticed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.1 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), rate, subtype="PCM_16")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- a labelled dataset (manifest: id, path, label) ----------------------------------------------


def labelled(root: Path, rows: list[list] | None = None) -> dict:
    """Manifest dataset: audio/<id>.wav, labels happy/sad alternating; ``rows`` replaces them."""
    if rows is None:
        rows = [
            [i, f"audio/{i}.wav", "happy" if k % 2 == 0 else "sad"] for k, i in enumerate(GOOD_IDS)
        ]
    for _, path, _ in rows:
        if isinstance(path, str) and path.startswith("audio/"):
            write_wav(root / path)
    write_csv(root / "manifest.csv", ["id", "path", "label"], rows)
    return {"name": "fixture", "adapter": "manifest", "root": root, "id_column": "id"}


def annotated(
    root: Path, values: dict[str, list[tuple[float, float, float]]] | None = None
) -> dict:
    """Manifest dataset with targets.csv: per clip ``(t, arousal, valence)`` rows."""
    spec = labelled(root)
    spec["targets_csv"] = "targets.csv"
    spec["label_column"] = None
    values = values or {}
    rows = []
    for i in GOOD_IDS:
        for t, arousal, valence in values.get(i, [(t, 0.1 * t, -0.1 * t) for t in TIMES]):
            rows.append([i, t, arousal, valence])
    write_csv(root / "targets.csv", ["clip_id", "t", "arousal", "valence"], rows)
    return spec


def deam(
    root: Path, arousal: dict[str, list] | None = None, valence: dict[str, list] | None = None
) -> dict:
    """DEAM layout: MEMD_audio/<id>.wav and dynamic CSVs with columns sample_500ms…sample_2000ms."""
    ids = ("2", "3", "4")
    for i in ids:
        write_wav(root / "MEMD_audio" / f"{i}.wav")
    arousal = arousal if arousal is not None else {i: [0.1, 0.2, 0.3, 0.4] for i in ids}
    valence = valence if valence is not None else {i: [-0.1, -0.2, -0.3, -0.4] for i in ids}
    folder = (
        root / "annotations" / "annotations averaged per song" / "dynamic (per second annotations)"
    )
    header = ["song_id"] + [f"sample_{int(t * 1000)}ms" for t in TIMES]
    for name, table in (("arousal", arousal), ("valence", valence)):
        write_csv(folder / f"{name}.csv", header, [[i, *v] for i, v in table.items()])
    return {"name": "fixture", "adapter": "deam", "root": root}


# --- one planted fault each ----------------------------------------------------------------------


def missing_label(root: Path) -> Case:
    spec = labelled(root)
    write_csv(
        root / "manifest.csv",
        ["id", "path", "label"],
        [["a", "audio/a.wav", "happy"], ["b", "audio/b.wav", ""], ["c", "audio/c.wav", "sad"]],
    )
    return Case(spec, ["b"], "without a label", ["b.wav", "label it"])


def missing_valence_row(root: Path) -> Case:
    full = {i: [-0.1, -0.2, -0.3, -0.4] for i in ("2", "4")}
    spec = deam(root, valence=full)
    return Case(spec, ["3"], "none in valence.csv", ["song 3", "valence.csv"])


def nan_value(root: Path) -> Case:
    arousal = {"2": [0.1, 0.2, 0.3, 0.4], "3": [0.1, "", 0.3, 0.4], "4": [0.1, 0.2, 0.3, 0.4]}
    spec = deam(root, arousal=arousal)
    return Case(spec, ["3"], "arousal is missing (NaN) at t=1 s", ["3.wav", "NaN"])


def word_for_a_rating(root: Path) -> Case:
    bad = [(0.5, 0.1, 0.0), (1.0, "high", 0.0), (1.5, 0.1, 0.0), (2.0, 0.1, 0.0)]
    spec = annotated(root, {"b": bad})
    return Case(spec, ["b"], "arousal 'high' at t=1 s is not a number", ["b.wav", "-1 to 1"])


def word_for_the_last_rating(root: Path) -> Case:
    """In DEAM's wide rows, empty cells after the last value end a song; a word is a value."""
    arousal = {"2": [0.1, 0.2, 0.3, 0.4], "3": [0.1, 0.2, 0.3, "high"], "4": [0.1, 0.2, 0.3, 0.4]}
    spec = deam(root, arousal=arousal)
    return Case(spec, ["3"], "arousal 'high' at t=2 s is not a number", ["3.wav", "-1 to 1"])


def out_of_range(root: Path) -> Case:
    bad = [(0.5, 0.1, 0.0), (1.0, 1.5, 0.0), (1.5, 0.1, 0.0), (2.0, 0.1, 0.0)]
    spec = annotated(root, {"b": bad})
    return Case(spec, ["b"], "arousal 1.5 at t=1 s is outside [-1, 1]", ["b.wav", "rescale"])


def off_grid_time(root: Path) -> Case:
    bad = [(0.5, 0.1, 0.0), (0.75, 0.1, 0.0), (1.5, 0.1, 0.0)]
    spec = annotated(root, {"c": bad})
    return Case(spec, ["c"], "t=0.75 s is not on the 0.5 s grid", ["c.wav", "resample"])


def duplicate_ids(root: Path) -> Case:
    write_wav(root / "audio" / "b2.wav")
    rows = [
        ["a", "audio/a.wav", "happy"],
        ["b", "audio/b.wav", "sad"],
        ["b", "audio/b2.wav", "happy"],
        ["c", "audio/c.wav", "sad"],
    ]
    spec = labelled(root, rows)
    return Case(spec, ["b", "b"], "used 2 times", ["b.wav", "b2.wav", "rename"])


def label_without_audio(root: Path) -> Case:
    rows = [[i, f"audio/{i}.wav", "happy" if i != "b" else "sad"] for i in GOOD_IDS]
    spec = labelled(root, rows + [["d", "gone/d.wav", "sad"]])
    return Case(spec, ["d"], "no audio file is at this path", ["gone/d.wav", "put its audio"])


def audio_without_labels(root: Path) -> Case:
    spec = deam(root)
    write_wav(root / "MEMD_audio" / "9.wav")
    return Case(spec, ["9"], "without arousal/valence annotations", ["9.wav", "annotate it"])


def annotations_past_end(root: Path) -> Case:
    long = [(t, 0.1, 0.1) for t in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)]
    spec = annotated(root, {"a": long})
    return Case(spec, ["a"], "annotations run to t=3 s but the audio lasts 2.00 s", ["a.wav"])


def path_outside_root(root: Path) -> Case:
    dataset = root / "dataset"
    write_wav(root / "elsewhere" / "x.wav")
    rows = [["a", "audio/a.wav", "happy"], ["x", "../elsewhere/x.wav", "sad"]]
    rows += [["c", "audio/c.wav", "sad"]]
    spec = labelled(dataset, rows)
    return Case(
        spec, ["x"], "leads outside the dataset root", ["line 3", "allow_outside_root: true"]
    )


def folder_contradicts_annotations(root: Path) -> Case:
    for i, label in (("a", "happy"), ("b", "happy"), ("c", "sad"), ("d", "sad")):
        write_wav(root / label / f"{i}.wav")
    write_csv(root / "annotations.csv", ["Song", "Quadrant"], [["a", "happy"], ["b", "sad"]])
    spec = {"name": "fixture", "adapter": "folder", "root": root}
    return Case(spec, ["b"], "lies in folder 'happy' but annotations.csv labels it sad", ["b.wav"])


def time_missing(root: Path) -> Case:
    spec = annotated(root, {"a": [(0.5, 0.1, 0.0), (float("nan"), 0.1, 0.0)]})
    return Case(spec, ["a"], "an annotation row has no time", ["a.wav", "fill in"])


def time_twice(root: Path) -> Case:
    spec = annotated(root, {"b": [(0.5, 0.1, 0.0), (0.5, 0.2, 0.0), (1.0, 0.1, 0.0)]})
    return Case(spec, ["b"], "two annotation rows for t=0.5 s", ["b.wav", "keep one"])


def time_at_start(root: Path) -> Case:
    spec = annotated(root, {"c": [(0.0, 0.1, 0.0), (0.5, 0.1, 0.0)]})
    return Case(spec, ["c"], "t=0 s is not after the start of the audio", ["c.wav", "shift"])


def annotations_for_unknown_id(root: Path) -> Case:
    spec = annotated(root)
    with (root / "targets.csv").open("a", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(["zz", 0.5, 0.1, 0.1])
    return Case(spec, ["zz"], "the manifest has no such clip", ["targets.csv", "zz"])


def annotated_song_without_audio(root: Path) -> Case:
    rows = {i: [0.1, 0.2, 0.3, 0.4] for i in ("2", "3", "4", "99")}
    spec = deam(root, arousal=rows, valence=rows)
    return Case(spec, ["99"], "no audio file is at this path", ["99.mp3", "put its audio"])


def absolute_path_outside_root(root: Path) -> Case:
    elsewhere = write_wav(root / "elsewhere" / "x.wav")
    rows = [["a", "audio/a.wav", "happy"], ["x", str(elsewhere), "sad"]]
    spec = labelled(root / "dataset", rows + [["c", "audio/c.wav", "sad"]])
    return Case(spec, ["x"], "leads outside the dataset root", ["line 3", "allow_outside_root"])


def song_id_leading_outside_root(root: Path) -> Case:
    """An annotations CSV is a manifest too: a song id ``../../secret/x`` must not reach out."""
    (root / "secret").mkdir(parents=True)
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(int(SECONDS * RATE)) / RATE)
    sf.write(root / "secret" / "x.mp3", tone, RATE, format="MP3", subtype="MPEG_LAYER_III")
    rows = {i: [0.1, 0.2, 0.3, 0.4] for i in ("2", "3", "4", "../../secret/x")}
    spec = deam(root / "deam", arousal=rows, valence=rows)
    return Case(
        spec,
        ["../../secret/x"],
        "leads outside the dataset root",
        ["secret/x", "allow_outside_root"],
    )


LABEL_FAULTS: dict[str, Callable[[Path], Case]] = {
    "missing label": missing_label,
    "missing valence row": missing_valence_row,
    "NaN value": nan_value,
    "a word for a rating": word_for_a_rating,
    "a word for the last rating": word_for_the_last_rating,
    "out of range": out_of_range,
    "time off the grid": off_grid_time,
    "duplicate ids": duplicate_ids,
    "label without audio": label_without_audio,
    "audio without labels": audio_without_labels,
    "annotations past the end": annotations_past_end,
    "path outside root": path_outside_root,
    "folder contradicts annotations": folder_contradicts_annotations,
    "annotation time missing": time_missing,
    "annotation time twice": time_twice,
    "annotation at t=0": time_at_start,
    "annotations for an unknown id": annotations_for_unknown_id,
    "annotated song without audio": annotated_song_without_audio,
    "absolute path outside root": absolute_path_outside_root,
    "song id leading outside root": song_id_leading_outside_root,
}
