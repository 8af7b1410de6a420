"""``essentia``: tonal, rhythmic and spectral descriptors of a whole clip, from Essentia.

Low-arousal quadrants hinge on harmony, mode and dissonance, which tag embeddings capture poorly;
Essentia (Bogdanov et al. 2013) computes them. It is AGPL-3.0 while merflow is MIT, so it is an
optional extra (``pip install 'merflow[essentia]'``); without it the feature is refused when the
config is read. The clip comes from merflow's own decoder, like every feature.

One pass over frames of ``frame_size`` samples every ``hop_size`` gives a spectrum, its peaks
(20 Hz-5 kHz, by frequency) and, per frame, the 12-bin HPCP of the whitened peaks (as in
Essentia's KeyExtractor: without whitening, loud low notes tip keys to the subdominant),
dissonance, inharmonicity (frames with a pitch only), spectral centroid (Hz), flux, 85 %
roll-off (Hz) and flatness. From these:

* ``key_<profile>_tonic`` (pitch class, C = 0: a label, not a quantity), ``_major`` (1 major,
  0 minor) and ``_strength`` (0: no key) of the mean HPCP, for each of ``key_profiles``;
* ``hpcp_<pitch class>_mean`` / ``_std`` (A, Bb, ..., Ab: Essentia's order from 440 Hz);
* ``chords_histogram_00..23`` (per cent of frames; bins step along the circle of fifths,
  major and relative minor chords interleaved, from the chord of the key of the first profile),
  ``chords_changes_rate`` and ``chords_number_rate``;
* ``<descriptor>_mean`` / ``_std`` of the frame descriptors above;
* ``dynamic_complexity`` and ``loudness_db`` (Essentia's DynamicComplexity), ``onset_rate``
  (onsets per second: HFC and complex-domain detection at Essentia's 86 frames per second,
  whatever the sample rate) and ``bpm`` (Percival & Tzanetakis 2014).

Silence gives defined values: key strength 0, rates and tempo 0, flatness 1, and 0 for
inharmonicity when no frame has a pitch.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from merflow.errors import ConfigError
from merflow.features import params as check
from merflow.features.clip import DecodedClip
from merflow.features.spec import FeatureSpec

SAMPLE_RATES = (44100, 22050)  # Essentia's onset detection is tuned to 44.1 kHz / 512
ONSET_FRAME_RATE = 44100 / 512
KEY_PROFILES = ("temperley", "krumhansl", "edma", "edmm", "bgate", "braw", "shaath", "diatonic")
PITCH_CLASSES = ("A", "Bb", "B", "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab")
TONIC = {name: (i - 3) % 12 for i, name in enumerate(PITCH_CLASSES)} | {
    "A#": 1,
    "Db": 4,
    "D#": 6,
    "Gb": 9,
    "G#": 11,
}
FRAME_DESCRIPTORS = (
    "dissonance",
    "inharmonicity",
    "spectral_centroid",
    "spectral_flux",
    "spectral_rolloff",
    "spectral_flatness",
)
CHORD_BINS = 24
ESSENTIA_DEFAULTS: dict[str, Any] = {
    "sample_rate": 44100,
    "frame_size": 2048,
    "hop_size": 1024,  # Essentia's chord detection assumes frames of twice the hop
    "key_profiles": ["temperley", "krumhansl", "edma"],
}


def compute_essentia(clip: DecodedClip, params: dict[str, Any]) -> np.ndarray:
    """``(1, n_columns)``: the descriptors of the module doc, in :func:`essentia_columns` order."""
    signal = clip.padded_to(params["frame_size"])
    frames = frame_descriptors(signal, clip.sample_rate, params)
    keys = [key(frames["hpcp"].mean(0), profile) for profile in params["key_profiles"]]
    first_key, first_scale = keys[0][:2]
    values = [
        *(value for found in keys for value in found[2]),
        *frames["hpcp"].mean(0),
        *frames["hpcp"].std(0),
        *chord_descriptors(frames["hpcp"], first_key, first_scale, clip, params["hop_size"]),
        *(stat for name in FRAME_DESCRIPTORS for stat in _mean_std(frames[name])),
        *_standard().DynamicComplexity(sampleRate=clip.sample_rate)(signal),
        onset_rate(signal, clip.sample_rate),
        _standard().PercivalBpmEstimator(sampleRate=clip.sample_rate)(signal),
    ]
    return np.asarray(values, dtype=np.float32)[None]


def frame_descriptors(signal: np.ndarray, sample_rate: int, params: dict) -> dict[str, np.ndarray]:
    """Per-frame HPCP ``(n_frames, 12)`` and the :data:`FRAME_DESCRIPTORS` (1-D each)."""
    es = _standard()
    analyse = _frame_analysis(sample_rate, params["frame_size"])
    frames = es.FrameGenerator(
        signal, frameSize=params["frame_size"], hopSize=params["hop_size"], startFromZero=True
    )
    rows = [analyse(frame) for frame in frames]
    return {
        name: np.array([r[name] for r in rows if name in r])
        for name in ("hpcp", *FRAME_DESCRIPTORS)
    }


def _frame_analysis(sample_rate: int, frame_size: int):
    """The per-frame analysis: a function of one frame to ``{descriptor: value}``. Built per
    clip: flux remembers the previous spectrum."""
    es = _standard()
    window, spectrum = es.Windowing(type="hann", size=frame_size), es.Spectrum(size=frame_size)
    peaks = es.SpectralPeaks(
        orderBy="frequency",  # Dissonance refuses peaks by magnitude
        minFrequency=20,
        maxFrequency=5000,
        maxPeaks=100,
        magnitudeThreshold=1e-5,
        sampleRate=sample_rate,
    )
    hpcp, inharmonicity = _hpcp(sample_rate), _inharmonicity(sample_rate, frame_size)
    dissonance, centroid, flux = es.Dissonance(), es.Centroid(range=sample_rate / 2), es.Flux()
    rolloff, flatness = es.RollOff(sampleRate=sample_rate), es.Flatness()

    def analyse(frame: np.ndarray) -> dict[str, Any]:
        magnitudes = spectrum(window(frame))
        frequencies, heights = peaks(magnitudes)
        found = {
            "hpcp": hpcp(magnitudes, frequencies, heights),
            "dissonance": dissonance(frequencies, heights) if len(frequencies) else 0.0,
            "spectral_centroid": centroid(magnitudes),
            "spectral_flux": flux(magnitudes),
            "spectral_rolloff": rolloff(magnitudes),
            "spectral_flatness": flatness(magnitudes) if magnitudes.any() else 1.0,
        }
        value = inharmonicity(magnitudes, frequencies, heights)
        return found if value is None else found | {"inharmonicity": value}

    return analyse


def _hpcp(sample_rate: int):
    """HPCP of one frame's whitened peaks (whitening keeps loud bass notes from tipping the
    key to the subdominant, as in Essentia's KeyExtractor)."""
    es = _standard()
    whitening = es.SpectralWhitening(maxFrequency=5000, sampleRate=sample_rate)
    hpcp = es.HPCP(
        size=12,
        sampleRate=sample_rate,
        bandPreset=False,
        minFrequency=25,
        maxFrequency=3500,
        weightType="cosine",
        nonLinear=False,
        windowSize=1.0,
    )
    return lambda spectrum, frequencies, heights: hpcp(
        frequencies, whitening(spectrum, frequencies, heights)
    )


