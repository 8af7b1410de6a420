"""The index stage: the contract's tables, probing, shards, determinism, configuration errors."""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from merflow.datasets.index import build_index, shard_of, write_shard_lists
from merflow.errors import ConfigError, DatasetError
from merflow.io import read_metadata, read_table

CLIP_TYPES = {
    "clip_id": "string",
    "path": "string",
    "duration_s": "double",
    "sample_rate": "int32",
    "channels": "int16",
    "group": "string",
    "label": "string",
    "fixed_split": "string",
    "shard": "int16",
}


def wav(path: Path, seconds: float = 2.0, rate: int = 8000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = 0.1 * np.sin(np.arange(int(seconds * rate)) * 0.3)
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), rate)
    return path


def small_dataset(root: Path) -> dict:
    """A folder dataset with mixed rates and channels, plus one unreadable file to quarantine."""
    for k, stem in enumerate(["b", "a", "d", "c", "e"]):
        wav(root / ("up" if k % 2 else "down") / f"{stem}.wav", 1.0 + k, 8000 * (k + 1), 1 + k % 2)
    (root / "up" / "broken.wav").write_text("not audio")
    return {"name": "small", "adapter": "folder", "root": root}


def schema_types(path: Path) -> dict[str, str]:
    schema = pq.read_schema(path)
    return {name: str(schema.field(name).type) for name in schema.names}


# --- real samples --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed_4q(shared_data, tmp_path_factory):
    root = shared_data / "4q-sample"
    out = tmp_path_factory.mktemp("4q")
    spec = {"name": "4q", "adapter": "folder", "root": root, "audio_dir": "audio"}
    return root, out, build_index(spec, out, n_shards=4)


def test_clips_table_follows_the_contract(indexed_4q):
    _, out, result = indexed_4q
    assert schema_types(out / "clips.parquet") == CLIP_TYPES
    clips = read_table(out / "clips.parquet")
    assert len(clips) == result.n_clips == 48 and result.n_quarantined == 0
    assert clips["clip_id"].tolist() == sorted(clips["clip_id"])
    assert read_metadata(out / "clips.parquet") == {
        "dataset": "4q",
        "adapter": "folder",
        "classes": ["Q1", "Q2", "Q3", "Q4"],
        "n_shards": 4,
    }
    expected_shards = [zlib.crc32(i.encode()) % 4 for i in clips["clip_id"]]
    assert clips["shard"].tolist() == expected_shards


def test_mixed_rates_and_channels_are_reported_as_in_the_headers(indexed_4q):
    _, out, _ = indexed_4q
    clips = read_table(out / "clips.parquet")
    for row in clips.itertuples():
        info = sf.info(row.path)
        assert (row.sample_rate, row.channels) == (info.samplerate, info.channels)
        assert row.duration_s == pytest.approx(info.frames / info.samplerate)
    assert clips["sample_rate"].nunique() > 1  # 4Q mixes 22.05, 32 and 44.1 kHz


def test_probing_reports_each_files_own_rate_channels_and_duration(tmp_path):
    build_index(small_dataset(tmp_path / "data"), tmp_path / "out")
    clips = read_table(tmp_path / "out" / "clips.parquet").set_index("clip_id")
    written = {"b": (1.0, 8000, 1), "a": (2.0, 16000, 2), "d": (3.0, 24000, 1)}
    written |= {"c": (4.0, 32000, 2), "e": (5.0, 40000, 1)}
    for clip_id, (seconds, rate, channels) in written.items():
        assert clips.loc[clip_id, "duration_s"] == pytest.approx(seconds)
        assert (clips.loc[clip_id, "sample_rate"], clips.loc[clip_id, "channels"]) == (
            rate,
            channels,
        )


def test_a_dataset_without_targets_gets_an_empty_targets_table(indexed_4q):
    _, out, result = indexed_4q
    targets = read_table(out / "targets.parquet")
    assert result.has_targets is False and targets.empty
    assert list(targets.columns) == ["clip_id", "t", "arousal", "valence"]
    assert read_metadata(out / "targets.parquet")["has_targets"] is False
    assert read_table(out / "quarantine.parquet").empty


def test_emomusic_targets_keep_csv_values_and_missing_audio_is_quarantined(shared_data, tmp_path):
    root = shared_data / "emomusic-sample"
    spec = {"name": "emo", "adapter": "deam", "root": root, "split_year": 2013}
    result = build_index(spec, tmp_path)
    clips = read_table(tmp_path / "clips.parquet")
    targets = read_table(tmp_path / "targets.parquet")
    quarantine = read_table(tmp_path / "quarantine.parquet")
    assert result.has_targets and result.n_clips == 10 and len(quarantine) == 744 - 10
    assert quarantine["reason"].str.contains("no audio file").all()
    assert set(targets["clip_id"]) == set(clips["clip_id"]) and len(targets) == 10 * 61
    assert schema_types(tmp_path / "targets.parquet") == {
        "clip_id": "string",
        "t": "double",
        "arousal": "float",
        "valence": "float",
    }
    with (root / "annotations" / "arousal_cont_average.csv").open(newline="") as fh:
        song2 = next(r for r in csv.DictReader(fh) if r["song_id"] == "2")
    first = targets[targets["clip_id"] == "2"].iloc[0]
    assert first["t"] == 15.0
    assert first["arousal"] == pytest.approx(float(song2["sample_15000ms"]), abs=1e-7)
    assert (np.round(targets["t"] / 0.5) * 0.5 == targets["t"]).all()


