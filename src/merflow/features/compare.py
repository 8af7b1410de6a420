"""``compare_500ms``: the MediaEval Emotion-in-Music baseline features (Malik's 260).

openSMILE's ComParE_2016 low-level descriptors (65, on 60 ms frames every 10 ms) and their first
deltas (65) come from ONE openSMILE pass (``feature_level='lld;lld_de'``, docs/facts.md) over the
clip already decoded in memory (``process_signal``: no second decode). Each descriptor's mean and
standard deviation over every 500 ms window give the 260 columns, in this fixed order: descriptor
by descriptor as openSMILE emits them (the 65 LLDs of :data:`COMPARE_LLDS`, then their 65 deltas),
each as ``<name>_mean`` then ``<name>_std`` -- ``F0final_sma_mean``, ``F0final_sma_std``,
``voicingFinalUnclipped_sma_mean``, ..., ``mfcc_sma_de[14]_std``.

Frames are pooled by their centre time (``start + 30 ms``), never by row count: at 22.05 kHz the
hop is 221 samples (10.023 ms), so 50 rows are not 500 ms. The LLD-delta output repeats the start
time of its last frame(s); repeated rows are dropped before pooling. Clips shorter than one window
are zero-padded to one window, so no window is empty and nothing is NaN.

``compare_functionals`` (one row per clip) is openSMILE's own clip-level set, chosen by
``feature_set``: ``ComParE_2016`` (6,373 functionals of the LLDs above: means, moments,
percentiles, slopes, ...) or ``eGeMAPSv02`` (88, the extended Geneva minimalistic set), in the
order and under the names openSMILE gives them. Clips shorter than :data:`MIN_FUNCTIONALS_S`
are zero-padded to it: openSMILE fills shorter ones with NaN.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from merflow.errors import MerflowError
from merflow.features import params as check
from merflow.features.clip import DecodedClip
from merflow.features.spec import FeatureSpec
from merflow.features.windows import WINDOW_S, min_samples, n_windows, pool_windows, pooled_names

if TYPE_CHECKING:
    import opensmile

FRAME_S = 0.060  # ComParE_2016 LLD frame length; frames start every 10 ms (rounded to samples)
CONFIG_RELATIVE_PATH = ("core", "config", "compare", "ComParE_2016.conf")

COMPARE_LLDS: tuple[str, ...] = (
    "F0final_sma",
    "voicingFinalUnclipped_sma",
    "jitterLocal_sma",
    "jitterDDP_sma",
    "shimmerLocal_sma",
    "logHNR_sma",
    "audspec_lengthL1norm_sma",
    "audspecRasta_lengthL1norm_sma",
    "pcm_RMSenergy_sma",
    "pcm_zcr_sma",
    *(f"audSpec_Rfilt_sma[{band}]" for band in range(26)),
    "pcm_fftMag_fband250-650_sma",
    "pcm_fftMag_fband1000-4000_sma",
    "pcm_fftMag_spectralRollOff25.0_sma",
    "pcm_fftMag_spectralRollOff50.0_sma",
    "pcm_fftMag_spectralRollOff75.0_sma",
    "pcm_fftMag_spectralRollOff90.0_sma",
    "pcm_fftMag_spectralFlux_sma",
    "pcm_fftMag_spectralCentroid_sma",
    "pcm_fftMag_spectralEntropy_sma",
    "pcm_fftMag_spectralVariance_sma",
    "pcm_fftMag_spectralSkewness_sma",
    "pcm_fftMag_spectralKurtosis_sma",
    "pcm_fftMag_spectralSlope_sma",
    "pcm_fftMag_psySharpness_sma",
    "pcm_fftMag_spectralHarmonicity_sma",
    *(f"mfcc_sma[{coefficient}]" for coefficient in range(1, 15)),
)


def delta_name(lld: str) -> str:
    """openSMILE's name for the delta of an LLD: ``mfcc_sma[1]`` -> ``mfcc_sma_de[1]``."""
    stem, bracket, index = lld.partition("[")
    return f"{stem}_de{bracket}{index}"


COMPARE_DESCRIPTORS: tuple[str, ...] = (*COMPARE_LLDS, *map(delta_name, COMPARE_LLDS))

