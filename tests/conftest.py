"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trained_models
from workflow_utils import TINY, snakemake

from merflow.export import export

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MERFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data samples (../shared/data), read in place: skipped locally when absent."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared data at {SHARED_DATA}")
        pytest.skip(f"real-data samples not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The workflow run once on the tiny synthetic config (tests/workflow_utils.TINY); tests only
    read it or dry-run against it, so every end-to-end test module shares this one run."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    out = snakemake(workdir, TINY)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """Three runs trained on tiny synthetic data (tests/trained_models.py)."""
    return trained_models.train_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def exported(tiny, tmp_path_factory) -> Path:
    """The runs of ``tiny``, each exported with `merflow export`."""
    out = tmp_path_factory.mktemp("exported")
    for run in trained_models.RUNS:
        export(tiny / "runs" / run, out / run)
    return out
