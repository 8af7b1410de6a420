"""The uninterrupted run of the tiny workflow that the determinism and interruption tests compare
against (session-scoped: it is run at most once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _snakemake import TINY
from workflow_utils import snakemake


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("reference_run")
    out = snakemake(workdir, TINY)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir
