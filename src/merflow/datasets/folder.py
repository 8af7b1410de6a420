"""Folder-per-class datasets: ``<audio_dir>/<class>/<clip>.<ext>``, the label is the folder name.

Velankar's layout (``root/<class>/*.mp3``) and 4Q's (``audio/Q1`` … ``audio/Q4``). Keys of the
dataset's config entry (``spec``), all optional:

``audio_dir`` (default: ``root``)
    the folder holding one sub-folder per class, relative to ``root`` (4Q: ``audio``).
``extensions`` (default: every format :mod:`merflow.audio` decodes)
    which files are audio, e.g. ``[mp3]``; case-insensitive, with or without the dot.
``id_column``, ``label_column`` (default: the first two columns)
    the columns of ``annotations.csv`` that hold the clip id and its label.

What each clip gets:

* ``label``: the name of the class folder it lies in (at any depth below it); ``classes`` are the
  folder names, sorted. A sub-folder without audio is not a class.
* ``clip_id``: the file name without extension (4Q's song ids), so an id does not change when a
  file moves between class folders. Two files with one name are duplicates: the index stage
  quarantines both.
* ``group``: the artist, where ``metadata.csv`` (4Q; or ``panda_dataset_taffc_metadata.csv``)
  has an ``Artist`` column, so that no artist is split across train and test; else the clip id.

If ``annotations.csv`` (4Q: ``Song,Quadrant``; or ``panda_dataset_taffc_annotations.csv``) lies in
``root`` or ``audio_dir``, every file is checked against it: a file whose folder disagrees with
its annotation, and an annotation without an audio file, are quarantined with the reason. A file
the annotations do not list keeps its folder's label.

Nothing is dropped silently: a file in a class folder that is not audio, and an audio file lying
directly in ``audio_dir`` (in no class folder), are quarantined; only hidden files (``.DS_Store``)
are skipped. :func:`audio_files` and :func:`normalized_extensions` serve the other adapters too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from merflow.audio import SUPPORTED_SUFFIXES
from merflow.datasets.base import RawIndex
from merflow.datasets.manifest import read_csv_table, require_columns
from merflow.errors import DatasetError

ANNOTATION_FILES = ("annotations.csv", "panda_dataset_taffc_annotations.csv")
METADATA_FILES = ("metadata.csv", "panda_dataset_taffc_metadata.csv")


def read(spec: dict) -> RawIndex:
    root = Path(spec["root"])
    audio_dir = root / spec["audio_dir"] if spec.get("audio_dir") else root
    if not audio_dir.is_dir():
        raise DatasetError(
            f"dataset '{spec['name']}': audio_dir {audio_dir} is not a folder; set 'audio_dir' "
            "to the folder that holds one sub-folder per class"
        )
    extensions = normalized_extensions(spec.get("extensions"))
    index = RawIndex(clips=pd.DataFrame())
    clips = _scan_class_folders(audio_dir, extensions, index)
    classes = sorted(clips["label"].unique())
    if len(classes) < 2:
        raise DatasetError(
            f"dataset '{spec['name']}': {audio_dir} holds audio ({', '.join(extensions)}) in "
            f"{len(classes)} class folder(s) {classes}; a folder-per-class dataset needs one "
            "sub-folder per class (root/<class>/*.mp3). If the class folders lie deeper, set "
            "'audio_dir' to their parent (4Q: 'audio')"
        )
    annotations_csv = _first_existing(ANNOTATION_FILES, (root, audio_dir))
    if annotations_csv is not None:
        clips = _cross_check(clips, annotations_csv, audio_dir, spec, index)
    artists = _artists(_first_existing(METADATA_FILES, (root, audio_dir)))
    clips["group"] = [artists.get(clip_id, clip_id) for clip_id in clips["clip_id"]]
    index.clips = clips.reset_index(drop=True)
    index.classes = classes
    return index


def normalized_extensions(extensions: Iterable[str] | None) -> tuple[str, ...]:
    """``["MP3", "wav"]`` → ``(".mp3", ".wav")``; ``None`` → every suffix merflow decodes."""
    if extensions is None:
        return SUPPORTED_SUFFIXES
    return tuple(sorted({"." + e.lower().lstrip(".") for e in extensions}))


def audio_files(directory: Path, extensions: Iterable[str]) -> list[Path]:
    """Audio files directly in ``directory`` (not hidden), sorted; suffixes case-insensitive.
    Whatever is not a folder counts (a named pipe, a broken link): the index says what it is."""
    extensions = tuple(extensions)
    return sorted(
        p
        for p in directory.iterdir()
        if not p.is_dir() and not p.name.startswith(".") and p.suffix.lower() in extensions
    )


def _scan_class_folders(audio_dir: Path, extensions: tuple[str, ...], index: RawIndex):
    """Clips of every class folder; strays (non-audio files, audio outside a class) quarantined."""
    rows = []
    for entry in sorted(audio_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir() and entry.suffix.lower() in extensions:
            index.exclude(
                entry.stem,
                str(entry),
                f"audio file lies in {audio_dir} itself, in no class folder; move it into the "
                "folder of its class",
            )
        elif entry.is_dir():
            # A dangling symlink or a named pipe is no regular file, but it is a clip the user
            # meant: it goes on and is quarantined (never opened) instead of vanishing.
            files = [
                p for p in sorted(entry.rglob("*")) if not p.is_dir() and not _hidden(p, entry)
            ]
            audio = [p for p in files if p.suffix.lower() in extensions]
            if not audio:
                continue  # not a class folder
            rows += [{"clip_id": p.stem, "path": str(p), "label": entry.name} for p in audio]
            for stray in sorted(set(files) - set(audio)):
                index.exclude(
                    stray.name,
                    str(stray),
                    f"not an audio file of the accepted kinds ({', '.join(extensions)}) in class "
                    f"folder '{entry.name}'; convert it, remove it, or add its extension to "
                    "'extensions'",
                )
    return pd.DataFrame(rows, columns=["clip_id", "path", "label"])


def _hidden(path: Path, top: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(top).parts)


def _first_existing(names: tuple[str, ...], folders: tuple[Path, ...]) -> Path | None:
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _cross_check(
    clips: pd.DataFrame, annotations_csv: Path, audio_dir: Path, spec: dict, index: RawIndex
) -> pd.DataFrame:
    """Quarantine files whose folder contradicts the annotations, and annotations without audio."""
    table = read_csv_table(annotations_csv)
    id_column = spec.get("id_column") or table.columns[0]
    label_column = spec.get("label_column") or table.columns[min(1, len(table.columns) - 1)]
    require_columns(table, annotations_csv, [id_column, label_column])
    annotated = table.dropna(subset=[id_column]).groupby(id_column)[label_column]
    labels = {clip_id: sorted(set(values.dropna())) for clip_id, values in annotated}
    keep = []
    for clip in clips.itertuples(index=False):
        expected = labels.get(clip.clip_id)
        agrees = expected is None or expected == [clip.label]
        keep.append(agrees)
        if not agrees:
            index.exclude(
                clip.clip_id,
                clip.path,
                f"lies in folder '{clip.label}' but {annotations_csv.name} labels it "
                f"{' and '.join(expected) or 'with nothing'}; move the file or correct the "
                "annotation",
            )
    present = set(clips["clip_id"])
    for clip_id, expected in sorted(labels.items()):
        if clip_id not in present:
            index.exclude(
                clip_id,
                None,
                f"{annotations_csv.name} labels it {' and '.join(expected) or '(empty)'} but no "
                f"audio file of that name is in the class folders of {audio_dir}; add the audio "
                "or remove the annotation row",
            )
    return clips[keep]


def _artists(metadata_csv: Path | None) -> dict[str, str]:
    """Clip id → artist from a metadata table with an ``Artist`` column ({} when there is none)."""
    if metadata_csv is None:
        return {}
    table = read_csv_table(metadata_csv)
    artist_column = next((c for c in table.columns if c.lower() == "artist"), None)
    if artist_column is None:
        return {}
    known = table.dropna(subset=[table.columns[0], artist_column])
    return dict(zip(known[table.columns[0]], known[artist_column], strict=True))
