"""The workflow end to end on a tiny synthetic dataset, and what a re-run does (Snakemake)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from merflow.io import read_json, read_table

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

pytestmark = pytest.mark.slow

TINY = {
    "datasets": {
        "tiny": {"adapter": "synth", "n_clips": 12, "duration_s": 8.0, "n_classes": 3, "seed": 1}
    },
    "features": {"shards": 2, "logmel": {"n_frames": 160}},
    "experiments": {
        "malik": {
            "dataset": "tiny",
            "features": ["logmel_500ms"],
            "models": ["malik_crnn_nb", "ridge"],
            "seq_len": [8],
            "seeds": [0],
            "split": {"method": "holdout", "test_fraction": 0.25, "val_fraction": 0.2},
            "train": {"epochs": 2, "patience": 2, "batch_size": 8},
        },
        "velankar": {
            "dataset": "tiny",
            "features": ["logmel"],
            "models": ["velankar_crnn", "majority"],
            "seeds": [0],
            "split": {"method": "holdout", "test_fraction": 0.34, "val_fraction": 0.2},
            "train": {"epochs": 2, "patience": 2, "batch_size": 4},
        },
    },
}


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    cmd += ["--configfile", str(configfile), "--cores", "2", "--resources", "gpu=1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def jobs_to_run(workdir: Path, config: dict) -> dict[str, int]:
    """Rule name -> job count of a dry run (empty when there is nothing to do)."""
    out = snakemake(workdir, config, "-n", "--quiet", "rules")
    assert out.returncode == 0, out.stderr
    counts = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    out = snakemake(workdir, TINY)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


def test_the_workflow_writes_every_stage(finished_run):
    results = finished_run / "results"
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


def test_a_second_run_does_nothing(finished_run):
    assert jobs_to_run(finished_run, TINY) == {}


def test_a_model_option_reruns_only_that_model(finished_run):
    changed = yaml.safe_load(yaml.safe_dump(TINY))
    changed["model_options"] = {"malik_crnn_nb": {"maxout_pieces": 2}}
    todo = jobs_to_run(finished_run, changed)
    assert todo.get("train") == 1 and todo.get("evaluate") == 1
    assert not {"extract_features", "merge_features", "make_split", "index"} & set(todo)


def test_a_feature_parameter_reruns_only_that_feature(finished_run):
    changed = yaml.safe_load(yaml.safe_dump(TINY))
    changed["features"]["logmel"]["n_mels"] = 96
    todo = jobs_to_run(finished_run, changed)
    assert todo.get("extract_features") == 2 and todo.get("merge_features") == 1
    assert todo.get("train") == 1  # velankar_crnn; majority is a baseline fit
    assert "index" not in todo and "make_split" not in todo


def test_adding_a_seed_adds_only_that_seeds_jobs(finished_run):
    changed = yaml.safe_load(yaml.safe_dump(TINY))
    changed["experiments"]["velankar"]["seeds"] = [0, 1]
    todo = jobs_to_run(finished_run, changed)
    assert todo.get("train") == 1 and todo.get("evaluate") == 1
    assert "fit_baseline" not in todo and "extract_features" not in todo


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
                "train": {"epochs": 1, "patience": 1, "batch_size": 8},
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
