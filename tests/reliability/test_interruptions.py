"""SIGKILL in the middle of the workflow, then the README's commands: the same results.

One run of the tiny workflow is interrupted three times: a feature-extraction job is killed while
it computes its first clip's features (its process has just imported librosa); in the rerun, a
training job is killed after its first epoch checkpoint; in the next, Snakemake itself and all
its jobs are killed (kill -9, as a crashed login node would), which leaves Snakemake's lock
behind. Then the user's commands of the README ("When a run was killed"): ``snakemake`` refuses
the locked folder, ``snakemake --unlock``, ``snakemake --rerun-incomplete`` completes. The
outputs must equal those of the uninterrupted reference run (conftest.py), training must have
resumed from ``last.pt`` rather than started over, and no temporary file may remain.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from _compare import differing_bytes, history_without_clock, run_result, same_weights
from _snakemake import MALIK_RUN, TINY, kill_job_when, start_snakemake
from workflow_utils import snakemake

from merflow.io import read_json

pytestmark = pytest.mark.slow

FEATURE_JOB = "logmel_500ms/shard-0"


def mapped_libraries(pids: list[int]) -> str:
    text = []
    for pid in pids:
        with contextlib.suppress(OSError):
            text.append((Path("/proc") / str(pid) / "maps").read_text())
    return "".join(text)


def computing_features(pids: list[int]) -> bool:
    """librosa (and with it numba's llvmlite) is imported at the first clip's first STFT."""
    return "site-packages/llvmlite/" in mapped_libraries(pids)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("interrupted")
    results = workdir / "results"
    shard = results / "tiny" / "features" / f"{FEATURE_JOB}.parquet"

    run = start_snakemake(workdir, TINY, output="first.out")
    kill_job_when(run, "features", FEATURE_JOB, computing_features)
    assert run.wait(timeout=600) != 0
    state = {"workdir": workdir, "shard_after_kill": shard.exists()}
    state["first_output"] = (workdir / "first.out").read_text()
    state["debris_after_kill"] = sorted(p.name for p in shard.parent.glob(".*"))
    # What a writer killed between creating and renaming its temporary file leaves (the kill
    # above may come before any write, even before Snakemake made the folder): the job that
    # owns the file must clear it.
    shard.parent.mkdir(parents=True, exist_ok=True)
    (shard.parent / f".{shard.name}.killedwriter.part").write_bytes(b"PAR1 half a table")

    run_dir = results / MALIK_RUN

    def after_an_epoch(pids: list[int]) -> bool:
        return (run_dir / "last.pt").exists() and not (run_dir / "run.json").exists()

    run = start_snakemake(workdir, TINY, "--rerun-incomplete", output="second.out")
    kill_job_when(run, "train", "malik_crnn_nb", after_an_epoch)
    assert run.wait(timeout=600) != 0
    state["second_output"] = (workdir / "second.out").read_text()
    state["run_json_after_kill"] = (run_dir / "run.json").exists()
    state["epochs_at_kill"] = torch.load(run_dir / "last.pt", weights_only=True)["progress"][
        "epoch"
    ]
    (run_dir / ".best.pt.killedwriter.part").write_bytes(b"half a checkpoint")

    run = start_snakemake(workdir, TINY, "--rerun-incomplete", output="third.out")
    kill_job_when(run, "evaluate", "malik_crnn_nb", lambda pids: True, whole_workflow=True)
    run.wait(timeout=60)
    state["locked"] = snakemake(workdir, TINY)
    state["unlock"] = snakemake(workdir, TINY, "--unlock")
    state["last"] = snakemake(workdir, TINY, "--rerun-incomplete")
    assert state["last"].returncode == 0, state["last"].stderr[-4000:]
    return state


def test_after_kill_9_the_readme_commands_unlock_and_complete_the_workflow(interrupted):
    locked = interrupted["locked"]
    assert locked.returncode != 0
    assert "Directory cannot be locked" in locked.stdout + locked.stderr
    assert interrupted["unlock"].returncode == 0
    assert "Nothing to be done" not in interrupted["last"].stderr  # the killed jobs ran again


def test_no_temporary_file_remains_after_the_reruns(interrupted):
    results = interrupted["workdir"] / "results"
    assert sorted(p.relative_to(results) for p in results.rglob("*.part")) == []
    assert sorted(p.relative_to(results) for p in results.rglob("*.old")) == []


def test_a_killed_feature_job_left_no_output_that_looks_whole(interrupted):
    assert "Error in rule extract_features" in interrupted["first_output"]
    assert FEATURE_JOB in interrupted["first_output"]
    assert not interrupted["shard_after_kill"]
    # what a killed writer may leave is a hidden temporary file no reader or rule asks for
    assert all(name.endswith(".part") for name in interrupted["debris_after_kill"])


def test_a_killed_training_job_resumed_from_its_last_epoch(interrupted):
    assert "Error in rule train" in interrupted["second_output"]
    assert not interrupted["run_json_after_kill"]
    done = interrupted["epochs_at_kill"]
    epochs = TINY["experiments"]["malik"]["train"]["epochs"]
    assert 1 <= done < epochs
    log = (interrupted["workdir"] / "results" / MALIK_RUN / "train.log").read_text()
    assert re.search(rf"resuming \S+ after epoch {done}\b", log), log
    assert f"from epoch {done + 1}" in log
    assert "epoch 1/" not in log  # the finished epochs were not run again
    assert (
        read_json(interrupted["workdir"] / "results" / MALIK_RUN / "run.json")["result"][
            "epochs_run"
        ]
        == epochs
    )


def test_the_interrupted_run_ends_exactly_like_an_uninterrupted_one(interrupted, reference_run):
    first, again = reference_run / "results", interrupted["workdir"] / "results"
    assert differing_bytes(first, again) == []  # features, splits, metrics, predictions, tables
    a, b = first / MALIK_RUN, again / MALIK_RUN
    pd.testing.assert_frame_equal(history_without_clock(a), history_without_clock(b))
    assert same_weights(a / "best.pt", b / "best.pt")
    assert run_result(a) == run_result(b)
