"""DEAM and its emoMusic subset (MediaEval Emotion in Music 2013–15): arousal/valence per 500 ms.

Layouts, found automatically under ``root`` (also under ``DEAM_Annotations/`` and ``DEAM_audio/``,
where DEAM's archives unpack):

* DEAM: audio ``MEMD_audio/<song_id>.mp3``; dynamic annotations ``annotations/annotations averaged
  per song/dynamic (per second annotations)/{arousal,valence}.csv``; metadata
  ``metadata/metadata_2013.csv`` (…2014, …2015); openSMILE features ``features/<song_id>.csv``.
* emoMusic: audio ``clips_45seconds/<song_id>.mp3``; annotations
  ``annotations/{arousal,valence}_cont_average.csv`` and ``annotations/songs_info.csv``.

Keys of the dataset's config entry (``spec``), all optional:

``audio_dir`` (default: the first of ``MEMD_audio``, ``DEAM_audio/MEMD_audio``,
``clips_45seconds`` that exists)
    the folder of ``<song_id>.<ext>`` audio files, relative to ``root``.
``split_year`` (default ``null``)
    the official split written to ``fixed_split``: ``2013`` takes songs_info.csv's
    ``Mediaeval 2013 set`` (``development`` / ``evaluation``; songs outside the 2013 set get
    null); ``2015`` makes song ids 2001–2058 (the full songs) ``evaluation`` and every other song
    ``development``. The official 2015 development set is 431 of the 2013 clips, a list the
    annotation files do not hold: this development part is the superset of it.

Targets. Column ``sample_15000ms`` becomes ``t = 15.0``: the rating at 15 s describes the window
from 14.5 s to 15.0 s (docs/tables.md). DEAM's values are already in [-1, 1]. Songs of different
lengths share one table, so a row ends in empty cells after the song's last value: those end its
annotation. An empty cell *before* the last value is a missing rating, which the index stage
quarantines. A song in one of the arousal/valence files but not in the other is quarantined here.
The static (song-level, 1–9) annotations are not read: the stage contracts have no place for them,
and the song means of the dynamic targets serve quadrant stratification.

Groups. ``group`` is the artist (as written, stripped of the tabs the files carry) where
songs_info.csv or the metadata files give one, so that no artist straddles train and test; else
the song id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from merflow.audio import SUPPORTED_SUFFIXES
from merflow.datasets.base import RawIndex, numbers_or_text
from merflow.datasets.folder import audio_files
from merflow.datasets.manifest import read_csv_table
from merflow.errors import DatasetError
from merflow.features.windows import WINDOW_S

ANNOTATION_HOMES = (".", "DEAM_Annotations")
DYNAMIC_FILES = {
    "DEAM": "annotations/annotations averaged per song/dynamic (per second annotations)/{}.csv",
    "emoMusic": "annotations/{}_cont_average.csv",
}
AUDIO_DIRS = ("MEMD_audio", "DEAM_audio/MEMD_audio", "clips_45seconds")
SONG_INFO_FILES = (
    "annotations/songs_info.csv",
    "songs_info.csv",
    "metadata/metadata_2013.csv",
    "metadata/metadata_2014.csv",
    "metadata/metadata_2015.csv",
)
FEATURE_DIRS = ("features", "DEAM_features/features", "DEAM_features")
EVALUATION_2015 = range(2001, 2059)
SAMPLE_COLUMN = re.compile(r"sample_(\d+(?:\.\d+)?)ms")


def read(spec: dict) -> RawIndex:
    root = Path(spec["root"])
    split_year = spec.get("split_year")
    if split_year not in (None, 2013, 2015):
        raise DatasetError(f"dataset '{spec['name']}': split_year must be 2013, 2015 or null")
    audio_dir = _audio_dir(root, spec)
    audio = {p.stem: p for p in audio_files(audio_dir, SUPPORTED_SUFFIXES)}
    index = RawIndex(clips=pd.DataFrame())
    targets, annotated, half_annotated = _dynamic_targets(root)
    for song_id, reason in half_annotated.items():
        index.exclude(song_id, str(audio[song_id]) if song_id in audio else None, reason)
    song_ids = sorted((set(annotated) | set(audio)) - set(half_annotated), key=_song_order)
    info = _song_info(root, required=split_year == 2013)
    index.clips = pd.DataFrame(
        {
            "clip_id": song_ids,
            # an annotated song without audio keeps its expected path: the index stage reports it
            "path": [str(audio.get(i, audio_dir / f"{i}.mp3")) for i in song_ids],
            "group": [info["artist"].get(i) or i for i in song_ids],
            "label": None,
            "fixed_split": [_fixed_split(i, split_year, info) for i in song_ids],
        }
    )
    index.targets = targets[targets["clip_id"].isin(song_ids)].reset_index(drop=True)
    return index


def _audio_dir(root: Path, spec: dict) -> Path:
    candidates = [spec["audio_dir"]] if spec.get("audio_dir") else AUDIO_DIRS
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(
        f"dataset '{spec['name']}': no audio folder ({' or '.join(candidates)}) under {root}. "
        "Unpack DEAM_audio.zip (MEMD_audio/) there, or set 'audio_dir' to the folder of "
        "<song_id>.mp3 files"
    )


def _dynamic_targets(root: Path) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """Long targets ``clip_id, t, arousal, valence``, the ids annotated in both files, and the
    ids annotated in one file only (with the reason to quarantine them)."""
    arousal_csv, valence_csv = _dynamic_files(root)
    arousal, arousal_ids = _read_dynamic(arousal_csv)
    valence, valence_ids = _read_dynamic(valence_csv)
    half_annotated = {}
    for song_id in sorted(set(arousal_ids) ^ set(valence_ids), key=_song_order):
        has, lacks = (
            (arousal_csv, valence_csv) if song_id in arousal_ids else (valence_csv, arousal_csv)
        )
        half_annotated[song_id] = (
            f"song {song_id} has a row in {has.name} but none in {lacks.name}; a song needs "
            "both arousal and valence annotations (re-download the annotations)"
        )
    both = set(arousal_ids) & set(valence_ids)
    targets = pd.merge(
        arousal.rename(columns={"value": "arousal"}),
        valence.rename(columns={"value": "valence"}),
        on=["clip_id", "t"],
        how="outer",  # a time rated in one dimension only becomes NaN: quarantined later
    )
    targets = targets[targets["clip_id"].isin(both)]
    return targets.sort_values(["clip_id", "t"], ignore_index=True), sorted(both), half_annotated


def _dynamic_files(root: Path) -> tuple[Path, Path]:
    tried = []
    for home in ANNOTATION_HOMES:
        for pattern in DYNAMIC_FILES.values():
            pair = tuple(root / home / pattern.format(d) for d in ("arousal", "valence"))
            if all(p.is_file() for p in pair):
                return pair
            tried.append(str(pair[0].relative_to(root)))
    raise DatasetError(
        f"no DEAM dynamic annotations under {root} (looked for {'; '.join(tried)} and the "
        "valence files beside them). Unpack DEAM_Annotations.zip there"
    )


def _read_dynamic(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """One dynamic annotation file as long rows ``clip_id, t, value``, and the song ids it lists.

    A row's empty cells after its last value end the song; earlier empty cells stay NaN, and a
    word stays a word (:func:`numbers_or_text`).
    """
    table = read_csv_table(path)
    columns = {}
    for column in table.columns[1:]:
        match = SAMPLE_COLUMN.fullmatch(column)
        if match is None:
            raise DatasetError(
                f"{path}: column {column!r} is not of the form sample_<milliseconds>ms; is this "
                "a DEAM dynamic annotation file (song_id,sample_15000ms,...)?"
            )
        columns[column] = float(match[1]) / 1000.0
    ordered = sorted(columns, key=columns.get)
    times = np.array([columns[c] for c in ordered])
    values = numbers_or_text(table[ordered]).to_numpy(dtype=object)
    song_ids = table.iloc[:, 0].map(_song_id).to_numpy(dtype=object)
    rated = pd.notna(values)
    last = np.where(rated.any(axis=1), values.shape[1] - 1 - rated[:, ::-1].argmax(axis=1), -1)
    rows, cols = np.nonzero(np.arange(values.shape[1])[None, :] <= last[:, None])
    long = pd.DataFrame({"clip_id": song_ids[rows], "t": times[cols], "value": values[rows, cols]})
    return long, [i for i in song_ids if i is not None]


def _song_id(value) -> str | None:
    """``'2'``, ``' 2.0'`` → ``'2'``: DEAM's ids are integers, however a spreadsheet wrote them."""
    if pd.isna(value):
        return None
    text = str(value).strip()
    return str(int(float(text))) if re.fullmatch(r"\d+(\.0*)?", text) else text


