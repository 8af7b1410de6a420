"""Where pretrained weights live: the cache folder and the file of each model.

Importing this module is cheap (no torch): the Snakefile asks for weight paths while it parses,
and the config checks which experiments lack their weights. Putting weights there is
:mod:`merflow.pretrained.fetch`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from merflow.errors import ConfigError

MODELS = ("MSD_musicnn", "MTT_musicnn")  # the taggers in the musicnn wheel
CARD = "card.json"  # where the cached weights came from


def cache_dir() -> Path:
    """``$MERFLOW_CACHE``, else the user's cache folder (``~/.cache/merflow``)."""
    return Path(os.environ.get("MERFLOW_CACHE") or Path.home() / ".cache" / "merflow")


def weights_path(model: str) -> Path:
    """``$MERFLOW_CACHE/musicnn/<model>.safetensors`` (cache default: ~/.cache/merflow)."""
    if model not in MODELS:
        raise ConfigError(f"unknown musicnn model {model!r}: choose one of {', '.join(MODELS)}")
    return cache_dir() / "musicnn" / f"{model}.safetensors"


def is_cached(model: str) -> bool:
    return weights_path(model).is_file()


def cached_card() -> dict:
    """The card of the cached weights ({} when there is none or it is damaged: fetch again)."""
    try:
        return json.loads((cache_dir() / "musicnn" / CARD).read_text())
    except (OSError, ValueError):
        return {}
