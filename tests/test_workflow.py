"""The workflow end to end on a tiny synthetic dataset (re-runs: test_incremental.py)."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from workflow_utils import REPO, SNAKEMAKE, TINY, snakemake

from merflow.io import read_json, read_table

pytestmark = pytest.mark.slow


def test_the_workflow_writes_every_stage(tiny_run):
    results = tiny_run / "results"
    clips = read_table(results / "tiny/clips.parquet")
    assert len(clips) == 12
    windows = read_table(results / "tiny/features/logmel_500ms.parquet")
    assert windows.groupby("clip_id").size().eq(16).all()  # 8 s = 16 windows of 500 ms
    run = results / "tiny/malik/runs/logmel_500ms/malik_crnn_nb/len8/holdout-s0/seed0"
    metrics = read_json(run / "metrics.json")
    assert metrics["task"] == "regression" and metrics["arousal"]["rmse"]["song_mean"] > 0
    assert read_json(run / "run.json")["device"] == "cpu"
    velankar = results / "tiny/velankar/runs/logmel/velankar_crnn/lenfull/holdout-s0/seed0"
    assert 0 <= read_json(velankar / "metrics.json")["accuracy"] <= 1
    index = (results / "report/index.md").read_text()
    assert "malik" in index and "velankar" in index
    assert any((results / "tiny/malik/report").glob("*.tex"))


def test_a_wrong_config_stops_with_one_clear_message(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["experiments"]["malik"]["models"] = ["transformer"]
    out = snakemake(tmp_path, bad, "-n")
    assert out.returncode != 0
    expected = "'experiments.malik.models.0' is 'transformer'; allowed values"
    assert expected in out.stderr + out.stdout


def test_the_workflow_on_real_4q_audio(tmp_path, shared_data):
    config = {
        "datasets": {
            "q4": {
                "adapter": "folder",
                "root": str(shared_data / "4q-sample"),
                "audio_dir": "audio",
            }
        },
        "features": {"shards": 2, "logmel": {"n_frames": 160}},
        "experiments": {
            "velankar": {
                "dataset": "q4",
                "features": ["logmel"],
                "models": ["velankar_crnn", "majority"],
                "seeds": [0],
                "split": {"method": "holdout", "test_fraction": 0.25, "val_fraction": 0.2},
                "train": {"epochs": 1, "patience": 1, "batch_size": 8, "input_frames": 160},
            }
        },
    }
    out = snakemake(tmp_path, config)
    assert out.returncode == 0, out.stderr[-4000:]
    clips = read_table(tmp_path / "results/q4/clips.parquet")
    assert len(clips) == 48 and sorted(clips["label"].unique()) == ["Q1", "Q2", "Q3", "Q4"]
    assert clips["sample_rate"].nunique() > 1  # mixed native rates, one configured rate below
    frames = read_table(tmp_path / "results/q4/features/logmel.parquet")
    assert len(frames) == 48 and frames["logmel"].map(len).eq(128 * 160).all()
    run = tmp_path / "results/q4/velankar/runs/logmel/velankar_crnn/lenfull/holdout-s0/seed0"
    assert read_json(run / "metrics.json")["classes"] == ["Q1", "Q2", "Q3", "Q4"]


def test_a_preset_replaces_the_demo_config_rather_than_joining_it(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())  # the demo
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump(TINY))
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n"]
    out = subprocess.run(
        [*cmd, "--configfile", str(preset), "--cores", "1"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "dataset=tiny" in out.stdout and "dataset=synth" not in out.stdout
