"""Embeddings of a network pretrained on a large tagging corpus: musicnn (Pons & Serra 2019).

On datasets of a few hundred clips a small head on these embeddings learns what networks trained
from scratch cannot (docs/embeddings.md). The network is merflow's PyTorch port
(:mod:`merflow.pretrained.musicnn`), loading the weights `merflow pretrained fetch musicnn` puts
in the cache. Its input is musicnn's own: 16 kHz mono, a 96-band log-mel of 3 s patches.

* ``musicnn`` (clip): the clip's 3 s patches one after the other (musicnn's extractor cuts them
  so), each through the network, and the mean and standard deviation of the chosen ``layer``
  over the patches: one vector a clip, for the classification heads. A clip shorter than 3 s is
  one patch, padded with silence.
* ``musicnn_500ms`` (windows): for every 500 ms window, the embedding of the 3 s patch that ends
  at the window's end, on the grid of the other windowed features (docs/tables.md); the first
  windows' patches reach before the clip's start and see silence there.

``model``: ``MSD_musicnn`` (Million Song Dataset tags) or ``MTT_musicnn`` (MagnaTagATune);
``layer``: ``penultimate`` (200), ``mean_pool`` or ``max_pool`` (753), ``taggram`` (50 tags).
Inference runs batched on the GPU when the feature job has one
(:func:`merflow.devices.feature_device`), else on the CPU.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from merflow.features import params as check
from merflow.features.clip import DecodedClip
from merflow.features.spec import FeatureSpec
from merflow.features.windows import STATS, WINDOW_S, n_windows, pooled_names
from merflow.pretrained.cache import MODELS

SAMPLE_RATE = 16000  # musicnn's input rate
LAYERS = {"penultimate": 200, "mean_pool": 753, "max_pool": 753, "taggram": 50}
PATCH_S = 3.0

_COMMON: dict[str, Any] = {"model": "MSD_musicnn", "layer": "penultimate", "sample_rate": 16000}
MUSICNN_DEFAULTS: dict[str, Any] = {**_COMMON, "stats": ["mean", "std"]}
MUSICNN_500MS_DEFAULTS: dict[str, Any] = {**_COMMON, "window_s": WINDOW_S}


# The network (merflow.pretrained.musicnn) and the device choice import torch: this module is
# imported with the registry while the Snakefile parses, so the functions that run it do.


def compute_musicnn(clip: DecodedClip, params: dict[str, Any]) -> np.ndarray:
    """``(1, n_columns)``: the layer's statistics over the clip's successive 3 s patches."""
    from merflow.pretrained import musicnn

    signal = clip.padded_to(round(PATCH_S * clip.sample_rate))
    patches = musicnn.logmel_patches(signal)
    embeddings = _embed(params, patches)  # (patches, D)
    stats = {"mean": embeddings.mean(0), "std": embeddings.std(0)}
    pooled = np.stack([stats[s] for s in params["stats"]], axis=1)  # (D, stats): name by name
    return pooled.reshape(1, -1).astype(np.float32)


def compute_musicnn_500ms(clip: DecodedClip, params: dict[str, Any]) -> np.ndarray:
    """``(n_windows, D)``: the embedding of the 3 s patch ending at each window's end."""
    from merflow.pretrained import musicnn

    spectrogram = musicnn.logmel(clip.signal)  # (frames, 96); frame j is centred at j * hop
    silence = np.zeros((musicnn.PATCH_FRAMES, musicnn.N_MELS), dtype=np.float32)  # log10(1) = 0
    padded = np.concatenate([silence, spectrogram, silence])
    frames_per_s = musicnn.SAMPLE_RATE / musicnn.HOP_LENGTH
    count = n_windows(clip.duration_s, params["window_s"])
    # the patch ending at frame `end` of the spectrogram starts at `end` in `padded`
    starts = [math.ceil((k + 1) * params["window_s"] * frames_per_s) for k in range(count)]
    network = _network(params["model"], _device())
    return musicnn.predict_at(network, padded, starts)[params["layer"]].astype(np.float32)


def _embed(params: dict[str, Any], patches: np.ndarray) -> np.ndarray:
    from merflow.pretrained import musicnn

    return musicnn.predict(_network(params["model"], _device()), patches)[params["layer"]]


@functools.cache
def _network(model: str, device: str):
    """One network per process and device: loading takes a tenth of a second."""
    from merflow.pretrained import musicnn

    return musicnn.load_cached(model, device)


def _device() -> str:
    from merflow.devices import feature_device

    return feature_device()


def musicnn_columns(params: dict[str, Any]) -> list[str]:
    return pooled_names(_layer_names(params), params["stats"])


def musicnn_500ms_columns(params: dict[str, Any]) -> list[str]:
    return _layer_names(params)


def _layer_names(params: dict[str, Any]) -> list[str]:
    return [f"{params['layer']}_{i:03d}" for i in range(LAYERS[params["layer"]])]


def check_musicnn(params: dict[str, Any]) -> None:
    _check_common("musicnn", params)
    check.stats("musicnn", params)
    if set(params["stats"]) - {"mean", "std"}:
        raise check.ConfigError(
            f"config error: features.musicnn.stats = {params['stats']!r}; expected mean and/or "
            f"std (of {list(STATS)})"
        )


def check_musicnn_500ms(params: dict[str, Any]) -> None:
    _check_common("musicnn_500ms", params)
    check.positive_number("musicnn_500ms", params, "window_s")


def _check_common(feature: str, params: dict[str, Any]) -> None:
    check.choice(feature, params, "model", MODELS)
    check.choice(feature, params, "layer", tuple(LAYERS))
    check.int_in_range(feature, params, "sample_rate", SAMPLE_RATE, SAMPLE_RATE, "musicnn's input")


MUSICNN = FeatureSpec(
    name="musicnn",
    kind="clip",
    label="musicnn embedding (mean/std over 3 s patches)",
    defaults=MUSICNN_DEFAULTS,
    compute=compute_musicnn,
    columns=musicnn_columns,
    check=check_musicnn,
    pretrained="musicnn",
    description="musicnn (pretrained tagger) embeddings pooled over the clip",
)
MUSICNN_500MS = FeatureSpec(
    name="musicnn_500ms",
    kind="windows",
    label="musicnn embedding per 500 ms",
    defaults=MUSICNN_500MS_DEFAULTS,
    compute=compute_musicnn_500ms,
    columns=musicnn_500ms_columns,
    check=check_musicnn_500ms,
    pretrained="musicnn",
    description="musicnn embedding of the 3 s ending at each 500 ms window",
)
