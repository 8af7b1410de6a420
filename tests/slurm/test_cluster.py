"""profiles/slurm on a real one-node Slurm cluster (tests/slurm/run_cluster_test.sh).

The harness installs Slurm if needed and starts munged, slurmctld and slurmd as root, so it runs
only where that is wanted: in CI (`CI` set) or when asked with `MERFLOW_SLURM_TEST=1`, as root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("run_cluster_test.sh")
REAL_WORKFLOW = Path(__file__).with_name("workflow.yaml")
WANTED = bool(os.environ.get("CI")) or os.environ.get("MERFLOW_SLURM_TEST") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not WANTED, reason="starts Slurm daemons: set MERFLOW_SLURM_TEST=1 (or CI)")
@pytest.mark.skipif(os.geteuid() != 0, reason="starts Slurm daemons: needs root")
def test_workflow_runs_through_slurm_profile() -> None:
    """Every job goes through Slurm, GPU jobs get a GPU (or run on CPU with the override), and
    the numbers equal a local run's; the harness's own checks decide, its log explains."""
    env = {"MERFLOW_SLURM_WORKFLOW_CONFIG": str(REAL_WORKFLOW), **os.environ}
    result = subprocess.run(
        ["bash", str(HARNESS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