def _song_order(song_id: str) -> tuple[int, str]:
    return (int(song_id), "") if song_id.isdigit() else (10**12, song_id)


def _song_info(root: Path, required: bool) -> dict[str, dict[str, str]]:
    """Artists and 2013 sets by song id, from every songs_info/metadata file found.

    Returns ``{"artist": {id: artist}, "set_2013": {id: "development" | "evaluation"}}``.
    """
    info: dict[str, dict[str, str]] = {"artist": {}, "set_2013": {}}
    found = [root / home / name for home in ANNOTATION_HOMES for name in SONG_INFO_FILES]
    found = [p for p in found if p.is_file()]
    for path in found:
        table = read_csv_table(path)
        lower = {c.lower(): c for c in table.columns}
        id_column = lower.get("song_id") or lower.get("id") or table.columns[0]
        ids = table[id_column].map(_song_id)
        for key, column in (("artist", lower.get("artist")), ("set_2013", _set_column(table))):
            if column is not None:
                for song_id, value in zip(ids, table[column], strict=True):
                    if song_id is not None and not pd.isna(value):
                        info[key].setdefault(song_id, value.lower() if key == "set_2013" else value)
    if required and not info["set_2013"]:
        raise DatasetError(
            f"split_year 2013 needs the MediaEval 2013 split ('Mediaeval 2013 set' column of "
            f"songs_info.csv) but none was found under {root} (looked for "
            f"{', '.join(SONG_INFO_FILES)}); add it, or set split_year to 2015 or null"
        )
    return info


