"""A fitted model's ``baseline.npz``, whichever kind wrote it: a baseline
(:mod:`merflow.learn.baselines`) or late-fused views (:class:`merflow.learn.fusion.LateFusion`).
"""

from __future__ import annotations

import os
from pathlib import Path

from merflow import runs
from merflow.errors import ConfigError
from merflow.learn.baselines import Baseline, from_weights
from merflow.learn.fusion import LateFusion


def load(path: str | os.PathLike, fix: str = runs.RETRAIN) -> Baseline:
    """The fitted model stored in ``path``; a damaged or foreign file names ``fix``."""
    weights = runs.load_arrays(path, fix)
    try:
        name = str(weights.pop("baseline"))
        if "fusion" in weights:
            return LateFusion.from_weights(name, weights)
        return from_weights(name, weights)
    except (KeyError, TypeError, ConfigError) as exc:
        raise runs.damaged(Path(path), exc, fix) from None
