"""The run contract: where a training run lives, the files in its folder, and reading them back.

A run is one model trained on one feature of one experiment's split with one seed. Its folder,
relative to the results folder, is :data:`RUN_PATTERN` (Snakemake's wildcards in braces)::

    <dataset>/<experiment>/runs/<feature>/<model>/len<seq_len>/<split>/seed<seed>/

and holds the files named below. :class:`Run` builds that path from its parts and parses it
back; the rules, training, evaluation, reporting, predict and export all go through here. The
readers turn a missing, truncated or garbled run file into one :class:`RunFileError` that names
the file and what to do, never a traceback.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from merflow.errors import MerflowError

RUN_PATTERN = "{dataset}/{experiment}/runs/{feature}/{model}/len{seq_len}/{split}/seed{seed}"
NO_SEQ_LEN = "full"  # the seq_len of models that see whole clips

RUN_FILE = "run.json"  # provenance: resolved config, seed, split, versions, device, result
NORM_FILE = "norm.npz"  # z-score statistics of the training part
HISTORY_FILE = "history.csv"  # one row per epoch
BEST_FILE = "best.pt"  # networks: the selected weights and how to rebuild the model
LAST_FILE = "last.pt"  # networks: everything needed to resume after the last epoch
BASELINE_FILE = "baseline.npz"  # baselines: their fitted weights
QUARANTINE_FILE = "quarantine.parquet"  # clips of the split that could not be used, and why
STATUS_FILE = "status.json"  # written as training starts: epochs, device, started_at, host, pid
TENSORBOARD_DIR = "tensorboard"  # event files, when the tensorboard package is installed
TRAIN_LOG = "train.log"
TRAIN_BENCHMARK = "train.benchmark.tsv"
EVALUATE_LOG = "evaluate.log"

RETRAIN = (
    "delete the run folder's files and train it again (snakemake --forcerun <its run.json>, "
    "or merflow train)"
)


def model_files(model: str) -> tuple[str, ...]:
    """The files a finished run of ``model`` is predicted from (evaluate, export, predict)."""
    from merflow.models.registry import MODELS

    return (NORM_FILE, BASELINE_FILE if MODELS[model].baseline else BEST_FILE)


class RunFileError(MerflowError):
    """A run file is missing, truncated or not what merflow wrote."""


def predictions_file(part: str = "test") -> str:
    """``predictions.parquet`` for the test part, ``predictions_<part>.parquet`` otherwise."""
    return "predictions.parquet" if part == "test" else f"predictions_{part}.parquet"


def metrics_file(part: str = "test") -> str:
    """``metrics.json`` for the test part, ``metrics_<part>.json`` otherwise (e.g.
    ``metrics_train.json``: Malik et al.'s "development" scores)."""
    return "metrics.json" if part == "test" else f"metrics_{part}.json"


@dataclass(frozen=True)
class Run:
    """One training job: the wildcards of the train and evaluate rules."""

    experiment: str
    dataset: str
    feature: str
    model: str
    seq_len: str
    split: str
    seed: int

    @property
    def path(self) -> str:
        """The run's folder relative to the results folder."""
        return RUN_PATTERN.format(**asdict(self))

    @classmethod
    def parse(cls, path: str | os.PathLike) -> Run:
        """The run whose folder (or a file in it) is ``path``; a RunFileError otherwise."""
        text = Path(path).as_posix()
        match = _RUN_REGEX.search(text) or _RUN_REGEX.search(Path(path).parent.as_posix())
        if not match:
            raise RunFileError(f"{path}: not a run folder (expected .../{RUN_PATTERN})")
        fields = match.groupdict()
        return cls(**{**fields, "seed": int(fields["seed"])})


def _run_regex() -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", re.escape(RUN_PATTERN).replace(r"\{", "{").replace(r"\}", "}"))
    pattern = "".join(
        f"(?P<{p}>{'[0-9]+' if p == 'seed' else '[^/]+'})" if i % 2 else p
        for i, p in enumerate(parts)
    )
    return re.compile(f"(?:^|/){pattern}$")


_RUN_REGEX = _run_regex()


# --- reading run files -----------------------------------------------------------------------


def read_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``run.json`` of a finished run."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise RunFileError(
            f"{path} is missing: the run has not finished training; train it first "
            "(snakemake, or merflow train)"
        )
    record = read_json_file(path)
    if not isinstance(record.get("config"), dict) or "model" not in record["config"]:
        raise RunFileError(f"{path} is garbled (no config.model); {RETRAIN}")
    return record


def read_json_file(path: str | os.PathLike, fix: str = RETRAIN) -> dict[str, Any]:
    """A JSON object merflow wrote into a run folder; a missing or garbled one names ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path} is missing; {fix}")
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(path, exc, fix) from None
    if not isinstance(value, dict):
        raise RunFileError(f"{path} is garbled (not a JSON object); {fix}")
    return value


def load_checkpoint(path: str | os.PathLike, device: Any = "cpu", fix: str = RETRAIN) -> dict:
    """A ``.pt`` file of tensors and plain values (``torch.load(weights_only=True)``): a file
    that holds Python objects is refused unread (unpickling it could run any code), and a
    truncated or unreadable one is named with ``fix``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path} is missing; {fix}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc):
            raise damaged(path, exc, fix) from None
        raise RunFileError(
            f"{path}: refused: it holds Python objects, not only weights (torch.load "
            f"weights_only). merflow never writes such files; {fix}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise damaged(path, exc, fix) from None


def load_arrays(path: str | os.PathLike, fix: str = RETRAIN) -> dict[str, Any]:
    """The arrays of an ``.npz`` file, read without pickle (an object array is refused)."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path} is missing; {fix}")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise damaged(path, exc, fix) from None


def damaged(path: Path, exc: Exception, fix: str) -> RunFileError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RunFileError(f"{path} is damaged or not merflow's ({detail[:160]}); {fix}")
