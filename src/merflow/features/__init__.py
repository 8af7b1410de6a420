"""The feature stage: decoded audio -> Parquet feature tables (docs/tables.md).

Three features, computed from one decode of each clip:

* ``logmel`` -- frame-level log-mel spectrogram of fixed size (Velankar), :mod:`.logmel`;
* ``logmel_500ms`` -- log mel-band energies pooled over 500 ms windows (Malik), :mod:`.logmel`;
* ``compare_500ms`` -- openSMILE ComParE_2016 LLDs + deltas, mean and std per 500 ms: the 260
  MediaEval baseline features, :mod:`.compare`.

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
