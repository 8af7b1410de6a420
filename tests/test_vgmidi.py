"""The VGMIDI adapter: bars of valence/arousal become targets on merflow's 500 ms grid, every
piece is indexed, and what cannot be used is quarantined with its reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from merflow.config import validate
from merflow.datasets import vgmidi
from merflow.datasets.index import build_index


@pytest.fixture(scope="module")
def sample(shared_data):
    return shared_data / "vgmidi-sample"


def _spec(root):
    return {"name": "vgmidi", "adapter": "vgmidi", "root": root}


def test_targets_lie_on_the_500ms_grid_in_range_for_every_piece(sample):
    raw = vgmidi.read(_spec(sample))
    pieces = pd.read_csv(sample / "pieces.csv")
    bars = pd.read_csv(sample / "dynamic_per_measure.csv")
    assert sorted(raw.clips["clip_id"]) == sorted(pieces["piece_id"])
    assert (raw.clips["group"] == raw.clips["clip_id"]).all() and raw.classes is None
    assert raw.quarantine == []
    targets = raw.targets
    steps = targets["t"] / 0.5
    assert np.allclose(steps, np.round(steps)) and (targets["t"] > 0).all()
    assert targets[["arousal", "valence"]].abs().max().max() <= 1.0
    assert not targets.duplicated(["clip_id", "t"]).any()
    ends = bars.groupby("piece_id")["t_end_s"].max()
    for piece, frame in targets.groupby("clip_id"):
        # every whole window up to the last bar's end, none past it
        assert list(frame["t"]) == [0.5 * (k + 1) for k in range(int(ends[piece] / 0.5))]


def test_each_window_takes_the_bar_holding_its_centre(sample):
    bars = pd.read_csv(sample / "dynamic_per_measure.csv")
    piece = bars[bars["piece_id"] == "raw1_piece3"]  # bars of 1.222 s: off the 500 ms grid
    targets = vgmidi.bar_windows("raw1_piece3", piece).set_index("t")
    for t in (0.5, 1.5, 2.5, 7.0, 30.0):
        centre = t - 0.25
        bar = piece[(piece["t_start_s"] <= centre) & (centre < piece["t_end_s"])].iloc[0]
        assert targets.loc[t, "arousal"] == bar["arousal_mean"]
        assert targets.loc[t, "valence"] == bar["valence_mean"]


def test_a_window_in_a_gap_between_bars_has_no_target():
    bars = pd.DataFrame(
        {
            "t_start_s": [0.0, 1.2, 2.4],
            "t_end_s": [1.2, 2.0, 3.1],  # no bar from 2.0 to 2.4 s
            "arousal_mean": [0.1, 0.2, 0.3],
            "valence_mean": [-0.1, -0.2, -0.3],
        }
    )
    targets = vgmidi.bar_windows("p", bars)
    assert list(targets["t"]) == [0.5, 1.0, 1.5, 2.0, 3.0]  # 2.5 (centre 2.25) is in the gap
    assert list(targets["arousal"]) == [0.1, 0.1, 0.2, 0.2, 0.3]


def test_the_sample_indexes_in_place_with_nothing_quarantined(sample, tmp_path):
    result = build_index(_spec(sample), tmp_path)
    assert result.n_clips == 24 and result.n_quarantined == 0 and result.has_targets
    targets = pd.read_parquet(tmp_path / "targets.parquet")
    assert targets["clip_id"].nunique() == 24


def _copy_without(sample, folder, missing_audio):
    """The sample as a folder of links, without one piece's audio file."""
    (folder / "audio").mkdir(parents=True)
    for name in ("pieces.csv", "dynamic_per_measure.csv"):
        (folder / name).write_bytes((sample / name).read_bytes())
    for audio in (sample / "audio").iterdir():
        if audio.stem != missing_audio:
            (folder / "audio" / audio.name).symlink_to(audio)
    return folder


def test_a_piece_without_its_audio_file_is_quarantined(sample, tmp_path):
    root = _copy_without(sample, tmp_path / "vgmidi", "raw1_piece23")
    result = build_index(_spec(root), tmp_path / "index")
    assert result.n_clips == 23 and result.n_quarantined == 1
    quarantine = pd.read_parquet(tmp_path / "index" / "quarantine.parquet")
    assert list(quarantine["clip_id"]) == ["raw1_piece23"]
    assert "raw1_piece23.ogg" in quarantine["path"].iloc[0]
    assert "raw1_piece23" not in set(
        pd.read_parquet(tmp_path / "index" / "targets.parquet")["clip_id"]
    )


def test_bars_without_times_quarantine_their_piece_with_the_line(sample, tmp_path):
    root = _copy_without(sample, tmp_path / "vgmidi", missing_audio="")
    bars = pd.read_csv(root / "dynamic_per_measure.csv", dtype={"t_end_s": object})
    row = bars.index[bars["piece_id"] == "raw1_piece4"][3]
    bars.loc[row, "t_end_s"] = "n/a"
    bars.to_csv(root / "dynamic_per_measure.csv", index=False)
    raw = vgmidi.read(_spec(root))
    assert "raw1_piece4" not in set(raw.clips["clip_id"])
    assert "raw1_piece4" not in set(raw.targets["clip_id"])
    (entry,) = raw.quarantine
    assert entry["clip_id"] == "raw1_piece4"
    assert f"line {row + 2}" in entry["reason"] and "dynamic_per_measure.csv" in entry["reason"]


def test_a_bar_without_its_piece_is_quarantined_with_the_line(sample, tmp_path):
    root = _copy_without(sample, tmp_path / "vgmidi", missing_audio="")
    bars = pd.read_csv(root / "dynamic_per_measure.csv")
    bars.loc[5, "piece_id"] = None
    bars.to_csv(root / "dynamic_per_measure.csv", index=False)
    (entry,) = vgmidi.read(_spec(root)).quarantine
    assert entry["clip_id"] == "dynamic_per_measure.csv line 7"
    assert "has no piece_id" in entry["reason"]


def test_a_config_may_name_the_adapter(sample):
    config = {
        "datasets": {"vgmidi": {"adapter": "vgmidi", "root": str(sample)}},
        "experiments": {
            "malik": {
                "dataset": "vgmidi",
                "features": ["logmel_500ms"],
                "models": ["ridge"],
                "seeds": [0],
            }
        },
    }
    assert validate(config)["datasets"]["vgmidi"]["adapter"] == "vgmidi"
