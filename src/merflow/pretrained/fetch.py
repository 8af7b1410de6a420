"""Pretrained weights from a package registry: ``merflow pretrained fetch musicnn``.

The musicnn 0.1.0 wheel on PyPI (ISC licence, Pons & Serra 2019) ships its trained taggers as
TensorFlow 1 checkpoints. The wheel is fetched with the ordinary client (``pip download``) or
taken from a path the user gives (a cluster without network), its sha256 is checked, and each
model is converted to safetensors in the cache (:mod:`merflow.pretrained.cache`), with a JSON
card saying where the weights came from. Nothing is fetched from a model hub, and the package is
never installed (it pins numpy < 1.17).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from merflow import __version__
from merflow.errors import MerflowError
from merflow.io import write_json
from merflow.pretrained.cache import CARD, MODELS, cached_card, is_cached, weights_path
from merflow.pretrained.musicnn import TAGS, convert_checkpoint

log = logging.getLogger(__name__)

PACKAGE = "musicnn==0.1.0"
WHEEL = "musicnn-0.1.0-py3-none-any.whl"
SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
FIX = (
    "on a machine without network, download it elsewhere (pip download --no-deps musicnn==0.1.0) "
    "and run: merflow pretrained fetch musicnn --wheel PATH"
)


class FetchError(MerflowError):
    """The weights could not be fetched or are not the expected ones."""


def fetch_musicnn(wheel: str | os.PathLike | None = None, force: bool = False) -> list[Path]:
    """Convert both musicnn taggers into the cache (unless they are there and ``force`` is
    off); return the weight files."""
    if not force and all(is_cached(m) for m in MODELS) and cached_card().get("sha256") == SHA256:
        log.info("musicnn weights already cached in %s", weights_path(MODELS[0]).parent)
        return [weights_path(m) for m in MODELS]

    with tempfile.TemporaryDirectory(prefix="merflow-musicnn-") as tmp:
        wheel = Path(wheel) if wheel else _download(Path(tmp))
        digest = _sha256(wheel)
        if digest != SHA256:
            raise FetchError(
                f"{wheel}: sha256 {digest} is not that of {WHEEL} ({SHA256}); give the wheel "
                "PyPI serves for musicnn 0.1.0"
            )
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp, [n for n in archive.namelist() if n.startswith("musicnn/")])
        written = []
        for model in MODELS:
            convert_checkpoint(Path(tmp) / "musicnn" / model, weights_path(model))
            written.append(weights_path(model))
            log.info("musicnn %s weights: %s", model, weights_path(model))
    record = {
        "source": f"{WHEEL} (https://pypi.org/project/musicnn/0.1.0/)",
        "sha256": SHA256,
        "licence": "ISC (musicnn, Jordi Pons and Xavier Serra, 2019)",
        "models": {
            model: {"file": weights_path(model).name, "tags": TAGS[model]} for model in MODELS
        },
        "converted_by": f"merflow {__version__}",
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(record, weights_path(MODELS[0]).parent / CARD)
    return written


def _download(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-q", "-d", str(folder), PACKAGE]
    done = subprocess.run(command, capture_output=True, text=True)
    wheel = folder / WHEEL
    if done.returncode != 0 or not wheel.is_file():
        reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise FetchError(f"cannot download {PACKAGE} from PyPI ({reason}); {FIX}")
    return wheel


def _sha256(path: Path) -> str:
    if not path.is_file():
        raise FetchError(f"{path}: no such wheel; {FIX}")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
