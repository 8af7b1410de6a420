"""A tiny config of our own, Snakemake in the background, and finding (and killing) one of its jobs.

Foreground runs use tests/workflow_utils.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from workflow_utils import REPO, SNAKEMAKE, snakemake

# A synthetic dataset and both papers' stages, small enough for a run of about a minute on 2 cores.
TINY = {
    "datasets": {
        "tiny": {"adapter": "synth", "n_clips": 10, "duration_s": 4.0, "n_classes": 2, "seed": 1}
    },
    "features": {"shards": 2, "logmel": {"n_frames": 64}},
    "experiments": {
        "malik": {
            "dataset": "tiny",
            "features": ["logmel_500ms"],
            "models": ["malik_crnn_nb", "ridge"],
            "seq_len": [4],
            "seeds": [0],
            "split": {"method": "holdout", "test_fraction": 0.3, "val_fraction": 0.2},
            "train": {"epochs": 6, "patience": 6, "batch_size": 4},
        },
        "velankar": {
            "dataset": "tiny",
            "features": ["logmel"],
            "models": ["logistic"],
            "seeds": [0],
            "split": {"method": "holdout", "test_fraction": 0.3, "val_fraction": 0.2},
        },
    },
}
MALIK_RUN = "tiny/malik/runs/logmel_500ms/malik_crnn_nb/len4/holdout-s0/seed0"


def run_tiny(workdir: Path) -> Path:
    """The TINY workflow run to its end in ``workdir``."""
    out = snakemake(workdir, TINY)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


def start_snakemake(workdir: Path, config: dict, *args: str, output: str) -> subprocess.Popen:
    """Snakemake in the background (as workflow_utils.snakemake runs it in the foreground), its
    stdout and stderr in ``workdir/output``."""
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    cmd += ["--configfile", str(configfile), "--cores", "2", "--resources", "gpu=1", *args]
    env = dict(os.environ, PATH=f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}")
    with (workdir / output).open("w") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)


# --- the processes of one job ------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def job_processes(snakemake_pid: int, subcommand: str, marker: str) -> list[int]:
    """The processes of the job running ``merflow <subcommand>`` with ``marker`` among its
    arguments (its shell and the worker), parents before children."""
    found: list[int] = []
    for pid in descendants(snakemake_pid):  # breadth first: parents come first
        words = " ".join(cmdline(pid))
        if f"merflow {subcommand} " in words and marker in words and pid not in found:
            found += [pid, *(p for p in descendants(pid) if p not in found)]
    return found


def kill_job_when(
    snakemake: subprocess.Popen,
    subcommand: str,
    marker: str,
    ready: Callable[[list[int]], bool],
    timeout_s: float = 300.0,
    whole_workflow: bool = False,
) -> list[int]:
    """Wait until the job exists and ``ready(its pids)``, then SIGKILL all of its processes
    (with ``whole_workflow``, Snakemake's and all of its jobs' too)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and snakemake.poll() is None:
        pids = job_processes(snakemake.pid, subcommand, marker)
        if pids and ready(pids):
            if whole_workflow:
                pids = [snakemake.pid, *descendants(snakemake.pid)]
            for pid in reversed(pids):  # the worker first, then its shell
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return pids
        time.sleep(0.01)
    raise AssertionError(f"the job 'merflow {subcommand}' ({marker}) never became ready")


def open_files(pids: list[int]) -> list[str]:
    names = []
    for pid in pids:
        try:
            fds = list((Path("/proc") / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                names.append(os.readlink(fd))
    return names