FUNCTIONAL_SETS = ("ComParE_2016", "eGeMAPSv02")
MIN_FUNCTIONALS_S = 0.5
FUNCTIONALS_DEFAULTS: dict[str, Any] = {"sample_rate": 22050, "feature_set": "ComParE_2016"}

COMPARE_DEFAULTS: dict[str, Any] = {
    "sample_rate": 22050,
    "window_s": WINDOW_S,
    "stats": ["mean", "std"],
}


@functools.cache
def smile() -> opensmile.Smile:
    """The process's one openSMILE extractor (construction costs ~0.3 s: build it once)."""
    import os

    import opensmile

    config = os.path.join(os.path.dirname(opensmile.__file__), *CONFIG_RELATIVE_PATH)
    extractor = opensmile.Smile(feature_set=config, feature_level="lld;lld_de")
    if tuple(extractor.feature_names) != COMPARE_DESCRIPTORS:
        raise MerflowError(
            f"openSMILE {opensmile.__version__} names the ComParE_2016 descriptors differently "
            "from merflow.features.compare.COMPARE_LLDS; install the opensmile version pinned "
            "in pyproject.toml"
        )
    return extractor


def lld_frames(signal: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre times (s) and ``(n_frames, 130)`` LLD + delta values of one signal."""
    frame = smile().process_signal(signal, sample_rate)
    starts = frame.index.get_level_values("start")
    first = ~starts.duplicated()  # the delta pass repeats its last start time(s): keep the first
    centres_s = starts[first].total_seconds().to_numpy() + FRAME_S / 2
    return centres_s, frame.to_numpy(dtype=np.float64)[first]


def compute_compare_500ms(clip: DecodedClip, params: dict[str, Any]) -> np.ndarray:
    window_s = params["window_s"]
    signal = clip.padded_to(min_samples(clip.sample_rate, window_s))
    centres_s, values = lld_frames(signal, clip.sample_rate)
    count = n_windows(clip.duration_s, window_s)
    return pool_windows(values, centres_s, count, window_s, params["stats"])


def compare_500ms_columns(params: dict[str, Any]) -> list[str]:
    return pooled_names(COMPARE_DESCRIPTORS, params["stats"])


def check_compare_500ms(params: dict[str, Any]) -> None:
    check.positive_int("compare_500ms", params, "sample_rate")
    # A window must hold at least one whole 60 ms frame, or padding one window would not do.
    check.positive_number("compare_500ms", params, "window_s", minimum=FRAME_S)
    check.stats("compare_500ms", params)


@functools.cache
def functionals_smile(feature_set: str) -> opensmile.Smile:
    """The process's openSMILE extractor of one functionals set (build once: ~0.4 s)."""
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet[feature_set],
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def compute_compare_functionals(clip: DecodedClip, params: dict[str, Any]) -> np.ndarray:
    signal = clip.padded_to(round(MIN_FUNCTIONALS_S * clip.sample_rate))
    frame = functionals_smile(params["feature_set"]).process_signal(signal, clip.sample_rate)
    return frame.to_numpy(dtype=np.float32)


def compare_functionals_columns(params: dict[str, Any]) -> list[str]:
    return list(functionals_smile(params["feature_set"]).feature_names)


def check_compare_functionals(params: dict[str, Any]) -> None:
    check.positive_int("compare_functionals", params, "sample_rate")
    check.choice("compare_functionals", params, "feature_set", FUNCTIONAL_SETS)


COMPARE_500MS = FeatureSpec(
    name="compare_500ms",
    kind="windows",
    label="260 baseline features",
    malik_table="a",
    defaults=COMPARE_DEFAULTS,
    compute=compute_compare_500ms,
    columns=compare_500ms_columns,
    check=check_compare_500ms,
    description="ComParE 2016 LLDs + deltas, mean and std per 500 ms (MediaEval baseline)",
)
COMPARE_FUNCTIONALS = FeatureSpec(
    name="compare_functionals",
    kind="clip",
    label="openSMILE functionals of the clip",
    defaults=FUNCTIONALS_DEFAULTS,
    compute=compute_compare_functionals,
    columns=compare_functionals_columns,
    check=check_compare_functionals,
    description="openSMILE ComParE_2016 (6,373) or eGeMAPSv02 (88) functionals per clip",
)