def test_indexing_decodes_at_most_a_second_of_each_file(shared_data, tmp_path, monkeypatch):
    """Probing reads headers and the last second, never whole files: indexing thousands of files
    must take seconds (bench/index.py measures it; a timed test would fail on a busy machine)."""
    decoded: dict[str, int] = {}
    read = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        samples = read(self, frames, *args, **kwargs)
        decoded[self.name] = decoded.get(self.name, 0) + len(samples)
        return samples

    def whole_decode(*args, **kwargs):
        raise AssertionError("the index decoded a whole file")

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    monkeypatch.setattr(sf, "read", whole_decode)
    monkeypatch.setattr("merflow.audio.load", whole_decode)
    spec = {"name": "4qdev", "adapter": "folder", "root": shared_data / "4q-dev"}
    result = build_index({**spec, "audio_dir": "audio"}, tmp_path)
    assert result.n_clips == 252
    clips = read_table(tmp_path / "clips.parquet")
    assert set(decoded) <= set(clips["path"])
    limits = clips.set_index("path")["sample_rate"]  # one second of each file at most
    over = {path: n for path, n in decoded.items() if n > limits[path]}
    assert not over, f"decoded more than a second of {len(over)} files: {list(over.items())[:3]}"


# --- fixtures ------------------------------------------------------------------------------------


def test_rerun_writes_byte_identical_tables(tmp_path):
    spec = small_dataset(tmp_path / "data")
    build_index(spec, tmp_path / "one", n_shards=3)
    build_index(spec, tmp_path / "two", n_shards=3)
    build_index(spec, tmp_path / "one", n_shards=3)  # over its own output
    for name in ("clips.parquet", "targets.parquet", "quarantine.parquet"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    quarantine = read_table(tmp_path / "one" / "quarantine.parquet")
    assert quarantine["clip_id"].tolist() == ["broken"]


def test_shard_lists_partition_the_clips(tmp_path):
    spec = small_dataset(tmp_path / "data")
    build_index(spec, tmp_path, n_shards=3)
    paths = write_shard_lists(tmp_path, 3)
    clips = read_table(tmp_path / "clips.parquet")
    parts = [read_table(p) for p in paths]
    assert [p.name for p in paths] == ["shard-0.parquet", "shard-1.parquet", "shard-2.parquet"]
    assert sorted(i for part in parts for i in part["clip_id"]) == sorted(clips["clip_id"])
    for shard, part in enumerate(parts):
        assert (part["shard"] == shard).all()
        assert schema_types(paths[shard]) == CLIP_TYPES
    assert shard_of("a", 4) == zlib.crc32(b"a") % 4
    with pytest.raises(ConfigError, match="indexed with 3 shards"):
        write_shard_lists(tmp_path, 2)


def test_a_clip_shorter_than_one_window_is_legitimate(tmp_path):
    wav(tmp_path / "x" / "short.wav", seconds=0.2)
    wav(tmp_path / "y" / "long.wav")
    result = build_index({"name": "s", "adapter": "folder", "root": tmp_path}, tmp_path / "out")
    assert result.n_clips == 2 and result.n_quarantined == 0


def test_configuration_errors_say_what_is_allowed(tmp_path):
    with pytest.raises(ConfigError, match="deam, folder, manifest, pmemo, synth"):
        build_index({"name": "x", "adapter": "zip", "root": tmp_path}, tmp_path / "out")
    with pytest.raises(DatasetError, match="Download DEAM"):
        build_index({"name": "x", "adapter": "deam", "root": tmp_path / "nowhere"}, tmp_path)
    spec = small_dataset(tmp_path / "data")
    with pytest.raises(ConfigError, match="on_bad_audio"):
        build_index(spec, tmp_path / "out", on_bad_audio="ignore")
    with pytest.raises(ConfigError, match="shards"):
        build_index(spec, tmp_path / "out", n_shards=0)


def test_a_dataset_with_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "up").mkdir()
    (tmp_path / "down").mkdir()
    (tmp_path / "up" / "a.wav").write_text("text")
    (tmp_path / "down" / "b.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match="no usable clip"):
        build_index({"name": "x", "adapter": "folder", "root": tmp_path}, tmp_path / "out")


def test_root_given_as_a_string_works_like_the_cli_passes_it(tmp_path):
    spec = small_dataset(tmp_path / "data")
    result = build_index({**spec, "root": str(spec["root"])}, tmp_path / "out")
    assert result.n_clips == 5


def test_a_dangling_symlink_in_a_class_folder_is_quarantined_not_dropped(tmp_path):
    spec = small_dataset(tmp_path / "data")
    (tmp_path / "data" / "up" / "gone.wav").symlink_to(tmp_path / "moved-away.wav")
    build_index(spec, tmp_path / "out")
    quarantine = read_table(tmp_path / "out" / "quarantine.parquet")
    assert "gone" in set(quarantine["clip_id"])
    assert "gone" not in set(read_table(tmp_path / "out" / "clips.parquet")["clip_id"])
