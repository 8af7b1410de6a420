"""Dataset adapters on the real samples (../shared/data) and on small generated fixtures.

Expected values come from reading the raw files independently (the csv and json modules), not
from the adapters' own parsing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from merflow.datasets import deam, folder, manifest, pmemo
from merflow.errors import DatasetError

DYNAMIC = Path("annotations/annotations averaged per song/dynamic (per second annotations)")


def wav(path: Path, seconds: float = 2.0, rate: int = 8000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = 0.1 * np.sin(np.arange(int(seconds * rate)) * 0.3)
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), rate)
    return path


def write_csv(path: Path, rows: list[list], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def value_at(targets: pd.DataFrame, clip_id: str, t: float, column: str) -> float:
    row = targets[(targets["clip_id"] == clip_id) & np.isclose(targets["t"], t)]
    assert len(row) == 1
    return float(row[column].iloc[0])


# --- deam: the emoMusic sample -------------------------------------------------------------------


@pytest.fixture(scope="module")
def emomusic(shared_data):
    root = shared_data / "emomusic-sample"
    spec = {"name": "emo", "adapter": "deam", "root": root, "split_year": 2013}
    return root, deam.read(spec)


def test_deam_reads_every_annotated_song_and_the_audio_present(emomusic):
    root, raw = emomusic
    annotated = {r["song_id"] for r in csv_rows(root / "annotations/arousal_cont_average.csv")}
    assert set(raw.clips["clip_id"]) == annotated and len(annotated) == 744
    with_audio = raw.clips[[Path(p).is_file() for p in raw.clips["path"]]]
    assert sorted(with_audio["clip_id"], key=int) == [
        "2",
        "3",
        "4",
        "5",
        "7",
        "8",
        "10",
        "12",
        "13",
        "17",
    ]
    assert raw.classes is None and raw.quarantine == []


def test_deam_targets_are_the_csv_values_at_window_ends(emomusic):
    root, raw = emomusic
    arousal = {r["song_id"]: r for r in csv_rows(root / "annotations/arousal_cont_average.csv")}
    valence = {r["song_id"]: r for r in csv_rows(root / "annotations/valence_cont_average.csv")}
    targets = raw.targets
    first = targets[targets["clip_id"] == "2"].sort_values("t").iloc[0]
    assert first["t"] == 15.0
    assert first["arousal"] == pytest.approx(float(arousal["2"]["sample_15000ms"]))
    assert value_at(targets, "17", 45.0, "valence") == pytest.approx(
        float(valence["17"]["sample_45000ms"])
    )
    assert value_at(targets, "3", 30.5, "arousal") == pytest.approx(
        float(arousal["3"]["sample_30500ms"])
    )
    per_song = targets.groupby("clip_id")["t"].agg(["min", "max", "size"])
    assert (per_song["min"] == 15.0).all() and (per_song["max"] == 45.0).all()
    assert (per_song["size"] == 61).all()


def test_deam_2013_split_and_artist_groups_from_messy_songs_info(emomusic):
    root, raw = emomusic
    info = {r["song_id"]: r for r in csv_rows(root / "annotations/songs_info.csv")}
    clips = raw.clips.set_index("clip_id")
    for song_id, row in info.items():
        assert clips.loc[song_id, "fixed_split"] == row["Mediaeval 2013 set"].strip()
        assert clips.loc[song_id, "group"] == row["Artist"].strip()
    assert (
        clips.loc["3", "group"] == "Kevin MacLeod" and clips.loc["3", "fixed_split"] == "evaluation"
    )
    assert set(clips["fixed_split"]) == {"development", "evaluation"}


# --- deam: generated fixtures in DEAM's own layout ------------------------------------------------


def deam_fixture(root: Path, rows: dict[str, list], audio: tuple[str, ...] = ()) -> Path:
    """DEAM layout; ``rows`` are the values from sample_500ms on ("" for an empty cell)."""
    width = max(len(v) for v in rows.values())
    header = ["song_id"] + [f"sample_{500 * (k + 1)}ms" for k in range(width)]
    for name, sign in (("arousal", 1), ("valence", -1)):
        body = [
            [i] + [v if v == "" else sign * v for v in values] + [""] * (width - len(values))
            for i, values in rows.items()
        ]
        write_csv(root / DYNAMIC / f"{name}.csv", [header, *body])
    for song_id in audio:
        wav(root / "MEMD_audio" / f"{song_id}.wav")
    return root


def test_deam_trailing_empty_cells_end_a_song_and_inner_ones_stay_missing(tmp_path):
    rows = {"2": [0.1, 0.2], "2001": [0.1, 0.2, 0.3, 0.4], "7": [0.1, "", 0.3]}
    root = deam_fixture(tmp_path, rows, audio=("2", "2001", "7"))
    raw = deam.read({"name": "d", "adapter": "deam", "root": root})
    sizes = raw.targets.groupby("clip_id").size().to_dict()
    assert sizes == {"2": 2, "2001": 4, "7": 3}
    song7 = raw.targets[raw.targets["clip_id"] == "7"].sort_values("t")
    assert song7["t"].tolist() == [0.5, 1.0, 1.5]
    assert np.isnan(song7["arousal"].iloc[1]) and song7["valence"].iloc[2] == pytest.approx(-0.3)


@pytest.mark.parametrize(
    ("split_year", "expected"),
    [
        (
            2015,
            {"5": "development", "2001": "evaluation", "2058": "evaluation", "2059": "development"},
        ),
        (None, {"5": None, "2001": None, "2058": None, "2059": None}),
    ],
)
def test_deam_2015_split_is_song_ids_2001_to_2058(tmp_path, split_year, expected):
    root = deam_fixture(tmp_path, {i: [0.1] for i in expected}, audio=tuple(expected))
    raw = deam.read({"name": "d", "adapter": "deam", "root": root, "split_year": split_year})
    assert dict(zip(raw.clips["clip_id"], raw.clips["fixed_split"], strict=True)) == expected
    assert (raw.clips["group"] == raw.clips["clip_id"]).all()  # no songs_info: song = group


def test_deam_song_in_one_annotation_file_only_is_quarantined(tmp_path):
    root = deam_fixture(tmp_path, {"2": [0.1], "3": [0.2]}, audio=("2", "3"))
    write_csv(root / DYNAMIC / "valence.csv", [["song_id", "sample_500ms"], ["2", "0.1"]])
    raw = deam.read({"name": "d", "adapter": "deam", "root": root})
    assert raw.clips["clip_id"].tolist() == ["2"]
    assert [q["clip_id"] for q in raw.quarantine] == ["3"]
    assert "none in valence.csv" in raw.quarantine[0]["reason"]
    assert raw.quarantine[0]["path"].endswith("3.wav")


def test_deam_without_annotations_or_2013_split_says_what_is_missing(tmp_path):
    wav(tmp_path / "MEMD_audio" / "2.wav")
    with pytest.raises(DatasetError, match="DEAM_Annotations.zip"):
        deam.read({"name": "d", "adapter": "deam", "root": tmp_path})
    deam_fixture(tmp_path, {"2": [0.1]})
    with pytest.raises(DatasetError, match="split_year 2013 needs"):
        deam.read({"name": "d", "adapter": "deam", "root": tmp_path, "split_year": 2013})


def deam_feature_names() -> list[str]:
    lld = [f"lld{k}_sma" for k in range(65)] + [f"lld{k}_sma_de" for k in range(65)]
    return [f"{n}_{stat}" for stat in ("stddev", "amean") for n in lld]


def write_deam_features(folder: Path, song_id: str, n_rows: int, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).normal(size=(n_rows, 260))
    frame_time = np.arange(n_rows) * 0.5
    rows = [["frameTime", *deam_feature_names()]]
    rows += [
        [f"{t:.1f}", *(f"{v:.6e}" for v in row)] for t, row in zip(frame_time, values, strict=True)
    ]
    write_csv(folder / f"{song_id}.csv", rows, delimiter=";")
    return values


def test_provided_features_become_windows_labelled_by_their_end(tmp_path):
    values = {"10": write_deam_features(tmp_path / "features", "10", 6, 0)}
    values["2"] = write_deam_features(tmp_path / "features", "2", 4, 1)
    table = deam.read_provided_features(tmp_path)
    assert list(table.columns[:2]) == ["clip_id", "t"] and table.shape == (10, 262)
    assert table["clip_id"].tolist() == ["10"] * 6 + ["2"] * 4  # sorted by clip_id, t
    song2 = table[table["clip_id"] == "2"]
    assert song2["t"].tolist() == [0.5, 1.0, 1.5, 2.0]  # frameTime 0.0 is the window [0, 0.5)
    assert all(table[c].dtype == np.float32 for c in table.columns[2:])
    np.testing.assert_allclose(song2.iloc[:, 2:].to_numpy(), values["2"], rtol=1e-5)
    only = deam.read_provided_features(tmp_path, ids=["2"])
    assert set(only["clip_id"]) == {"2"}


def test_provided_features_refuse_what_is_not_deam(tmp_path):
    write_deam_features(tmp_path / "features", "2", 3, 0)
    with pytest.raises(DatasetError, match="3.csv not found"):
        deam.read_provided_features(tmp_path, ids=["2", "3"])
    write_csv(
        tmp_path / "features" / "4.csv", [["frameTime", "x"], ["0.0", "1"], ["0.3", "2"]], ";"
    )
    with pytest.raises(DatasetError, match="0.5 s grid"):
        deam.read_provided_features(tmp_path, ids=["4"])
    write_csv(tmp_path / "features" / "5.csv", [["frameTime", "x"], ["0.0", "1"]], ";")
    with pytest.raises(DatasetError, match="share one header"):
        deam.read_provided_features(tmp_path, ids=["2", "5"])


# --- folder ---------------------------------------------------------------------------------------


def test_folder_reads_4q_with_labels_and_artist_groups(shared_data):
    root = shared_data / "4q-sample"
    raw = folder.read({"name": "4q", "adapter": "folder", "root": root, "audio_dir": "audio"})
    quadrant = {r["Song"]: r["Quadrant"] for r in csv_rows(root / "annotations.csv")}
    artist = {r["Song"]: r["Artist"] for r in csv_rows(root / "metadata.csv")}
    clips = raw.clips.set_index("clip_id")
    assert raw.classes == ["Q1", "Q2", "Q3", "Q4"] and raw.quarantine == []
    assert len(clips) == 48 and clips["label"].value_counts().to_dict() == dict.fromkeys(
        raw.classes, 12
    )
    assert clips["label"].to_dict() == quadrant
    assert clips["group"].to_dict() == artist
    assert all(Path(p).parent.name == clips.loc[i, "label"] for i, p in clips["path"].items())


def test_folder_quarantines_strays_and_skips_hidden_files(tmp_path):
    wav(tmp_path / "happy" / "a.wav")
    wav(tmp_path / "happy" / "live" / "b.wav")  # deeper: still class "happy"
    wav(tmp_path / "sad" / "c.WAV")  # suffixes are case-insensitive
    (tmp_path / "sad" / "cover.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "sad" / ".DS_Store").write_bytes(b"junk")
    wav(tmp_path / "loose.wav")  # in no class folder
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.txt").write_text("not a class")
    raw = folder.read({"name": "f", "adapter": "folder", "root": tmp_path})
    assert dict(zip(raw.clips["clip_id"], raw.clips["label"], strict=True)) == {
        "a": "happy",
        "b": "happy",
        "c": "sad",
    }
    assert raw.classes == ["happy", "sad"]
    reasons = {q["clip_id"]: q["reason"] for q in raw.quarantine}
    assert set(reasons) == {"cover.jpg", "loose"}
    assert "not an audio file" in reasons["cover.jpg"] and "no class folder" in reasons["loose"]


def test_folder_extensions_and_annotation_without_audio(tmp_path):
    wav(tmp_path / "audio" / "calm" / "a.wav")
    wav(tmp_path / "audio" / "calm" / "b.flac")
    wav(tmp_path / "audio" / "tense" / "c.wav")
    write_csv(tmp_path / "annotations.csv", [["Song", "Quadrant"], ["a", "calm"], ["z", "tense"]])
    spec = {"name": "f", "adapter": "folder", "root": tmp_path, "audio_dir": "audio"}
    raw = folder.read({**spec, "extensions": ["WAV"]})
    assert sorted(raw.clips["clip_id"]) == ["a", "c"]
    reasons = {q["clip_id"]: q["reason"] for q in raw.quarantine}
    assert "add its extension to 'extensions'" in reasons["b.flac"]
    assert "labels it tense but no audio file" in reasons["z"]


def test_folder_with_one_class_explains_audio_dir(tmp_path):
    wav(tmp_path / "audio" / "Q1" / "a.wav")
    wav(tmp_path / "audio" / "Q2" / "b.wav")
    with pytest.raises(DatasetError, match="set 'audio_dir'"):
        folder.read({"name": "f", "adapter": "folder", "root": tmp_path})


# --- manifest -------------------------------------------------------------------------------------


def test_manifest_reads_emotify_labels(shared_data):
    root = shared_data / "emotify-sample"
    spec = {"name": "emotify", "adapter": "manifest", "root": root, "csv": "labels_3class.csv"}
    spec |= {"path_column": "path", "label_column": "label", "id_column": "track_id"}
    raw = manifest.read(spec)
    rows = {r["track_id"]: r for r in csv_rows(root / "labels_3class.csv")}
    clips = raw.clips.set_index("clip_id")
    assert set(clips.index) == set(rows) and len(clips) == 30
    assert raw.classes == ["devotional_proxy", "romantic_proxy", "sad"]
    for track_id, row in rows.items():
        assert clips.loc[track_id, "label"] == row["label"]
        assert clips.loc[track_id, "path"] == str(root / row["path"])
        assert Path(clips.loc[track_id, "path"]).is_file()
    assert raw.targets is None and raw.quarantine == []


def test_manifest_ids_groups_targets_and_outside_paths(tmp_path):
    root = tmp_path / "data"
    wav(root / "audio" / "x.wav")
    wav(root / "audio" / "y.wav")
    wav(tmp_path / "shared" / "z.wav")
    write_csv(
        root / "list.csv",
        [
            ["file", "song", "mood"],
            ["audio/x.wav", "s1", "up"],
            [str(root / "audio" / "y.wav"), "s1", "down"],  # absolute, inside the root
            ["../shared/z.wav", "", "up"],
        ],
    )
    write_csv(
        root / "va.csv", [["clip_id", "t", "arousal", "valence"], ["audio/x", "0.5", "0.2", "-0.1"]]
    )
    spec = {
        "name": "m",
        "adapter": "manifest",
        "root": root,
        "csv": "list.csv",
        "path_column": "file",
    }
    spec |= {"label_column": "mood", "group_column": "song", "targets_csv": "va.csv"}
    raw = manifest.read(spec)
    ids = raw.clips["clip_id"].tolist()
    assert ids[0] == "audio/x" and raw.clips["group"].tolist()[:2] == ["s1", "s1"]
    assert [q["clip_id"] for q in raw.quarantine] == ["../shared/z"]
    assert raw.targets.to_dict("records") == [
        {"clip_id": "audio/x", "t": 0.5, "arousal": 0.2, "valence": -0.1}
    ]
    allowed = manifest.read({**spec, "allow_outside_root": True})
    assert allowed.quarantine == [] and allowed.clips["group"].iloc[2] == "../shared/z"


def test_manifest_missing_column_names_the_columns_present(tmp_path):
    write_csv(tmp_path / "manifest.csv", [["file", "label"], ["a.wav", "x"]])
    with pytest.raises(
        DatasetError, match=r"no column 'path'; its columns are \['file', 'label'\]"
    ):
        manifest.read({"name": "m", "adapter": "manifest", "root": tmp_path})


# --- pmemo ----------------------------------------------------------------------------------------


def test_pmemo_json_layout_rescales_to_minus_one_one(shared_data):
    root = shared_data / "pmemo-sample"
    raw = pmemo.read({"name": "pmemo", "adapter": "pmemo", "root": root})
    assert raw.clips["clip_id"].tolist() == ["108", "372", "634", "683"]
    for song_id in raw.clips["clip_id"]:
        song = json.loads((root / f"{song_id}.json").read_text(encoding="utf-8"))
        mine = raw.targets[raw.targets["clip_id"] == song_id].sort_values("t")
        assert mine["t"].tolist() == song["dynamic"]["t"] and mine["t"].iloc[0] == 15.5
        np.testing.assert_allclose(mine["arousal"], 2 * np.array(song["dynamic"]["a"]) - 1)
        np.testing.assert_allclose(mine["valence"], 2 * np.array(song["dynamic"]["v"]) - 1)
        group = raw.clips.set_index("clip_id").loc[song_id, "group"]
        assert group == song["artist"]


def test_pmemo_official_csv_layout(tmp_path):
    write_csv(
        tmp_path / "annotations" / "dynamic_annotations.csv",
        [
            ["musicId", "frameTime", "Arousal(mean)", "Valence(mean)"],
            ["1", "15.5", "0.75", "0.25"],
            ["1", "16.0", "1.0", "0.5"],
            ["4", "15.5", "0.0", "0.5"],
        ],
    )
    write_csv(tmp_path / "metadata.csv", [["musicId", "title", "artist"], ["1", "Song", "Someone"]])
    wav(tmp_path / "chorus" / "1.wav")
    wav(tmp_path / "chorus" / "4.wav")
    raw = pmemo.read({"name": "p", "adapter": "pmemo", "root": tmp_path})
    assert raw.clips["group"].tolist() == ["Someone", "4"]
    assert raw.targets.to_dict("records") == [
        {"clip_id": "1", "t": 15.5, "arousal": 0.5, "valence": -0.5},
        {"clip_id": "1", "t": 16.0, "arousal": 1.0, "valence": 0.0},
        {"clip_id": "4", "t": 15.5, "arousal": -1.0, "valence": 0.0},
    ]


def test_pmemo_unreadable_json_is_quarantined(tmp_path):
    (tmp_path / "7.json").write_text("{not json")
    (tmp_path / "8.json").write_text(json.dumps({"dynamic": {"t": [15.5], "v": [0.5], "a": [0.5]}}))
    (tmp_path / "index.json").write_text("[]")  # a summary, not a song
    raw = pmemo.read({"name": "p", "adapter": "pmemo", "root": tmp_path})
    assert raw.clips["clip_id"].tolist() == ["8"]
    assert [q["clip_id"] for q in raw.quarantine] == ["7"]
    assert "7.json" in raw.quarantine[0]["reason"]
