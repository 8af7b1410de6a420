"""The benchmark's splits (bench/recipes.py): the 4Q samples clip by clip, a whole 4Q by artist,
and a clear stop when the whole 4Q is missing or its cache holds another copy."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from workflow_utils import bench_module

from merflow.io import read_metadata, write_table

bench = bench_module("recipes")


def _clips(tmp_path, n_artists=24, clips_per_artist=3):
    """Artists with several clips each, every artist singing in one quadrant."""
    rows = [
        {"clip_id": f"a{a}-c{c}", "group": f"artist{a}", "label": f"Q{a % 4 + 1}"}
        for a in range(n_artists)
        for c in range(clips_per_artist)
    ]
    clips = pd.DataFrame(rows)
    write_table(clips, tmp_path / "clips.parquet")
    return clips


def _sides(paths):
    return [pd.read_parquet(path) for path in paths]


def test_grouped_splits_keep_each_artist_on_one_side_and_test_every_clip_once(tmp_path):
    clips = _clips(tmp_path)
    info = {"dir": str(tmp_path), "split_by": "group"}
    splits = _sides(bench.write_splits(info, 3, 2, tmp_path / "splits"))
    assert len(splits) == 6
    for split in splits:
        assert split.groupby("group")["split"].nunique().max() == 1
        assert set(split["split"]) == {"train", "val", "test"}
        test_labels = split.merge(clips, on=["clip_id", "group"]).query("split == 'test'")["label"]
        assert test_labels.value_counts().to_dict() == {f"Q{q}": 6 for q in range(1, 5)}
    for repeat in (splits[:3], splits[3:]):
        tested = pd.concat([s.loc[s["split"] == "test", "clip_id"] for s in repeat])
        assert sorted(tested) == sorted(clips["clip_id"])
    assert not splits[0].equals(splits[3]), "a repeat draws new folds"


def test_a_learning_curve_point_drops_training_clips_only(tmp_path):
    _clips(tmp_path)
    info = {"dir": str(tmp_path), "split_by": "group"}
    full = _sides(bench.write_splits(info, 3, 1, tmp_path / "splits"))
    half = _sides(bench.write_splits(info, 3, 1, tmp_path / "splits", train_fraction=0.5))
    for whole, share in zip(full, half, strict=True):
        for side in ("val", "test"):
            assert set(share.query(f"split == '{side}'")["clip_id"]) == set(
                whole.query(f"split == '{side}'")["clip_id"]
            )
        kept = share.query("split == 'train'")["clip_id"]
        assert set(kept) < set(whole.query("split == 'train'")["clip_id"])
        assert len(kept) == pytest.approx((whole["split"] == "train").sum() / 2, abs=1)


def test_clip_by_clip_splits_ignore_the_groups(tmp_path):
    _clips(tmp_path)
    info = {"dir": str(tmp_path)}
    split = _sides(bench.write_splits(info, 3, 1, tmp_path / "splits"))[0]
    assert (split["group"] == split["clip_id"]).all()
    artist = split["clip_id"].str.split("-").str[0]
    assert (split.groupby(artist)["split"].nunique() > 1).any(), "artists straddle the sides"


def test_the_whole_4q_without_its_folder_stops_with_the_option_to_set(tmp_path):
    with pytest.raises(SystemExit, match="--fourq-root"):
        bench.prepare("4q-full", tmp_path, tmp_path / "cache", None)
    with pytest.raises(SystemExit, match="--fourq-root"):
        bench.prepare("4q-full", tmp_path, tmp_path / "cache", tmp_path / "absent")


def test_a_cache_of_another_4q_copy_is_not_reused(tmp_path):
    cached = tmp_path / "cache" / "4q-full"
    cached.mkdir(parents=True)
    (cached / "ready.json").write_text(json.dumps({"name": "4q-full", "source": "/elsewhere"}))
    mine = tmp_path / "MER_audio_taffc_dataset"
    mine.mkdir()
    with pytest.raises(SystemExit, match="/elsewhere.*another --cache"):
        bench.prepare("4q-full", tmp_path, tmp_path / "cache", mine)


def test_the_whole_4q_is_indexed_with_its_artists_and_whole_clips(shared_data, tmp_path):
    """4q-sample stands in for a whole 4Q: same layout, a metadata.csv with artists."""
    root = shared_data / "4q-sample"
    info = bench.prepare("4q-full", shared_data, tmp_path, root)
    assert info["split_by"] == "group" and info["source"] == str(root.resolve())
    clips = pd.read_parquet(tmp_path / "4q-full" / "clips.parquet").set_index("clip_id")
    assert len(clips) == 48 and clips["label"].value_counts().to_dict() == {
        f"Q{q}": 12 for q in range(1, 5)
    }
    assert clips.loc["MT0000218346", "group"] == "Steven Curtis Chapman"
    assert read_metadata(tmp_path / "4q-full" / "logmel.parquet")["shape"] == [128, 1292]
    assert bench.prepare("4q-full", shared_data, tmp_path, root) == info