def _set_column(table: pd.DataFrame) -> str | None:
    return next((c for c in table.columns if "2013 set" in c.lower()), None)


def _fixed_split(song_id: str, split_year: int | None, info: dict) -> str | None:
    if split_year == 2013:
        return info["set_2013"].get(song_id)
    if split_year == 2015:
        return (
            "evaluation" if song_id.isdigit() and int(song_id) in EVALUATION_2015 else "development"
        )
    return None


# --- DEAM's own features ------------------------------------------------------------------------


def read_provided_features(root: str | Path, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """DEAM's openSMILE features (``features/<id>.csv``) as a windowed feature table.

    DEAM gives, per song, one ``;``-separated row every 500 ms: ``frameTime`` then 260 columns
    (mean and standard deviation of the 65 ComParE LLDs and their deltas over the window).
    openSMILE stamps a window with its *start* time, so the row at ``frameTime = f`` describes
    ``[f, f + 0.5)`` and becomes ``t = f + 0.5`` (docs/tables.md: windows are labelled by their
    end), so rows from ``frameTime`` 0 to 44.5 cover the ratings ``sample_500ms`` … ``45000ms``.
    (Checked on generated files in DEAM's format; no real DEAM feature file was at hand.)

    Returns ``clip_id`` (string), ``t`` (float64), then DEAM's 260 columns as float32 under their
    own names, sorted by ``clip_id``, ``t``. ``ids=None`` reads every file. A missing or
    malformed file, or files whose columns differ, raise :class:`DatasetError` naming the file.
    """
    folder = _features_dir(Path(root))
    if ids is None:
        ids = sorted((p.stem for p in folder.glob("*.csv")), key=_song_order)
    frames = [_provided_feature_file(folder / f"{song_id}.csv", str(song_id)) for song_id in ids]
    if not frames:
        raise DatasetError(f"{folder} holds no <song_id>.csv feature files")
    reference = frames[0].columns
    for song_id, frame in zip(ids, frames, strict=True):
        if not frame.columns.equals(reference):
            raise DatasetError(
                f"{folder / f'{song_id}.csv'}: its columns differ from those of "
                f"{frames[0]['clip_id'].iloc[0]}.csv; all DEAM feature files must share one header"
            )
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["clip_id", "t"], ignore_index=True)


def _features_dir(root: Path) -> Path:
    for name in FEATURE_DIRS:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(
        f"no DEAM feature folder ({' or '.join(FEATURE_DIRS)}) under {root}; unpack "
        "DEAM_features.zip there, or use the computed features (compare_500ms) instead"
    )


def _provided_feature_file(path: Path, song_id: str) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"{path} not found: DEAM gives no features for song {song_id}")
    try:
        raw = pd.read_csv(path, sep=";")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable DEAM feature CSV ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    if "frameTime" not in raw.columns or raw.shape[1] < 2 or raw.empty:
        raise DatasetError(f"{path}: expected a ';'-separated table with frameTime and features")
    start = raw["frameTime"].to_numpy(np.float64)
    expected = np.arange(len(start)) * WINDOW_S + start[0]
    steps = start / WINDOW_S
    if not (np.allclose(start, expected, atol=1e-6) and np.allclose(steps, np.round(steps))):
        raise DatasetError(
            f"{path}: frameTime is not a {WINDOW_S:g} s grid (0, {WINDOW_S:g}, {2 * WINDOW_S:g}, "
            "...); these are not DEAM's 500 ms features"
        )
    features = raw.drop(columns="frameTime").apply(pd.to_numeric, errors="coerce")
    if features.isna().any().any():
        column = features.columns[features.isna().any()][0]
        raise DatasetError(f"{path}: column {column!r} holds empty or non-numeric values")
    table = features.astype(np.float32)
    table.insert(0, "t", np.round(steps + 1) * WINDOW_S)
    table.insert(0, "clip_id", song_id)
    return table
