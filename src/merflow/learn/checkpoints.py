"""A run's checkpoints: ``last.pt`` to resume from, ``best.pt`` to predict with.

``last.pt`` holds the weights, the optimizer and the :class:`Progress` after the last epoch, and
the run's resume key: its settings (:meth:`~merflow.learn.recipes.TrainConfig.resume_key`), the
network's build arguments and fingerprints of its data
(:func:`~merflow.learn.run_data.data_fingerprint`). :func:`resume` continues from it only when
the key is this run's; otherwise the run starts afresh and the log says what differs
(:func:`what_changed`). ``best.pt`` holds the best epoch's weights, or the kept epochs' as one
:class:`~merflow.models.network.CheckpointEnsemble`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from merflow.io import atomic_path
from merflow.models.network import Network
from merflow.runs import BEST_FILE, RunFileError, load_checkpoint

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What survives between epochs (and runs): stored in ``last.pt``."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    epochs_since_best: int = 0
    stopped_early: bool = False
    # [value, epoch] of the epochs the checkpoint ensemble keeps, best first
    kept: list[list] = field(default_factory=list)


def save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def last_state(
    resume_key: dict, model, optimizer, scaler, progress: Progress, kept_states: dict
) -> dict:
    return {
        "resume_key": resume_key,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "progress": asdict(progress),
        "kept_states": {str(epoch): state for epoch, state in kept_states.items()},
    }


def kept_epochs(progress: Progress) -> list[int]:
    return [epoch for _, epoch in progress.kept]


def keep_state(kept_states: dict, progress: Progress, epoch: int, model: Network) -> dict:
    """The weights of the epochs in ``progress.kept``: this epoch's, if it is one of them."""
    kept = kept_epochs(progress)
    states = {e: state for e, state in kept_states.items() if e in kept}
    if epoch in kept:
        states[epoch] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return states


def best_state(model: Network, build_args: dict, progress: Progress, kept_states: dict) -> dict:
    """What ``best.pt`` holds: the best epoch's weights, or the kept epochs' as one
    :class:`~merflow.models.network.CheckpointEnsemble` (best first)."""
    if len(kept_states) <= 1:  # the best epoch alone: this epoch
        return {"model": model.state_dict(), "build": build_args, "epoch": progress.best_epoch}
    epochs = kept_epochs(progress)
    state = {
        f"members.{i}.{name}": value
        for i, epoch in enumerate(epochs)
        for name, value in kept_states[epoch].items()
    }
    build = {**build_args, "members": len(epochs)}
    return {"model": state, "build": build, "epoch": progress.best_epoch, "epochs": epochs}


def resume(path: Path, resume_key: dict, model, optimizer, scaler, device):
    """Load ``last.pt`` when it belongs to this run (the same ``resume_key``: settings, network
    and data); a fresh start otherwise, and when the file is damaged (it is then kept as
    ``last.pt.damaged``). Also the weights of the epochs the checkpoint ensemble keeps."""
    if not path.is_file():
        return Progress(), {}
    if not (path.parent / BEST_FILE).is_file():
        log.warning("%s has no %s beside it; starting afresh", path, BEST_FILE)
        return Progress(), {}
    try:
        checkpoint = load_checkpoint(path, device)
    except RunFileError as exc:
        os.replace(path, path.with_name(path.name + ".damaged"))
        log.warning("%s; moved aside as %s.damaged, starting afresh", exc, path.name)
        return Progress(), {}
    if checkpoint.get("resume_key") != resume_key:
        changes = "; ".join(what_changed(checkpoint.get("resume_key") or {}, resume_key))
        log.warning("%s was written before these changes: %s; starting afresh", path, changes)
        return Progress(), {}
    progress = Progress(**checkpoint["progress"])
    best_on_disk = saved_epoch(path.parent / BEST_FILE, device)
    if best_on_disk != progress.best_epoch:  # stopped between writing best.pt and last.pt
        why = f"{BEST_FILE} holds epoch {best_on_disk}, {path.name}'s best is {progress.best_epoch}"
        log.warning("%s; starting afresh", why)
        return Progress(), {}
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint["scaler"]:  # a CPU run's disabled scaler saved nothing
        scaler.load_state_dict(checkpoint["scaler"])
    log.info("resuming %s after epoch %d", path.parent, progress.epoch)
    kept_states = {int(e): state for e, state in checkpoint.get("kept_states", {}).items()}
    return progress, kept_states


def what_changed(written: dict, wanted: dict) -> list[str]:
    """What differs between the resume key a checkpoint was ``written`` with and this run's, in
    words: each setting or build argument that changed (``lr 0.001 -> 0.002``), and which of the
    data (:func:`~merflow.learn.run_data.data_fingerprint`) changed."""
    before, after = _flat(written, skip="data"), _flat(wanted, skip="data")
    changes = [
        f"{key} {_brief(before.get(key, '(unset)'))} -> {_brief(after.get(key, '(unset)'))}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]
    if written.get("data") != wanted.get("data"):
        changes.append(_data_change(written.get("data"), wanted["data"]))
    return changes


def _data_change(old: dict | str | None, new: dict[str, str]) -> str:
    if not isinstance(old, dict):
        return "the data fingerprint is of an older merflow"
    if old.get("split") != new["split"]:
        return "the split changed"  # the features and labels of its clips then differ too
    changed = {"features": "the feature table's rows changed", "labels": "the labels changed"}
    return " and ".join(words for key, words in changed.items() if old.get(key) != new[key])


def _flat(values: dict, prefix: str = "", skip: str = "") -> dict:
    """Nested settings as ``{"build.options.dropout": 0.25, ...}``."""
    flat = {}
    for key, value in values.items():
        if key == skip:
            continue
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _brief(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else "..." + text[-57:]


def saved_epoch(path: Path, device) -> int | None:
    """The epoch a ``best.pt`` holds (None when it cannot be read)."""
    try:
        return load_checkpoint(path, device).get("epoch")
    except RunFileError:
        return None
