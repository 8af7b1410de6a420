"""What the feature stage needs to know about one feature: :class:`FeatureSpec`.

Each feature module declares the spec of its features; :mod:`merflow.features.registry` lists
them. Importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from merflow.features.clip import DecodedClip

Params = dict[str, Any]


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature stage needs to know about one feature.

    ``kind`` is ``"windows"`` (one row per clip and 500 ms window; ``compute`` returns
    ``(n_windows, n_columns)``), ``"frames"`` (one fixed-size matrix per clip; ``compute``
    returns ``(n_rows, n_frames)`` and ``valid_frames`` counts the frames taken from audio) or
    ``"clip"`` (one vector per clip; ``compute`` returns ``(1, n_columns)``). ``pretrained``
    names the weights a feature needs (``merflow pretrained fetch <pretrained>``); ``needs`` the
    Python package it imports that merflow does not install by default: the optional extra of the
    same name installs it (``pip install 'merflow[<needs>]'``).
    A feature without ``compute`` comes with a dataset (``provided_by``: its adapter) instead of
    being computed from audio. ``label`` names it in reports; ``malik_table`` is the part of
    Malik et al.'s Table 1 it belongs to ("a": the 260 baseline features, "b": log-mel bands).
    """

    name: str
    kind: Literal["windows", "frames", "clip"]
    label: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    compute: Callable[[DecodedClip, Params], np.ndarray] | None = None
    columns: Callable[[Params], list[str]] = lambda params: []
    check: Callable[[Params], None] = lambda params: None
    valid_frames: Callable[[int, Params], int] | None = None
    description: str = ""
    provided_by: str | None = None
    malik_table: str | None = None
    pretrained: str | None = None
    needs: str | None = None

    @property
    def computed(self) -> bool:
        """Computed from audio by the feature stage (not provided by a dataset)."""
        return self.compute is not None
