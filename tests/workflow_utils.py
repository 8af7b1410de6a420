"""Running the real workflow from tests: a tiny config, Snakemake in a work folder, its plans.

Shared by the end-to-end tests (test_workflow, test_incremental, test_presets); the tiny run
itself is the session fixture ``tiny_run`` in conftest.py.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def bench_module(name: str):
    """``bench/<name>.py`` as a module; bench/ joins ``sys.path``, as when a script runs, since
    the scripts import one another."""
    folder = str(REPO / "bench")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SNAKEMAKE = Path(sys.executable).with_name("snakemake")

TINY = {
    "datasets": {
        "tiny": {"adapter": "synth", "n_clips": 12, "duration_s": 8.0, "n_classes": 3, "seed": 1}
    },
    "features": {"shards": 2, "logmel": {"n_frames": 160}},
    "experiments": {
        "malik": {
            "dataset": "tiny",
            "features": ["logmel_500ms"],
            "models": ["malik_crnn_nb", "ridge"],
            "seq_len": [8],
            "seeds": [0],
            "split": {"method": "holdout", "test_fraction": 0.25, "val_fraction": 0.2},
            "train": {"epochs": 2, "patience": 2, "batch_size": 8},
        },
        "velankar": {
            "dataset": "tiny",
            "features": ["logmel"],
            "models": ["velankar_crnn", "majority"],
            "seeds": [0],
            "split": {"method": "holdout", "test_fraction": 0.34, "val_fraction": 0.2},
            "train": {"epochs": 2, "patience": 2, "batch_size": 4, "input_frames": 160},
        },
    },
}

# "rule train:", "localrule synthesize:", "checkpoint index:" head each job Snakemake prints
JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")


def tiny_config() -> dict:
    """A fresh copy of TINY, to change in a test."""
    return copy.deepcopy(TINY)


def run_snakemake(
    workdir: Path, *args: str, configfile: Path | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Snakemake on the repository's workflow in ``workdir``, with merflow's CLI on the PATH."""
    env = dict(os.environ, PATH=f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += ["--cores", "2", "--resources", "gpu=1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """Write ``config`` to ``workdir/config.yaml`` and run Snakemake with it."""
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return run_snakemake(workdir, *args, configfile=configfile)


def jobs_to_run(workdir: Path, config: dict) -> dict[str, int]:
    """Rule name -> job count of a dry run (empty when there is nothing to do)."""
    out = snakemake(workdir, config, "-n", "--quiet", "rules")
    assert out.returncode == 0, out.stderr
    counts = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


def executed_jobs(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a Snakemake run (or dry run) printed, in order."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in stdout.splitlines():
        header = JOB_HEADER.match(line.strip())
        if header:
            jobs.append((header[1], {}))
        elif jobs and line.strip().startswith("wildcards:"):
            pairs = line.strip().removeprefix("wildcards:").split(",")
            jobs[-1][1].update(pair.strip().split("=", 1) for pair in pairs)
    return jobs


def planned_jobs(workdir: Path, config: dict) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run with ``config`` would run."""
    out = snakemake(workdir, config, "-n")
    assert out.returncode == 0, out.stderr
    return executed_jobs(out.stdout)
