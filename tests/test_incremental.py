"""Re-runs do exactly the work a change needs: Snakemake's plans (dry runs) after one change to
the tiny run's config, and real re-runs after clips are added to a folder dataset."""

from __future__ import annotations

import shutil
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from workflow_utils import TINY, executed_jobs, planned_jobs, snakemake, tiny_config

from merflow.io import read_json

pytestmark = pytest.mark.slow

REPORT_JOBS = {"aggregate": 1, "report_index": 1, "all": 1}
UPSTREAM = {"synthesize", "index", "extract_features", "merge_features", "make_split"}


def rules_of(jobs: list[tuple[str, dict[str, str]]]) -> Counter:
    return Counter(rule for rule, _ in jobs)


def values_of(jobs: list[tuple[str, dict[str, str]]], wildcard: str) -> set[str]:
    """The values ``wildcard`` takes over the jobs that have it."""
    return {w[wildcard] for _, w in jobs if wildcard in w}


def test_a_second_run_does_nothing(tiny_run):
    assert planned_jobs(tiny_run, TINY) == []


def test_a_model_option_reruns_that_models_jobs_and_the_report_only(tiny_run):
    config = tiny_config()
    config["model_options"] = {"malik_crnn_nb": {"maxout_pieces": 2}}
    jobs = planned_jobs(tiny_run, config)
    assert rules_of(jobs) == {"train": 1, "evaluate": 1, **REPORT_JOBS}
    assert values_of(jobs, "model") == {"malik_crnn_nb"}
    assert values_of(jobs, "experiment") == {"malik"}


def test_adding_a_seed_adds_only_that_seeds_jobs(tiny_run):
    config = tiny_config()
    config["experiments"]["velankar"]["seeds"] = [0, 1]
    jobs = planned_jobs(tiny_run, config)
    # the baseline (majority) is a deterministic fit: one run stands for every seed
    assert rules_of(jobs) == {"train": 1, "evaluate": 1, **REPORT_JOBS}
    assert values_of(jobs, "seed") == {"1"} and values_of(jobs, "model") == {"velankar_crnn"}


@pytest.mark.parametrize(
    ("experiment", "model", "fit"),
    [("malik", "mean", "fit_baseline"), ("velankar", "velankar_parallel", "train")],
)
def test_adding_a_model_adds_only_its_jobs(tiny_run, experiment, model, fit):
    config = tiny_config()
    config["experiments"][experiment]["models"].append(model)
    jobs = planned_jobs(tiny_run, config)
    assert rules_of(jobs) == {fit: 1, "evaluate": 1, **REPORT_JOBS}
    assert values_of(jobs, "model") == {model}
    assert values_of(jobs, "experiment") == {experiment}


def test_a_feature_parameter_reruns_that_feature_and_what_depends_on_it(tiny_run):
    config = tiny_config()
    config["features"]["logmel"]["n_mels"] = 96
    jobs = planned_jobs(tiny_run, config)
    assert rules_of(jobs) == {
        "extract_features": 2,  # both shards of logmel
        "merge_features": 1,
        "train": 1,  # velankar_crnn
        "fit_baseline": 1,  # majority
        "evaluate": 2,
        **REPORT_JOBS,
    }
    assert values_of(jobs, "feature") == {"logmel"}
    assert values_of(jobs, "experiment") == {"velankar"}


# --- adding clips to a real (folder) dataset ------------------------------------------------------

N_SHARDS = 4
FOLDER_CONFIG = {
    "features": {"shards": N_SHARDS, "logmel": {"n_frames": 32}},
    "experiments": {
        "velankar": {
            "dataset": "songs",
            "features": ["logmel"],
            "models": ["majority"],
            "seeds": [0],
            "split": {"method": "holdout", "test_fraction": 0.25, "val_fraction": 0.2},
        }
    },
}


def write_clip(path: Path, frequency: float, seconds: float = 2.0, rate: int = 22050) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * frequency * t), rate)


def shard_of(clip_id: str) -> int:
    """The documented assignment (merflow.datasets.index.shard_of), computed independently."""
    return zlib.crc32(clip_id.encode("utf-8")) % N_SHARDS


