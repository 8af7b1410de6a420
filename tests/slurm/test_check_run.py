"""The Slurm harness's log checks, on excerpts of real Snakemake 9 + slurm-plugin 2.8 output."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest


def _load_check_run():
    """tests/slurm/check_run.py is a script, not a package module: load it by path."""
    spec = importlib.util.spec_from_file_location(
        "check_run", Path(__file__).with_name("check_run.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_run"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


check_run = _load_check_run()

GROUP_THEN_TRAIN = """\
[Sun Nov 22 05:56:55 2026] Group job features (jobs in lexicogr. order):

    [Sun Nov 22 05:56:55 2026]
    rule extract_features:
        output: results/features/shard-0.npz
        jobid: 3
        wildcards: shard=0

    [Sun Nov 22 05:56:55 2026]
    rule extract_features:
        output: results/features/shard-1.npz
        jobid: 4
        wildcards: shard=1
Job 3290039a-66c9-5005-94f3-ba93432adceb has been submitted with SLURM jobid 1 (log: x/1.log).
Finished jobid: 3 (Rule: extract_features)
Finished jobid: 4 (Rule: extract_features)
rule train:
    input: results/features/merged.npz
    jobid: 1
    wildcards: seed=0
Job 1 has been submitted with SLURM jobid 2 (log: x/2.log).
rule train:
    input: results/features/merged.npz
    jobid: 7
    wildcards: seed=1
Job 7 has been submitted with SLURM jobid 3 (log: x/3.log).
Finished jobid: 1 (Rule: train)
Finished jobid: 7 (Rule: train)
localrule all:
    jobid: 0
Finished jobid: 0 (Rule: all)
"""


def test_group_members_share_the_group_submission() -> None:
    run = check_run.parse_snakemake_log(GROUP_THEN_TRAIN)
    assert run.slurm_id_of == {"3": "1", "4": "1", "1": "2", "7": "3"}
    assert run.rule_of["3"] == "extract_features" and run.rule_of["7"] == "train"
    assert run.local_rules == {"all"}
    assert check_run.check_every_job_submitted(run) == []
    assert check_run.check_jobs_not_serialized(run, "train") == []


def test_a_job_run_without_slurm_is_reported() -> None:
    log = GROUP_THEN_TRAIN.replace(
        "Job 7 has been submitted with SLURM jobid 3 (log: x/3.log).\n", ""
    )
    problems = check_run.check_every_job_submitted(check_run.parse_snakemake_log(log))
    assert problems == ["job 7 (train) finished without a Slurm submission"]


def test_gpu_jobs_held_back_one_after_another_are_reported() -> None:
    first = "Job 7 has been submitted with SLURM jobid 3 (log: x/3.log).\n"
    serialized = GROUP_THEN_TRAIN.replace(first, "").replace(
        "Finished jobid: 1 (Rule: train)\n", "Finished jobid: 1 (Rule: train)\n" + first
    )
    problems = check_run.check_jobs_not_serialized(
        check_run.parse_snakemake_log(serialized), "train"
    )
    assert len(problems) == 1 and "one after another" in problems[0]


def test_ctld_log_must_show_each_job_accepted_and_successful() -> None:
    ctld = (
        "[t] _slurm_rpc_submit_batch_job: JobId=1 InitPrio=1 usec=5\n"
        "[t] _job_complete: JobId=1 WEXITSTATUS 0\n"
        "[t] _slurm_rpc_submit_batch_job: JobId=2 InitPrio=1 usec=5\n"
        "[t] _job_complete: JobId=2 WEXITSTATUS 1\n"
    )
    assert check_run.check_ctld_log(ctld, {"1", "2", "12"}) == [
        "Slurm job 2 did not end with exit status 0 in slurmctld's log",
        "slurmctld never accepted Slurm job 12",
    ]


def _write_records(root: Path, shard_jobs: list[str], train: dict) -> None:
    (root / "features").mkdir(parents=True)
    for shard, job in enumerate(shard_jobs):
        record = {"SLURM_JOB_ID": job, "CUDA_VISIBLE_DEVICES": None}
        (root / "features" / f"shard-{shard}.job.json").write_text(json.dumps(record))
    (root / "train.job.json").write_text(json.dumps(train))


GPU_TRAIN = {
    "SLURM_JOB_ID": "2",
    "CUDA_VISIBLE_DEVICES": "0",
    "gpu_requested": 1,
    "cuda_available": False,
    "device": "cpu",
}


def test_records_of_a_good_run_pass(tmp_path: Path) -> None:
    _write_records(tmp_path, ["1", "1"], GPU_TRAIN)
    assert check_run.check_job_records(tmp_path, {"1", "2"}, gpus=1) == []


@pytest.mark.parametrize(
    ("shard_jobs", "train", "gpus", "expected"),
    [
        (["1", "3"], GPU_TRAIN, 1, "not grouped"),
        (["1", "1"], GPU_TRAIN | {"SLURM_JOB_ID": None}, 1, "not submitted"),
        (["1", "1"], GPU_TRAIN | {"CUDA_VISIBLE_DEVICES": None}, 1, "expected 1 GPU"),
        (["1", "1"], GPU_TRAIN, 0, "expected 0 GPU"),
    ],
)
def test_records_of_a_bad_run_fail(
    tmp_path: Path, shard_jobs: list[str], train: dict, gpus: int, expected: str
) -> None:
    _write_records(tmp_path, shard_jobs, train)
    problems = check_run.check_job_records(tmp_path, {"1", "2", "3"}, gpus=gpus)
    assert any(expected in p for p in problems), problems


def test_results_must_equal_the_local_run(tmp_path: Path) -> None:
    for name, loss in [("slurm", 0.25), ("local", 0.25)]:
        (tmp_path / name / "seed0").mkdir(parents=True)
        (tmp_path / name / "seed0" / "metrics.json").write_text(json.dumps({"loss": loss}))
    assert check_run.check_same_results(tmp_path / "slurm", tmp_path / "local", "*/m*.json") == []
    (tmp_path / "local" / "seed0" / "metrics.json").write_text(json.dumps({"loss": 0.26}))
    assert check_run.check_same_results(tmp_path / "slurm", tmp_path / "local", "*/m*.json")
