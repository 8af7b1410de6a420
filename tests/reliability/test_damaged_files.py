"""Damaged run files and wrong tables: merflow's own one-line error (exit 2), never a traceback,
and a damaged resume checkpoint never blocks a run for good.

The runs are the tiny ones of tests/trained_models.py, copied before each is damaged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from merflow.io import read_json, write_table
from merflow.tables import quarantine_table

MERFLOW = Path(sys.executable).with_name("merflow")


def merflow(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [str(MERFLOW), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    error = [line for line in run.stderr.splitlines() if ": error: " in line]
    assert len(error) == 1, run.stderr
    for fragment in fragments:
        assert fragment in error[0], error[0]


def copy_run(tiny: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny / "runs" / name, tmp_path / name))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def object_array_npz(path: Path) -> None:
    stored = dict(np.load(path))
    np.savez(path, **{**stored, "mean": np.array([{"not": "numbers"}], dtype=object)})


def weights_of_another_network(path: Path) -> None:
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["model"].pop(next(iter(checkpoint["model"])))
    torch.save(checkpoint, path)


DAMAGES = {
    "best.pt of another network": ("best.pt", weights_of_another_network, "best.pt is damaged"),
    "truncated best.pt": ("best.pt", truncate, "best.pt is damaged"),
    "norm.npz with an object array": ("norm.npz", object_array_npz, "norm.npz is damaged"),
    "missing run.json": ("run.json", Path.unlink, "run.json is missing"),
    "garbled run.json": ("run.json", lambda p: p.write_text('{"config": {'), "run.json is damaged"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("command", ["predict", "export", "evaluate"])
def test_a_damaged_run_file_is_named_with_the_fix(tiny, shared_data, tmp_path, damage, command):
    name, spoil, message = DAMAGES[damage]
    run = copy_run(tiny, "velankar", tmp_path)
    spoil(run / name)
    song = next((shared_data / "4q-sample/audio/Q1").glob("*.mp3"))
    args = {
        "predict": ["predict", "--model", run, "--out", tmp_path / "out", "--gpu", "0", song],
        "export": ["export", run, tmp_path / "exported"],
        "evaluate": ["evaluate", "--run-dir", run],
    }[command]
    fix = "train it again" if "missing" not in damage else "train it first"
    assert_one_line_error(merflow(*args, cwd=tiny), message, fix)


def test_a_damaged_export_names_the_fix_export_again(exported, shared_data, tmp_path):
    model = Path(shutil.copytree(exported / "velankar", tmp_path / "model"))
    truncate(model / "weights.safetensors")
    song = next((shared_data / "4q-sample/audio/Q1").glob("*.mp3"))
    run = merflow("predict", "--model", model, "--out", tmp_path / "out", "--gpu", "0", song)
    assert_one_line_error(run, "weights.safetensors is damaged", "export the model again")


REEVALUATE = "evaluate the run again"
EXPORT_DAMAGES = {
    "garbled metrics.json": ("metrics.json", lambda p: p.write_text('{"n_clips": 2'), REEVALUATE),
    "metrics.json of something else": ("metrics.json", lambda p: p.write_text("{}"), REEVALUATE),
    "truncated baseline.npz": ("baseline.npz", truncate, "train it again"),
}


@pytest.mark.parametrize("damage", sorted(EXPORT_DAMAGES))
def test_export_checks_every_file_it_copies_as_predict_reads_it(tiny, tmp_path, damage):
    name, spoil, fix = EXPORT_DAMAGES[damage]
    run = copy_run(tiny, "ridge", tmp_path)
    spoil(run / name)
    exported = merflow("export", run, tmp_path / "exported", cwd=tiny)
    assert_one_line_error(exported, f"{name} is damaged", fix)
    assert not (tmp_path / "exported").exists()  # and "model written" is not said


def test_training_resumed_from_a_damaged_last_checkpoint_starts_afresh(tiny, tmp_path):
    run = copy_run(tiny, "malik", tmp_path)
    record = read_json(run / "run.json")
    truncate(run / "last.pt")
    for name in ("run.json", "history.csv"):  # as Snakemake deletes a job's outputs
        (run / name).unlink()
    config = record["config"]
    args = ["train", "--run-dir", run, "--model", config["model"], "--gpu", "0"]
    args += ["--features", config["features_path"], "--clips", config["clips_path"]]
    args += ["--targets", config["targets_path"], "--split", config["split_path"]]
    train = {k: config[k] for k in ("epochs", "batch_size", "smooth_windows")}
    args += ["--seq-len", str(config["seq_len"]), "--train", json.dumps(train)]
    out = merflow(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "last.pt is damaged" in out.stderr and "starting afresh" in out.stderr
    assert (run / "last.pt.damaged").is_file()
    assert read_json(run / "run.json")["result"]["epochs_run"] == config["epochs"]
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == list(range(1, config["epochs"] + 1))
    torch.load(run / "last.pt", weights_only=True)  # a whole checkpoint again


# --- tables that are not Parquet, or not the table a stage expects ------------------------------


def not_parquet(path: Path) -> Path:
    path.write_bytes(b"PAR1 this is not a table, it was cut by a download\n")
    return path


def a_quarantine_table(path: Path) -> Path:
    row = {"clip_id": "x", "path": "x.wav", "stage": "index", "reason": "cut"}
    write_table(quarantine_table([row]), path)
    return path


def stage_args(stage: str, bad: Path, tiny: Path, tmp_path: Path) -> list:
    data = tiny / "data"
    out = [tmp_path / "out.parquet"]
    return {
        "features --clips": [
            *("features", "--clips", bad, "--feature", "logmel_500ms", "--shard", "0"),
            *("--out", *out, "--quarantine", tmp_path / "q.parquet"),
        ],
        "merge-features --shards": [
            *("merge-features", "--out", *out, "--quarantine", tmp_path / "q.parquet"),
            *("--shards", bad, "--quarantine-shards", a_quarantine_table(tmp_path / "qs")),
        ],
        "splits --clips": [
            *("splits", "--clips", bad, "--settings", '{"method": "holdout"}'),
            *("--split-id", "holdout-s0", "--out", *out),
        ],
        "train --split": [
            *("train", "--run-dir", tmp_path / "run", "--model", "ridge", "--gpu", "0"),
            *("--features", data / "logmel_500ms.parquet", "--clips", data / "clips.parquet"),
            *("--targets", data / "targets.parquet", "--split", bad),
        ],
        "train --features": [
            *("train", "--run-dir", tmp_path / "run", "--model", "ridge", "--gpu", "0"),
            *("--features", bad, "--clips", data / "clips.parquet"),
            *("--targets", data / "targets.parquet", "--split", data / "split.parquet"),
        ],
        "evaluate --targets": [
            *("evaluate", "--run-dir", tiny / "runs/ridge", "--targets", bad),
        ],
        "aggregate --quarantine": [
            *("aggregate", "--experiment", "e", "--spec", '{"dataset": "tiny"}'),
            *("--dataset", '{"name": "tiny"}', "--out", tmp_path / "report"),
            *("--metrics", tiny / "runs/ridge/metrics.json", "--quarantine", bad),
        ],
    }[stage]


EXPECTED = {
    "features --clips": "clips table",
    "merge-features --shards": "windowed feature table or frame-level feature table",
    "splits --clips": "clips table",
    "train --split": "split table",
    "train --features": "windowed feature table",
    "evaluate --targets": "targets table",
    "aggregate --quarantine": "quarantine table",
}


@pytest.mark.parametrize("stage", sorted(EXPECTED))
@pytest.mark.parametrize("fault", ["not Parquet", "another table"])
def test_a_stage_given_the_wrong_file_names_it_and_the_table_expected(tiny, tmp_path, stage, fault):
    if fault == "not Parquet":
        bad = not_parquet(tmp_path / "bad.parquet")
        fragment = "not a readable Parquet file"
    elif stage == "aggregate --quarantine":
        bad = tiny / "data" / "split.parquet"
        fragment = "(it looks like a split table)"
    else:
        bad = a_quarantine_table(tmp_path / "bad.parquet")
        fragment = "(it looks like a quarantine table)"
    if stage == "evaluate --targets" and not (tiny / "runs/ridge/metrics.json").is_file():
        merflow("evaluate", "--run-dir", tiny / "runs/ridge", cwd=tiny)
    if stage == "aggregate --quarantine":
        merflow("evaluate", "--run-dir", tiny / "runs/ridge", cwd=tiny)
    run = merflow(*stage_args(stage, bad, tiny, tmp_path), cwd=tiny)
    assert_one_line_error(run, str(bad), EXPECTED[stage], fragment)


# --- merflow predict accounts for every input ----------------------------------------------------


def test_predict_lists_every_file_it_could_not_tag_with_the_reason(exported, shared_data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    real = sorted((shared_data / "4q-sample/audio/Q2").glob("*.mp3"))
    shutil.copy(real[0], folder / "good.mp3")
    data = real[1].read_bytes()
    (folder / "cut.mp3").write_bytes(data[: len(data) // 2 + 7])  # inside a frame
    (folder / "loop.mp3").symlink_to(folder / "loop.mp3")
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (folder / "song.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    (folder / "albums").symlink_to(tmp_path)
    os.mkfifo(folder / "pipe.wav")
    out = tmp_path / "out"
    run = merflow("predict", "--model", exported / "velankar", "--out", out, "--gpu", "0", folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "tagged 1 of 7 file(s)" in run.stderr
    report = read_json(out / "predict.json")
    assert (report["n_files"], report["n_tagged"]) == (7, 1)
    reasons = {Path(p["path"]).name: p["reason"] for p in report["unreadable"]}
    assert reasons["cut.mp3"].startswith("MP3 ends inside a frame: the file was cut at about")
    assert "loop of links" in reasons["loop.mp3"] and "broken symbolic link" in reasons["gone.wav"]
    assert reasons["song.m4a"].startswith("not an audio format merflow decodes")
    assert "not followed" in reasons["albums"] and reasons["pipe.wav"] == "not a regular file"
    for name, reason in reasons.items():
        assert f"{name}: {reason}" in run.stderr
