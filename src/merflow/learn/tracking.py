"""What a run reports while it trains: ``history.csv`` (one row per epoch), ``status.json``
(written as training starts: the epoch budget, the device, the start time, host and process,
what ``merflow status`` reads) and, with the ``tensorboard`` package installed, every history
row as TensorBoard scalars in the run folder's ``tensorboard/`` (a resumed run appends to them).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from merflow.io import atomic_path, write_json
from merflow.runs import STATUS_FILE

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "train_metric", "val_metric", "seconds")


def write_status(run_dir: Path, epochs: int, device: torch.device) -> None:
    """``status.json``: what a run in progress is up to (read by ``merflow status``)."""
    status = {
        "epochs": int(epochs),
        "device": str(device),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    write_json(status, run_dir / STATUS_FILE)


def history_row(epoch, train_loss, val_loss, train_metric, val_metric, started) -> dict:
    return {
        "epoch": int(epoch),
        "train_loss": float(train_loss),
        "val_loss": float(val_loss),
        "train_metric": float(train_metric),
        "val_metric": float(val_metric),
        "seconds": round(time.perf_counter() - started, 4),
    }


def describe(row: dict) -> str:
    return (
        " ".join(f"{k}={row[k]:.4f}" for k in HISTORY_COLUMNS[1:-1]) + f" ({row['seconds']:.1f} s)"
    )


def write_history(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).to_csv(tmp, index=False)


# the TensorBoard tag of each history column (and of the learning rate)
TENSORBOARD_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_metric": "metric/train",
    "val_metric": "metric/val",
    "lr": "lr",
}


class TensorBoard:
    """The history rows as TensorBoard scalars (step: the epoch) in ``folder``, when the
    ``tensorboard`` package is installed; nothing, not even the folder, without it. The writer
    is made at the first row; ``first_epoch`` hides what an interrupted earlier writer logged
    from there on (``purge_step``), so a resumed or restarted run shows each epoch once."""

    def __init__(self, folder: Path, first_epoch: int = 1):
        self.folder, self.first_epoch = folder, first_epoch
        self.writer: Any = None
        self.available = True

    def add(self, row: dict, lr: float | None = None) -> None:
        writer = self._writer()
        if writer is None:
            return
        values = {**row, "lr": lr}
        for column, tag in TENSORBOARD_TAGS.items():
            value = values.get(column)
            if value is not None and math.isfinite(value):
                writer.add_scalar(tag, float(value), global_step=int(row["epoch"]))
        writer.flush()  # watchable while the run goes on

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _writer(self) -> Any:
        if self.writer is None and self.available:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.available = False
                log.debug("no tensorboard package: no TensorBoard event files")
                return None
            self.writer = SummaryWriter(str(self.folder), purge_step=self.first_epoch)
        return self.writer