def _inharmonicity(sample_rate: int, frame_size: int):
    """Inharmonicity of one frame's harmonic peaks; None for a frame without a pitch."""
    es = _standard()
    pitch = es.PitchYinFFT(frameSize=frame_size, sampleRate=sample_rate)
    harmonic_peaks, inharmonicity = es.HarmonicPeaks(), es.Inharmonicity()

    def measure(spectrum, frequencies, heights) -> float | None:
        f0, nonzero = pitch(spectrum)[0], frequencies > 0
        if f0 <= 0 or not nonzero.any():
            return None
        harmonics = harmonic_peaks(frequencies[nonzero], heights[nonzero], f0)
        return inharmonicity(*harmonics) if len(harmonics[0]) and harmonics[0][0] > 0 else None

    return measure


def key(mean_hpcp: np.ndarray, profile: str) -> tuple[str, str, list[float]]:
    """``(key, scale, [tonic pitch class, 1 if major else 0, strength])`` by one key profile."""
    name, scale, strength, _ = _standard().Key(profileType=profile, pcpSize=12)(mean_hpcp)
    return name, scale, [float(TONIC[name]), float(scale == "major"), float(strength)]


def chord_descriptors(
    hpcp: np.ndarray, key_name: str, scale: str, clip: DecodedClip, hop: int
) -> list[float]:
    """The chords histogram (:data:`CHORD_BINS`), changes rate and number rate."""
    es = _standard()
    detect = es.ChordsDetection(hopSize=hop, sampleRate=clip.sample_rate)
    chords, _ = detect(hpcp.astype(np.float32))
    histogram, number_rate, changes_rate, _, _ = es.ChordsDescriptors()(chords, key_name, scale)
    return [*histogram, changes_rate, number_rate]


