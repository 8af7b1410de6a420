"""Where a job computes, and the seeds that make it repeatable.

CUDA is used when the job asks for a GPU (its ``resources.gpu``) and torch sees one; otherwise the
CPU, and the log says which. Seeds: every source of randomness in epoch ``e`` is reseeded from
``(seed, e)`` (:func:`epoch_seed`), so an epoch is a pure function of the state it starts from.

One GPU per job: on a machine with several visible GPUs (``snakemake --resources gpu=2`` on a
two-GPU workstation) each job claims a slot of its own (:func:`claim_gpu`): an exclusive
``flock`` on ``gpu<i>.lock`` in :func:`gpu_lock_dir` (``$MERFLOW_GPU_LOCKS``, by default a
per-user folder in the system's temporary folder: GPUs belong to the machine). The lock lives as
long as the process, so it is released however the job ends, ``kill -9`` included. When every
slot is taken the job waits (``$MERFLOW_GPU_WAIT`` seconds, :data:`DEFAULT_GPU_WAIT_S`) and then
shares ``cuda:0`` with a warning. Slurm's allocation (``SLURM_JOB_ID`` with
``CUDA_VISIBLE_DEVICES``) is used as it is, and one visible GPU needs no slot.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import IO

import numpy as np
import torch

log = logging.getLogger(__name__)

GPU_LOCKS_ENV = "MERFLOW_GPU_LOCKS"  # folder of the slot locks
GPU_WAIT_ENV = "MERFLOW_GPU_WAIT"  # seconds to wait for a free slot
DEFAULT_GPU_WAIT_S = 120.0
GPU_POLL_S = 1.0

# lock folder -> (pid, slot, the open lock file): held for the life of the process
_HELD: dict[str, tuple[int, int, IO]] = {}


def select_device(gpu_requested: int | bool) -> torch.device:
    """CUDA when a GPU is requested (the job's ``resources.gpu``) and present; else the CPU.
    With several visible GPUs, the one of the slot this process claims (module doc)."""
    if gpu_requested:  # cuBLAS reads it at CUDA's start only: before any CUDA call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    if gpu_requested and torch.cuda.is_available():
        index, slot = _claim_cuda_index()
        device = torch.device("cuda" if index is None else f"cuda:{index}")
        log.info("device: %s (%s)%s", device, torch.cuda.get_device_name(device), slot)
    elif gpu_requested:
        device = torch.device("cpu")
        log.warning("device: cpu (a GPU was requested but torch sees no CUDA device)")
    else:
        device = torch.device("cpu")
        log.info("device: cpu (no GPU requested)")
    return device


_FEATURE_DEVICE = ["cpu"]


def use_gpu_for_features(gpu_requested: int | bool) -> str:
    """Let the feature stage's networks (pretrained embeddings) run on CUDA when the job has a
    GPU and torch sees one (a slot's GPU, like :func:`select_device`); returns the device."""
    if bool(gpu_requested) and torch.cuda.is_available():
        index, slot = _claim_cuda_index()
        _FEATURE_DEVICE[0] = "cuda" if index is None else f"cuda:{index}"
        if slot:
            log.info("feature networks: %s%s", _FEATURE_DEVICE[0], slot)
    else:
        _FEATURE_DEVICE[0] = "cpu"
    return _FEATURE_DEVICE[0]


def feature_device() -> str:
    """Where the feature stage runs networks: ``cpu`` unless :func:`use_gpu_for_features`."""
    return _FEATURE_DEVICE[0]


# --- one GPU per job -----------------------------------------------------------------------


def gpu_lock_dir() -> Path:
    """``$MERFLOW_GPU_LOCKS``, else ``<temp>/merflow-gpu-locks-<uid>``."""
    given = os.environ.get(GPU_LOCKS_ENV)
    return (
        Path(given) if given else Path(tempfile.gettempdir()) / f"merflow-gpu-locks-{os.getuid()}"
    )


def slurm_allocation() -> bool:
    """Whether Slurm gave this job its GPUs: they are then the job's alone, no slot needed."""
    return bool(os.environ.get("SLURM_JOB_ID")) and "CUDA_VISIBLE_DEVICES" in os.environ


def claim_gpu(n_devices: int, lock_dir: str | os.PathLike) -> int | None:
    """Take the first free GPU slot of ``n_devices`` (``lock_dir/gpu<i>.lock``, an exclusive
    non-blocking ``flock`` held until the process ends) and return its device index; None when
    all are taken. A process keeps the slot it has: asking again returns it."""
    key = str(Path(lock_dir).absolute())
    held = _HELD.get(key)
    if held and held[0] == os.getpid():
        return held[1]
    Path(lock_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    for index, name in enumerate(slot_names(n_devices)):
        handle = open(Path(lock_dir) / f"gpu{name}.lock", "a+")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # taken (EWOULDBLOCK)
            handle.close()
            continue
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # who holds it, for a curious reader
        handle.flush()
        _HELD[key] = (os.getpid(), index, handle)
        return index
    return None


def wait_for_gpu(
    n_devices: int, lock_dir: str | os.PathLike, wait_s: float, poll_s: float = GPU_POLL_S
) -> int | None:
    """:func:`claim_gpu`, polling for up to ``wait_s`` seconds while every slot is taken."""
    deadline = time.monotonic() + wait_s
    announced = False
    while (index := claim_gpu(n_devices, lock_dir)) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if not announced:
            log.info(
                "all %d GPU slots in %s are taken; waiting up to %g s for one",
                n_devices,
                lock_dir,
                wait_s,
            )
            announced = True
        time.sleep(min(poll_s, left))
    return index


def release_gpu(lock_dir: str | os.PathLike | None = None) -> None:
    """Give back the slot this process holds (in ``lock_dir``; all when None). Jobs never need
    to: the slot goes with the process."""
    keys = list(_HELD) if lock_dir is None else [str(Path(lock_dir).absolute())]
    for key in keys:
        held = _HELD.pop(key, None)
        if held:
            held[2].close()


def slot_names(n_devices: int) -> list[str]:
    """The lock names of the visible GPUs: the ids in ``CUDA_VISIBLE_DEVICES`` when it lists
    them (so jobs that see the GPUs in another order still lock the same GPU), else 0..n-1."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    if len(visible) == n_devices and all(visible):
        return [re.sub(r"[^A-Za-z0-9_.-]", "_", v) for v in visible]
    return [str(i) for i in range(n_devices)]


def _claim_cuda_index() -> tuple[int | None, str]:
    """(the CUDA index to use, a note for the log): None when slots do not apply."""
    n_devices = torch.cuda.device_count()
    if n_devices <= 1:
        return None, ""
    if slurm_allocation():
        return None, f", Slurm's allocation of {n_devices}"
    lock_dir = gpu_lock_dir()
    index = wait_for_gpu(n_devices, lock_dir, _gpu_wait_s())
    if index is None:
        log.warning(
            "all %d GPUs are claimed by other merflow jobs (slot locks in %s); sharing cuda:0 "
            "after waiting %.0f s. Give snakemake --resources gpu=<at most %d>, and run one "
            "workflow at a time (or set $%s / $%s)",
            n_devices,
            lock_dir,
            _gpu_wait_s(),
            n_devices,
            GPU_LOCKS_ENV,
            GPU_WAIT_ENV,
        )
        return 0, ", no free slot"
    return index, f", slot gpu{slot_names(n_devices)[index]} of {n_devices}"


def _gpu_wait_s() -> float:
    try:
        return max(0.0, float(os.environ.get(GPU_WAIT_ENV, DEFAULT_GPU_WAIT_S)))
    except ValueError:
        return DEFAULT_GPU_WAIT_S


def seed_everything(seed: int, cuda: bool = False) -> None:
    """Seed python, numpy and torch; on CUDA also ask torch for deterministic kernels. (The
    CPU's kernels are deterministic already, and asking costs a job 1-2 s of imports.)"""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (for libraries that use the global state)
    torch.manual_seed(seed)
    if cuda:  # select_device has set CUBLAS_WORKSPACE_CONFIG
        torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for epoch ``epoch`` of run ``seed``: independent streams, no carried state."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
