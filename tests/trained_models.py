"""Tiny models trained through merflow's API, for the tests of predict, export and run files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from merflow import features
from merflow.datasets import synth
from merflow.datasets.index import build_index
from merflow.io import read_table, write_table
from merflow.learn.recipes import TrainConfig
from merflow.learn.training import train

LOGMEL = {"n_mels": 32, "n_frames": 192}  # 192 frames = 4.46 s: a 4 s synth clip is one segment
CLASSES = ["energetic", "sad", "calm"]
RUNS = ("malik", "velankar", "ridge")


def train_tiny(root: Path) -> Path:
    """10 synthetic 4 s clips -> features -> one split -> malik_crnn, velankar_crnn, ridge, in
    ``root/runs/<name>`` (names: :data:`RUNS`)."""
    synth.generate(root / "source", n_clips=10, duration_s=4.0, n_classes=3, seed=1)
    build_index({"name": "tiny", "adapter": "synth", "root": str(root / "source")}, root / "data")
    clips = read_table(root / "data/clips.parquet")
    for name, overrides in (("logmel_500ms", {}), ("logmel", LOGMEL)):
        params = features.resolve_params(name, overrides)
        table, _ = features.extract_shard(clips, name, params)
        features.write_feature_table(table, root / f"data/{name}.parquet", name, params)
    ids = sorted(clips["clip_id"])
    parts = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    split = pd.DataFrame({"clip_id": ids, "group": ids, "split": parts})
    write_table(split, root / "data/split.parquet")
    common = {
        "clips_path": str(root / "data/clips.parquet"),
        "split_path": str(root / "data/split.parquet"),
        "targets_path": str(root / "data/targets.parquet"),
        "use_gpu": False,
        "threads": 1,
        "epochs": 2,
        "batch_size": 4,
    }
    windows, frames = str(root / "data/logmel_500ms.parquet"), str(root / "data/logmel.parquet")
    # The networks predict as the merflow recipe does (smoothing; the mean over 128-frame
    # crops; a checkpoint ensemble of both epochs), which an export must carry over.
    crops = {"input_frames": 128, "eval_crop_hop": 32, "checkpoint_ensemble": 2}
    for run, model, feature, settings in (
        ("malik", "malik_crnn", windows, {"seq_len": 3, "smooth_windows": 3}),
        ("velankar", "velankar_crnn", frames, crops),
        ("ridge", "ridge", windows, {}),
    ):
        config = TrainConfig(model=model, features_path=feature, **settings, **common)
        train(root / "runs" / run, config)
    return root
