"""Comparing two workflow runs: which outputs must match byte for byte, which by value."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

from merflow.io import read_json, read_table

# Clocks and provenance: wall times, timestamps, host and paths; compared by value where it matters.
NOT_BYTE_COMPARABLE = (
    "logs/",
    "benchmarks/",
    ".log",
    ".benchmark.tsv",
    "run.json",  # wall time, git revision, versions: its "result" is compared by value
    "history.csv",  # a 'seconds' column: compared without it
    "status.json",  # start time, host and process of the run
    "tensorboard/",  # event files named and stamped with the clock
    ".pt",  # torch's zip container: compared tensor by tensor
    ".png",  # figures are not tables
    "clips.parquet",  # absolute audio paths, inside each run's own results folder
    "shards/",  # the same rows as clips.parquet
    "synth.json",  # the synthetic dataset's description, with its absolute output folder
)


def files(results: Path) -> dict[str, Path]:
    return {str(p.relative_to(results)): p for p in sorted(results.rglob("*")) if p.is_file()}


def file_names(results: Path) -> set[str]:
    """The files of a run, a TensorBoard event file by its folder (its name holds the clock)."""
    event_file = re.compile(r"/tensorboard/events\.out\.tfevents\..*$")
    return {event_file.sub("/tensorboard/events", name) for name in files(results)}


def byte_comparable(relative: str) -> bool:
    return not any(
        part in relative if part.endswith("/") else relative.endswith(part)
        for part in NOT_BYTE_COMPARABLE
    )


def differing_bytes(first: Path, second: Path) -> list[str]:
    """Byte-comparable files of ``first`` that ``second`` lacks or holds with other bytes."""
    a, b = files(first), files(second)
    return [
        name
        for name, path in a.items()
        if byte_comparable(name) and (name not in b or path.read_bytes() != b[name].read_bytes())
    ]


def clips_without_folder(results: Path) -> pd.DataFrame:
    clips = read_table(results / "tiny" / "clips.parquet")
    return clips.assign(path=[str(Path(p).relative_to(results)) for p in clips["path"]])


def history_without_clock(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns="seconds")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def same_weights(first: Path, second: Path) -> bool:
    a, b = weights(first), weights(second)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_result(run_dir: Path) -> dict:
    result = dict(read_json(run_dir / "run.json")["result"])
    result.pop("epoch_seconds_total")
    return result