def onset_rate(signal: np.ndarray, sample_rate: int) -> float:
    """Onsets per second, at the frame rate Essentia's onset picking is tuned to."""
    es = _standard()
    hop = round(sample_rate / ONSET_FRAME_RATE)
    fft, polar, window = es.FFT(size=2 * hop), es.CartesianToPolar(), es.Windowing(size=2 * hop)
    hfc = es.OnsetDetection(method="hfc", sampleRate=sample_rate)
    complex_domain = es.OnsetDetection(method="complex", sampleRate=sample_rate)
    detections = []
    for frame in es.FrameGenerator(signal, frameSize=2 * hop, hopSize=hop):
        magnitudes, phase = polar(fft(window(frame)))
        detections.append([hfc(magnitudes, phase), complex_domain(magnitudes, phase)])
    matrix = np.ascontiguousarray(np.array(detections, dtype=np.float32).T)
    onsets = es.Onsets(frameRate=sample_rate / hop)(matrix, [1.0, 1.0])
    return len(onsets) / (len(signal) / sample_rate)


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return (float(values.mean()), float(values.std())) if len(values) else (0.0, 0.0)


@functools.cache
def _standard():
    """``essentia.standard``, imported once and quietly; the extra's name if it is missing."""
    from merflow.features.registry import require_installed

    require_installed(ESSENTIA.name)
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard

    return essentia.standard


def essentia_columns(params: dict[str, Any]) -> list[str]:
    keys = [
        f"key_{p}_{part}" for p in params["key_profiles"] for part in ("tonic", "major", "strength")
    ]
    return [
        *keys,
        *(f"hpcp_{pitch}_mean" for pitch in PITCH_CLASSES),
        *(f"hpcp_{pitch}_std" for pitch in PITCH_CLASSES),
        *(f"chords_histogram_{i:02d}" for i in range(CHORD_BINS)),
        "chords_changes_rate",
        "chords_number_rate",
        *(f"{name}_{stat}" for name in FRAME_DESCRIPTORS for stat in ("mean", "std")),
        "dynamic_complexity",
        "loudness_db",
        "onset_rate",
        "bpm",
    ]


def check_essentia(params: dict[str, Any]) -> None:
    rate = params["sample_rate"]
    if type(rate) is not int or rate not in SAMPLE_RATES:
        raise ConfigError(
            f"config error: features.essentia.sample_rate = {rate!r}; expected "
            "44100 or 22050 (Essentia's onset detection is tuned to 44.1 kHz and its half)"
        )
    check.power_of_two("essentia", params, "frame_size", 512, 16384, "23 ms to 0.4 s at 44.1 kHz")
    check.int_in_range(
        "essentia", params, "hop_size", 1, params["frame_size"], "at most frame_size"
    )
    profiles = params["key_profiles"]
    if (
        not isinstance(profiles, list)
        or not profiles
        or any(p not in KEY_PROFILES for p in profiles)
        or len(set(profiles)) != len(profiles)
    ):
        raise ConfigError(
            f"config error: features.essentia.key_profiles = {profiles!r}; expected a non-empty "
            f"list of distinct items of {list(KEY_PROFILES)}"
        )


ESSENTIA = FeatureSpec(
    name="essentia",
    kind="clip",
    label="Essentia tonal, rhythm and spectral descriptors",
    defaults=ESSENTIA_DEFAULTS,
    compute=compute_essentia,
    columns=essentia_columns,
    check=check_essentia,
    needs="essentia",
    description="Essentia key, HPCP, chords, dissonance, dynamics, onsets, tempo, spectrum",
)