def test_adding_clips_reextracts_only_the_shards_they_fall_in(tmp_path):
    root = tmp_path / "songs"
    for i in range(8):
        write_clip(root / ("happy" if i % 2 else "sad") / f"clip{i}.wav", 220.0 * (1 + i))
    config = {"datasets": {"songs": {"adapter": "folder", "root": str(root)}}, **FOLDER_CONFIG}
    work = tmp_path / "work"
    work.mkdir()
    first = snakemake(work, config)
    assert first.returncode == 0, first.stderr[-4000:]
    features = work / "results/songs/features/logmel"
    before = {p.name: p.stat().st_mtime_ns for p in features.glob("shard-*.parquet")}
    assert len(before) == 2 * N_SHARDS  # a table and a quarantine table a shard

    new_ids = ["added_a", "added_b"]
    for clip_id in new_ids:
        write_clip(root / "happy" / f"{clip_id}.wav", 1000.0)
    changed = {shard_of(i) for i in new_ids}
    assert len(changed) < N_SHARDS  # else the test would prove nothing
    second = snakemake(work, config)
    assert second.returncode == 0, second.stderr[-4000:]

    jobs = executed_jobs(second.stderr)  # a real run logs its jobs on stderr
    extracted = {int(w["shard"]) for rule, w in jobs if rule == "extract_features"}
    assert extracted == changed
    assert rules_of(jobs)["index"] == 1 and rules_of(jobs)["merge_features"] == 1
    after = {p.name: p.stat().st_mtime_ns for p in features.glob("shard-*.parquet")}
    untouched = {n for n in before if int(n.split("-")[1].split(".")[0]) not in changed}
    assert all(after[n] == before[n] for n in untouched)
    assert planned_jobs(work, config) == []  # and then all is up to date again


# --- real re-runs of a network after its inputs changed -----------------------------------------

MALIK_NB = "results/tiny/malik/runs/logmel_500ms/malik_crnn_nb/len8/holdout-s0/seed0"
RUN_OUTPUTS = ("run.json", "history.csv", "best.pt", "last.pt", "metrics.json", "norm.npz")


