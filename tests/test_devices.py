"""One GPU per job: slot locks taken across processes, released however a holder ends, and the
device each job gets; CUDA is faked (a device count), none is needed."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch

from merflow import devices
from merflow.devices import claim_gpu, release_gpu, select_device, use_gpu_for_features

FORK = multiprocessing.get_context("fork")  # the child inherits the monkeypatched torch.cuda


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Locks in a folder of the test's own; no Slurm, no CUDA_VISIBLE_DEVICES; no slot kept,
    and the feature stage back on the CPU."""
    monkeypatch.setenv(devices.GPU_LOCKS_ENV, str(tmp_path / "locks"))
    monkeypatch.setattr(devices, "_FEATURE_DEVICE", ["cpu"])
    for name in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    yield
    release_gpu()


@pytest.fixture
def two_fake_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"fake {device}")


def _hold(claim, answers, stop) -> None:
    """In a child process: claim, report what was got, hold it until told to stop (or killed)."""
    answers.put(claim())
    stop.wait(60)


class Holder:
    """A process that claims (``claim()``, run in the child) and holds what it got."""

    def __init__(self, claim):
        self.answers, self.stop = FORK.Queue(), FORK.Event()
        self.process = FORK.Process(target=_hold, args=(claim, self.answers, self.stop))
        self.process.start()
        self.got = self.answers.get(timeout=300)  # a hang guard: a busy machine is slow

    def end(self, kill: bool = False) -> None:
        if kill:
            os.kill(self.process.pid, signal.SIGKILL)
        else:
            self.stop.set()
        self.process.join(30)


def _claim(lock_dir: Path, n: int = 2):
    return lambda: claim_gpu(n, lock_dir)


def test_processes_get_a_slot_each_and_none_is_left_for_a_third(tmp_path):
    first, second = Holder(_claim(tmp_path)), Holder(_claim(tmp_path))
    try:
        assert {first.got, second.got} == {0, 1}
        assert claim_gpu(2, tmp_path) is None
        assert sorted(p.name for p in tmp_path.glob("gpu*.lock")) == ["gpu0.lock", "gpu1.lock"]
        assert (tmp_path / f"gpu{first.got}.lock").read_text() == f"{first.process.pid}\n"
    finally:
        first.end()
        second.end()


@pytest.mark.parametrize("kill", [False, True], ids=["exits", "killed -9"])
def test_a_slot_is_free_again_when_its_holder_ends(tmp_path, kill):
    holder = Holder(_claim(tmp_path))
    assert holder.got == 0 and claim_gpu(2, tmp_path) == 1
    release_gpu(tmp_path)
    holder.end(kill=kill)
    assert holder.process.exitcode == (-signal.SIGKILL if kill else 0)
    assert claim_gpu(2, tmp_path) == 0


def test_a_process_keeps_its_slot(tmp_path):
    assert claim_gpu(2, tmp_path) == 0
    assert claim_gpu(2, tmp_path) == 0  # not a second GPU for the same job
    release_gpu(tmp_path)
    holder = Holder(_claim(tmp_path))
    assert holder.got == 0
    holder.end()


def test_select_device_gives_each_process_its_own_gpu(two_fake_gpus, caplog):
    holder = Holder(lambda: str(select_device(1)))
    try:
        assert holder.got == "cuda:0"
        with caplog.at_level(logging.INFO, logger="merflow.devices"):
            assert select_device(1) == torch.device("cuda:1")
        assert "device: cuda:1 (fake cuda:1), slot gpu1 of 2" in caplog.text
        assert select_device(0).type == "cpu"
    finally:
        holder.end()


def test_feature_jobs_claim_a_gpu_likewise(two_fake_gpus):
    holder = Holder(lambda: use_gpu_for_features(1))
    try:
        assert holder.got == "cuda:0"
        assert use_gpu_for_features(1) == "cuda:1" == devices.feature_device()
        assert use_gpu_for_features(0) == "cpu"
    finally:
        holder.end()


def test_without_a_free_slot_a_job_waits_then_shares_cuda0_with_a_warning(
    two_fake_gpus, monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv(devices.GPU_WAIT_ENV, "0.3")
    lock_dir = tmp_path / "locks"
    first, second = Holder(_claim(lock_dir)), Holder(_claim(lock_dir))
    try:
        with caplog.at_level(logging.INFO, logger="merflow.devices"):
            assert select_device(1) == torch.device("cuda:0")
        assert "waiting up to 0.3 s" in caplog.text
        warning = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warning) == 1 and str(lock_dir) in warning[0].getMessage()
    finally:
        first.end()
        second.end()


def test_a_job_waiting_for_a_slot_gets_the_one_freed(tmp_path):
    holders = [Holder(_claim(tmp_path)), Holder(_claim(tmp_path))]
    ender = FORK.Process(target=_end_later, args=(holders[1].stop,))
    ender.start()
    try:
        assert devices.wait_for_gpu(2, tmp_path, wait_s=30, poll_s=0.05) == holders[1].got
    finally:
        ender.join(30)
        for holder in holders:
            holder.end()


def _end_later(stop) -> None:
    import time

    time.sleep(0.3)
    stop.set()


def test_slurms_allocation_is_used_as_it_is(two_fake_gpus, monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert select_device(1) == torch.device("cuda")
    assert not (tmp_path / "locks").exists()


def test_one_visible_gpu_takes_no_lock(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "fake")
    assert select_device(1) == torch.device("cuda")
    assert use_gpu_for_features(1) == "cuda"
    assert not (tmp_path / "locks").exists()


def test_slots_are_named_after_the_visible_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert devices.slot_names(2) == ["3", "1"]
    assert claim_gpu(2, tmp_path) == 0 and (tmp_path / "gpu3.lock").is_file()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f2a,MIG-1/2")
    assert devices.slot_names(2) == ["GPU-5f2a", "MIG-1_2"]
    assert devices.slot_names(3) == ["0", "1", "2"]  # the list does not match what torch sees


def test_the_default_lock_folder_is_per_user(monkeypatch):
    monkeypatch.delenv(devices.GPU_LOCKS_ENV)
    assert devices.gpu_lock_dir().name == f"merflow-gpu-locks-{os.getuid()}"
