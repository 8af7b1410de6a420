"""What a run directory records about how it was made (``run.json``).

A result is only as good as one's ability to reproduce it: every run keeps its resolved
configuration, seed, the split it was trained on (path and content hash), the versions of the
libraries that computed it, the git revision of the code, the device, and how long it took.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from merflow.io import read_metadata

PACKAGES = ("merflow", "torch", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy")
_SOURCE_DIR = Path(__file__).resolve().parent


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when absent), plus the Python version."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(directory: str | os.PathLike = _SOURCE_DIR) -> dict[str, Any] | None:
    """Commit and dirty flag of the checkout holding ``directory``; None outside a git checkout.

    ``--no-optional-locks`` keeps ``git status`` from refreshing the index, so recording
    provenance never writes to the repository.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's content: identifies a split independently of its name."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_split(path: str | os.PathLike) -> dict[str, str]:
    """Id (the split table's ``split_id`` metadata, else its file name), path and sha256."""
    path = Path(path)
    split_id = read_metadata(path).get("split_id") or path.stem
    return {"id": split_id, "path": str(path.resolve()), "sha256": file_digest(path)}


def run_record(
    config: Mapping[str, Any],
    *,
    resolved: Mapping[str, Any],
    split_path: str | os.PathLike,
    device: str,
    n_parameters: int | None,
    wall_time_s: float,
    result: Mapping[str, Any],
) -> dict[str, Any]:
    """The content of ``run.json``: ``config`` as given, ``resolved`` what was derived from it
    (task, feature name, the model options after defaults were filled in)."""
    return {
        "config": dict(config),
        "resolved": dict(resolved),
        "seed": config.get("seed"),
        "split": describe_split(split_path),
        "device": device,
        "n_parameters": n_parameters,
        "wall_time_s": round(wall_time_s, 3),
        "result": dict(result),
        "versions": package_versions(),
        "git": git_revision(),
        "host": platform.node(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