@pytest.fixture
def rerun_copy(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run (Snakemake's records included) to change and re-run."""
    return Path(shutil.copytree(tiny_run, tmp_path / "work", symlinks=True))


def train_log(work: Path) -> str:
    return (work / MALIK_NB / "train.log").read_text()


def assert_run_complete(work: Path) -> None:
    for name in RUN_OUTPUTS:
        assert (work / MALIK_NB / name).is_file(), name
    epochs = TINY["experiments"]["malik"]["train"]["epochs"]
    assert len(pd.read_csv(work / MALIK_NB / "history.csv")) == epochs
    assert read_json(work / MALIK_NB / "run.json")["result"]["epochs_run"] == epochs


def test_changed_features_retrain_the_network_from_scratch(rerun_copy):
    config = tiny_config()
    config["features"]["logmel_500ms"] = {"n_mels": 48}
    out = snakemake(rerun_copy, config)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "train" in rules_of(executed_jobs(out.stderr))
    log = train_log(rerun_copy)
    assert "the feature table's rows changed; starting afresh" in log and "epoch 1/" in log
    assert "build.n_features 64 -> 48" in log  # the network's input width changed with them
    assert_run_complete(rerun_copy)
    assert read_json(rerun_copy / MALIK_NB / "run.json")["n_parameters"] > 0
    assert planned_jobs(rerun_copy, config) == []


def test_a_run_started_afresh_names_the_setting_that_changed(rerun_copy):
    config = tiny_config()
    config["experiments"]["malik"]["train"]["batch_size"] = 4
    out = snakemake(rerun_copy, config)
    assert out.returncode == 0, out.stderr[-4000:]
    log = train_log(rerun_copy)
    assert "last.pt was written before these changes: batch_size 8 -> 4; starting afresh" in log
    assert_run_complete(rerun_copy)


def test_a_run_started_afresh_says_the_split_changed(rerun_copy):
    config = tiny_config()
    config["experiments"]["malik"]["split"]["val_fraction"] = 0.4
    out = snakemake(rerun_copy, config)
    assert out.returncode == 0, out.stderr[-4000:]
    log = train_log(rerun_copy)
    assert "last.pt was written before these changes: the split changed; starting afresh" in log
    assert_run_complete(rerun_copy)


def test_a_deleted_report_is_remade_when_asked_for_by_path(rerun_copy):
    """Snakemake leaves a deleted intermediate missing while what was built from it is newer
    (snakemake#1978); README tells users to ask for it by path, which remakes it alone."""
    assert snakemake(rerun_copy, TINY).returncode == 0  # the copy's index params name its folder
    report = rerun_copy / "results/tiny/malik/report"
    shutil.rmtree(report)
    assert planned_jobs(rerun_copy, TINY) == []  # the behaviour README warns of
    out = snakemake(rerun_copy, TINY, "--cores", "2", "results/tiny/malik/report")  # README's
    assert out.returncode == 0, out.stderr[-4000:]
    assert rules_of(executed_jobs(out.stderr)) == Counter({"aggregate": 1})
    assert (report / "index.md").is_file()


def test_a_train_job_rerun_on_the_same_data_reuses_the_trained_network(rerun_copy):
    """What a newer feature table of the same rows causes on real data (Snakemake checksums
    inputs of up to 1 MB only, so the tiny run's cannot show it): the finished train job runs
    again. Forced here."""
    before = (rerun_copy / MALIK_NB / "best.pt").read_bytes()
    out = snakemake(rerun_copy, TINY, "--forcerun", f"{MALIK_NB}/run.json")
    assert out.returncode == 0, out.stderr[-4000:]
    assert "train" in rules_of(executed_jobs(out.stderr))
    log = train_log(rerun_copy)
    epochs = TINY["experiments"]["malik"]["train"]["epochs"]
    assert f"after epoch {epochs}" in log and "epoch 1/" not in log  # resumed, nothing to train
    assert_run_complete(rerun_copy)
    assert (rerun_copy / MALIK_NB / "best.pt").read_bytes() == before


def test_a_damaged_resume_checkpoint_is_set_aside_and_the_run_retrained(rerun_copy):
    last = rerun_copy / MALIK_NB / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    out = snakemake(rerun_copy, TINY, "--forcerun", f"{MALIK_NB}/run.json")
    assert out.returncode == 0, out.stderr[-4000:]
    assert "last.pt is damaged" in train_log(rerun_copy)
    assert (rerun_copy / MALIK_NB / "last.pt.damaged").is_file()
    assert_run_complete(rerun_copy)


# --- a real re-run after a baseline option changed ------------------------------------------------

BASELINES_ONLY = {
    "datasets": {
        "tiny": {"adapter": "synth", "n_clips": 12, "duration_s": 4.0, "n_classes": 2, "seed": 1}
    },
    "features": {"shards": 1},
    "experiments": {
        "linear": {
            "dataset": "tiny",
            "features": ["logmel_500ms"],
            "models": ["mean", "ridge"],
            "seeds": [0],
            "split": {"method": "holdout", "test_fraction": 0.25, "val_fraction": 0.2},
        }
    },
}
BASELINE_RUNS = "results/tiny/linear/runs/logmel_500ms"


def run_files(work: Path, model: str) -> dict[str, bytes]:
    folder = work / BASELINE_RUNS / model
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_baseline_option_refits_that_baseline_only_and_changes_its_predictions(tmp_path):
    first = snakemake(tmp_path, BASELINES_ONLY)
    assert first.returncode == 0, first.stderr[-4000:]
    (ridge,) = (tmp_path / BASELINE_RUNS / "ridge").glob("*/*/seed0")
    predicted = ["arousal_pred", "valence_pred"]
    before = pd.read_parquet(ridge / "predictions.parquet")[predicted]
    mean_files = run_files(tmp_path, "mean")
    config = {**BASELINES_ONLY, "model_options": {"ridge": {"alpha": 1e4}}}

    out = snakemake(tmp_path, config)
    assert out.returncode == 0, out.stderr[-4000:]
    jobs = executed_jobs(out.stderr)
    assert rules_of(jobs) == {"fit_baseline": 1, "evaluate": 1, **REPORT_JOBS}
    assert values_of(jobs, "model") == {"ridge"}
    assert run_files(tmp_path, "mean") == mean_files  # untouched, byte for byte
    assert read_json(ridge / "run.json")["resolved"]["model_options"] == {"alpha": 1e4}
    after = pd.read_parquet(ridge / "predictions.parquet")[predicted]
    assert before.shape == after.shape and not np.allclose(before, after)
    assert planned_jobs(tmp_path, config) == []
