"""The feature stage: decoded audio -> Parquet feature tables (docs/tables.md).

The features are the entries of :data:`.registry.FEATURES`, the only list of them; those
computed from audio share one decode of each clip. Among them:

* ``logmel`` -- frame-level log-mel spectrogram of fixed size (Velankar), :mod:`.logmel`;
* ``logmel_500ms`` -- log mel-band energies pooled over 500 ms windows (Malik), :mod:`.logmel`;
* ``compare_500ms`` -- openSMILE ComParE_2016 LLDs + deltas, mean and std per 500 ms: the 260
  MediaEval baseline features, :mod:`.compare`;
* ``musicnn``, ``musicnn_500ms`` -- embeddings of a pretrained tagger, :mod:`.musicnn`; a user's
  own embeddings, :mod:`.imported`; DEAM's provided features, :mod:`.provided`.

The window convention is :mod:`.windows`; the registry of features and their parameters
:mod:`.registry`; shard extraction :mod:`.extract`; table layout and merge :mod:`.tables`
(read with :mod:`merflow.tables`). Importing this package does not import librosa or openSMILE.
"""

from __future__ import annotations

from merflow.features.extract import compute_all, extract_features, extract_shard
from merflow.features.registry import (
    FEATURES,
    FeatureSpec,
    columns,
    compute_clip,
    computed,
    default_params,
    resolve_params,
)
from merflow.features.tables import (
    feature_metadata,
    merge_shards,
    write_feature_table,
)

__all__ = [
    "FEATURES",
    "FeatureSpec",
    "columns",
    "compute_all",
    "compute_clip",
    "computed",
    "default_params",
    "extract_features",
    "extract_shard",
    "feature_metadata",
    "merge_shards",
    "resolve_params",
    "write_feature_table",
]
