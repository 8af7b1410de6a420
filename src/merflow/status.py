"""``merflow status``: where every run of a results folder stands, read from small files only.

A run folder (:data:`merflow.runs.RUN_PATTERN`) is in one of these states:

* ``done``: ``run.json`` exists; the best validation score, wall time and device are its own.
* ``incomplete``: ``run.json`` exists, but a file the model is read from (``best.pt`` or
  ``baseline.npz``, ``norm.npz``) does not: the run must be trained again.
* ``failed``: no ``run.json``, and ``train.log`` ends in an error (a line with ``error:``, or a
  Python traceback).
* ``training``: ``status.json`` (written as training starts) or ``history.csv`` exists; the
  epoch is the number of history rows, the budget ``status.json``'s ``epochs``.
* ``stopped``: as ``training``, but the process that wrote ``status.json`` is gone (checked on
  the machine it ran on only: a run elsewhere, on a cluster node, shows as ``training``).
* ``queued``: nothing written yet; with a config, also the runs it plans that have no folder.

Reading stays cheap on thousands of runs: two small JSON files, the last bytes of the log and the
line count of the history; neither torch nor pandas is imported.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from merflow.errors import MerflowError
from merflow.models.registry import MODELS
from merflow.runs import (
    HISTORY_FILE,
    RETRAIN,
    RUN_FILE,
    RUN_PATTERN,
    STATUS_FILE,
    TRAIN_LOG,
    Run,
    RunFileError,
    model_files,
)

STATES = ("done", "incomplete", "training", "stopped", "failed", "queued")
LOG_TAIL_BYTES = 4096  # enough for the end of a traceback
COLUMNS = (
    "dataset",
    "experiment",
    "feature",
    "model",
    "seq_len",
    "split",
    "seed",
    "state",
    "best_val",
    "wall_time",
    "device",
)


@dataclass(frozen=True)
class RunStatus:
    """One run's line."""

    run: Run
    state: str  # one of STATES
    epoch: int | None = None  # epochs in history.csv (training, stopped)
    epochs: int | None = None  # the run's epoch budget
    best_val: float | None = None  # the best validation metric (done)
    wall_time_s: float | None = None  # done: the run's; training: since it started
    device: str = ""
    missing: tuple[str, ...] = ()  # files of a finished run that are gone (incomplete)

    @property
    def label(self) -> str:
        """The state, with the epoch where one is known: ``training epoch 3 of 10``, or what
        is missing: ``incomplete: best.pt missing``."""
        if self.state in ("training", "stopped") and self.epoch is not None:
            return f"{self.state} epoch {self.epoch} of {self.epochs or '?'}"
        if self.missing:
            return f"{self.state}: {', '.join(self.missing)} missing"
        return self.state

    def cells(self) -> list[str]:
        run = self.run
        return [
            run.dataset,
            run.experiment,
            run.feature,
            run.model,
            run.seq_len,
            run.split,
            str(run.seed),
            self.label,
            "-" if self.best_val is None else f"{self.best_val:.4f}",
            duration(self.wall_time_s),
            self.device or "-",
        ]


# --- finding runs --------------------------------------------------------------------------


def find_run_folders(results: Path) -> dict[Run, Path]:
    """Every run folder under ``results`` (the results folder of the workflow)."""
    pattern = re.sub(r"\{\w+\}", "*", RUN_PATTERN)
    found = {}
    for folder in results.glob(pattern):
        try:
            run = Run.parse(folder.relative_to(results))
        except RunFileError:
            continue  # a folder that only looks like one
        if folder.is_dir():
            found[run] = folder
    return found


def planned_runs(config_path: Path) -> tuple[list[Run], str]:
    """The runs a config plans, as the workflow expands them, and its results folder."""
    from merflow import config as mfconfig

    config = mfconfig.load_config(config_path)
    lacking = mfconfig.experiments_lacking_weights(config)
    runs = []
    for name, exp in config["experiments"].items():
        if name in lacking:
            continue  # the workflow leaves it out too
        ids = mfconfig.experiment_split_ids(exp)
        runs.extend(mfconfig.experiment_runs(config, name, ids))
    return runs, config["results_dir"]


# --- one run's state -----------------------------------------------------------------------


