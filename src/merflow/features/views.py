"""Fused views: several clip-level features learnt from together.

An experiment lists a fused entry as a list in ``features:`` (``features: [musicnn, [musicnn,
essentia]]``); its name, used in run folders and feature tables, is its views joined by ``+``
(``musicnn+essentia``). The workflow joins the views' tables into one clip-level table
(:func:`join`: columns ``<view>:<column>``, the clips every view has), so a change to one view
re-runs exactly the runs that fuse it. How the views are fused is the experiment's ``fusion:``
(:data:`FUSION_DEFAULTS`; :mod:`merflow.learn.fusion` does it).

Importing this module is cheap (no pyarrow): the Snakefile names features through it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from merflow.errors import ConfigError, DatasetError
from merflow.features.registry import FEATURES

SEPARATOR = "+"
COLUMN_SEPARATOR = ":"
FUSABLE_KIND = "clip"
FUSION_DEFAULTS: dict[str, Any] = {
    "method": "early",  # early: z-score each view, concatenate | late: one head per view
    "select": None,  # early: null | anova (top-k by F-value) | l1 (L1 logistic's non-zeros)
    "k": 100,  # anova: columns kept
    "l1_C": 0.1,  # l1: the inverse regularization strength of the selecting logistic regression
    "combine": "average",  # late: the mean of the views' class probabilities | stack (logistic)
    "inner_folds": 5,  # late, stack: folds of the training part the stacker learns from
}
SELECT_LABELS = {"anova": "ANOVA top-{k}", "l1": "L1 selection, C {l1_C:g}"}


def name(entry: str | Sequence[str]) -> str:
    """The feature name of an entry of ``features:``: a feature's own, or ``a+b`` for views."""
    return entry if isinstance(entry, str) else SEPARATOR.join(entry)


def names(experiment: dict) -> list[str]:
    """The feature names of an experiment's ``features:`` list, in its order."""
    return [name(entry) for entry in experiment["features"]]


def views(feature: str) -> list[str]:
    """The features a (fused) feature is made of: itself, or each of its views."""
    return feature.split(SEPARATOR)


def is_fused(feature: str) -> bool:
    return SEPARATOR in feature


def kind(feature: str) -> str:
    """A feature's kind (``windows``, ``frames``, ``clip``); a fused one's is ``clip``."""
    return FUSABLE_KIND if is_fused(feature) else FEATURES[feature].kind


def check(experiment_name: str, feature: str) -> None:
    """Only clip-level features can be fused (one vector a clip to stand side by side)."""
    wrong = [v for v in views(feature) if FEATURES[v].kind != FUSABLE_KIND]
    if wrong:
        clip_level = [n for n, f in FEATURES.items() if f.kind == FUSABLE_KIND]
        raise ConfigError(
            f"config error: experiment '{experiment_name}' fuses {', '.join(wrong)} "
            f"({', '.join(FEATURES[v].kind for v in wrong)}) in '{feature}'; only clip-level "
            f"features can be fused: {', '.join(clip_level)}"
        )


def settings(experiment: dict) -> dict[str, Any]:
    """The experiment's ``fusion:`` with the defaults filled in."""
    return FUSION_DEFAULTS | experiment.get("fusion", {})


def describe(feature: str, fusion: dict[str, Any] | None) -> str:
    """How reports name a feature: ``musicnn + essentia (early fusion, ANOVA top-100)``."""
    if not is_fused(feature):
        return feature
    s = FUSION_DEFAULTS | (fusion or {})
    if s["method"] == "early":
        detail = SELECT_LABELS[s["select"]].format(**s) if s["select"] else "all columns"
    else:
        detail = "probabilities averaged" if s["combine"] == "average" else "stacked by a logistic"
    return f"{' + '.join(views(feature))} ({s['method']} fusion, {detail})"


def wildcard() -> str:
    """The regular expression of feature names, fused ones included (a rule's constraint)."""
    one = "|".join(FEATURES)
    return rf"(?:{one})(?:\{SEPARATOR}(?:{one}))*"


def fused_wildcard() -> str:
    """Fused names only: at least two views."""
    one = "|".join(FEATURES)
    return rf"(?:{one})(?:\{SEPARATOR}(?:{one}))+"


def join(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> int:
    """Write the clip-level table of the views in ``paths`` (in that order) to ``out``: the
    clips every view has (a clip missing from one view is in that view's quarantine), columns
    ``<view>:<column>``; the metadata says where each view's columns are. Returns the clips."""
    import numpy as np
    import pyarrow as pa

    from merflow.io import write_table
    from merflow.tables import metadata_of, read_table

    metas = [metadata_of(p, FUSABLE_KIND) for p in paths]
    for path, meta in zip(paths, metas, strict=True):
        if meta.get("kind") != FUSABLE_KIND or not meta.get("columns"):
            raise DatasetError(
                f"{path}: not a clip-level feature table (kind {meta.get('kind')!r}); only "
                "clip-level features can be fused; re-run its features stage"
            )
    tables = [
        read_table(path, FUSABLE_KIND, ["clip_id", *meta["columns"]])
        for path, meta in zip(paths, metas, strict=True)
    ]
    common = sorted(set.intersection(*(set(t.column("clip_id").to_pylist()) for t in tables)))
    arrays, columns, widths = [pa.array(common, pa.string())], [], []
    for table, meta in zip(tables, metas, strict=True):
        ids = np.asarray(table.column("clip_id").to_pylist())
        order = np.argsort(ids)
        picked = table.take(pa.array(order[np.searchsorted(ids, common, sorter=order)]))
        for column in meta["columns"]:
            columns.append(f"{meta['feature']}{COLUMN_SEPARATOR}{column}")
            arrays.append(picked.column(column).combine_chunks())
        widths.append([meta["feature"], len(meta["columns"])])
    fused = pa.Table.from_arrays(arrays, names=["clip_id", *columns])
    metadata = {
        "feature": SEPARATOR.join(m["feature"] for m in metas),
        "kind": FUSABLE_KIND,
        "columns": columns,
        "views": widths,
        "params": {m["feature"]: m.get("params") for m in metas},
        "sample_rate": None,
    }
    write_table(fused, out, metadata)
    return len(common)


def view_slices(metadata: dict[str, Any]) -> list[tuple[str, slice]]:
    """Each view's name and its columns in a fused table (from :func:`join`'s metadata)."""
    found, start = [], 0
    for view, width in metadata.get("views", []):
        found.append((view, slice(start, start + width)))
        start += width
    return found
