"""Where a job computes, and the seeds that make it repeatable.

CUDA is used when the job asks for a GPU (its ``resources.gpu``) and torch sees one; otherwise the
CPU, and the log says which. Seeds: every source of randomness in epoch ``e`` is reseeded from
``(seed, e)`` (:func:`epoch_seed`), so an epoch is a pure function of the state it starts from.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def select_device(gpu_requested: int | bool) -> torch.device:
    """CUDA when a GPU is requested (the job's ``resources.gpu``) and present; else the CPU."""
    if gpu_requested and torch.cuda.is_available():
        device = torch.device("cuda")
        log.info("device: %s (%s)", device, torch.cuda.get_device_name(device))
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
    GPU and torch sees one; returns the device chosen."""
    cuda = bool(gpu_requested) and torch.cuda.is_available()
    _FEATURE_DEVICE[0] = "cuda" if cuda else "cpu"
    return _FEATURE_DEVICE[0]


def feature_device() -> str:
    """Where the feature stage runs networks: ``cpu`` unless :func:`use_gpu_for_features`."""
    return _FEATURE_DEVICE[0]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (for libraries that use the global state)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for epoch ``epoch`` of run ``seed``: independent streams, no carried state."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