def run_status(run: Run, folder: Path | None, now: float | None = None) -> RunStatus:
    """The state of ``run`` from the files of its ``folder`` (None: no folder yet)."""
    if folder is None:
        return RunStatus(run, "queued")
    record = read_small_json(folder / RUN_FILE)
    if record is not None:
        result = record.get("result") or {}
        missing = _missing_model_files(folder, run.model)
        return RunStatus(
            run,
            "incomplete" if missing else "done",
            missing=missing,
            epoch=result.get("epochs_run"),
            best_val=_number(result.get("best_val_metric")),
            wall_time_s=_number(record.get("wall_time_s")),
            device=str(record.get("device") or ""),
        )
    if log_failed(folder / TRAIN_LOG):
        return RunStatus(run, "failed")
    status = read_small_json(folder / STATUS_FILE)
    rows = history_rows(folder / HISTORY_FILE)
    if status is None and rows is None:
        return RunStatus(run, "queued")
    status = status or {}
    return RunStatus(
        run,
        "training" if process_alive(status) else "stopped",
        epoch=rows or 0,
        epochs=status.get("epochs"),
        wall_time_s=_elapsed(status.get("started_at"), now),
        device=str(status.get("device") or ""),
    )


def _missing_model_files(folder: Path, model: str) -> tuple[str, ...]:
    if model not in MODELS:
        return ()  # a model this merflow does not know: its files cannot be told
    return tuple(name for name in model_files(model) if not (folder / name).is_file())


def read_small_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing or not one."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def history_rows(path: Path) -> int | None:
    """Rows of a history CSV (its lines after the header); None when there is no file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return max(lines - 1, 0)


def log_failed(path: Path) -> bool:
    """Whether a job log ends in an error: its last line says ``error:``, or a traceback is
    among its last lines."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(fh.seek(0, os.SEEK_END) - LOG_TAIL_BYTES, 0))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return False
    lines = [line for line in tail.splitlines() if line.strip()]
    return bool(lines) and ("error:" in lines[-1].lower() or "Traceback" in tail)


def process_alive(status: dict[str, Any]) -> bool:
    """Whether the process ``status.json`` names still runs; True when that cannot be told
    (another machine, or no pid recorded)."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _elapsed(started_at: Any, now: float | None) -> float | None:
    try:
        started = datetime.fromisoformat(started_at).timestamp()
    except (TypeError, ValueError):
        return None
    return max((time.time() if now is None else now) - started, 0.0)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# --- the listing ---------------------------------------------------------------------------


def collect(results: Path | None, config: Path | None = None) -> tuple[list[RunStatus], Path]:
    """Every run of ``results`` (default: the config's results folder, else ``results``), and
    with ``config`` the runs it plans that have no folder yet; sorted, and that folder."""
    planned: list[Run] = []
    if config is not None:
        planned, config_results = planned_runs(config)
        results = results or Path(config_results)
    results = results or Path("results")
    if config is None and not results.is_dir():
        raise MerflowError(
            f"{results}: no such folder; give the results folder (the config's results_dir)"
        )
    folders = find_run_folders(results) if results.is_dir() else {}
    now = time.time()
    runs = set(folders) | set(planned)
    return [run_status(run, folders.get(run), now) for run in sorted(runs, key=_order)], results


def _order(run: Run) -> tuple:
    seq_len = (0, int(run.seq_len), "") if run.seq_len.isdigit() else (1, 0, run.seq_len)
    return (run.dataset, run.experiment, run.feature, run.model, seq_len, run.split, run.seed)


def table(statuses: Iterable[RunStatus]) -> list[str]:
    """The lines of the listing: a header and one aligned line per run."""
    rows = [list(COLUMNS), *(s.cells() for s in statuses)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def repairs(statuses: Iterable[RunStatus], results: Path) -> list[str]:
    """One line per incomplete run: the files missing, and how to train it again."""
    return [
        f"{results / s.run.path}: {', '.join(s.missing)} missing; {RETRAIN}"
        for s in statuses
        if s.missing
    ]


def summary(statuses: list[RunStatus]) -> str:
    """``12 runs: 5 done, 2 training, 1 failed, 4 queued`` (the states that occur)."""
    counts = Counter(s.state for s in statuses)
    parts = [f"{counts[state]} {state}" for state in STATES if counts[state]]
    noun = "run" if len(statuses) == 1 else "runs"
    return f"{len(statuses)} {noun}" + (f": {', '.join(parts)}" if parts else "")


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
