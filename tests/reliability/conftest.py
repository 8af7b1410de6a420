"""The uninterrupted run of the tiny workflow that the determinism and interruption tests compare
against (session-scoped: it is run at most once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _snakemake import run_tiny


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> Path:
    return run_tiny(tmp_path_factory.mktemp("reference_run"))
