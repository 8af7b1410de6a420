"""The clip-level descriptor features: ``essentia`` (an optional extra) and
``compare_functionals`` (openSMILE's clip functionals), on signals made here."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from workflow_utils import TINY, run_snakemake

from merflow import audio
from merflow.config import validate
from merflow.errors import ConfigError
from merflow.features import columns, compute_clip, extract_shard

RATE = 44100
C_MAJOR = [[48, 60, 64, 67], [53, 60, 65, 69], [55, 59, 62, 67], [48, 60, 64, 67]]  # I IV V I
A_MINOR = [[45, 57, 60, 64], [50, 57, 62, 65], [52, 56, 59, 64], [45, 57, 60, 64]]  # i iv V i
NEEDS_ESSENTIA = "the essentia extra is not installed (pip install 'merflow[essentia]')"


def chord(midi_notes: list[int], seconds: float, rate: int = RATE) -> np.ndarray:
    """Harmonic tones (5 partials, amplitude 1/h) with short fades, as a piano-ish chord."""
    t = np.arange(int(seconds * rate)) / rate
    frequencies = [440 * 2 ** ((m - 69) / 12) * h for m in midi_notes for h in range(1, 6)]
    amplitudes = [1 / h for _ in midi_notes for h in range(1, 6)]
    tone = sum(a * np.sin(2 * np.pi * f * t) for f, a in zip(frequencies, amplitudes, strict=True))
    fade = np.minimum(1, np.minimum(t / 0.02, (seconds - t) / 0.05))
    return (0.05 * tone * fade).astype(np.float32)


def cadence(chords: list[list[int]], rate: int = RATE) -> np.ndarray:
    return np.concatenate([chord(c, 1.0, rate) for _ in range(3) for c in chords])


def click_track(bpm: float, seconds: float, rate: int = RATE) -> np.ndarray:
    signal = np.zeros(int(seconds * rate), np.float32)
    click = np.sin(2 * np.pi * 1000 * np.arange(441) / rate) * np.exp(-np.arange(441) / 150)
    for beat in np.arange(0, seconds - 0.02, 60 / bpm):
        start = int(beat * rate)
        signal[start : start + len(click)] += click.astype(np.float32)
    return signal


def essentia_values(signal: np.ndarray, **params) -> dict[str, float]:
    names = columns("essentia", {**_essentia_defaults(), **params})
    return dict(zip(names, compute_clip("essentia", signal, params)[0], strict=True))


def _essentia_defaults() -> dict:
    from merflow.features.registry import default_params

    return default_params("essentia")


def clips_table(*paths) -> pd.DataFrame:
    return pd.DataFrame({"clip_id": [p.stem for p in paths], "path": [str(p) for p in paths]})


# --- essentia -------------------------------------------------------------------------------


@pytest.mark.parametrize(("chords", "tonic", "major"), [(C_MAJOR, 0, 1), (A_MINOR, 9, 0)])
def test_a_cadence_has_its_key_and_scale_by_every_profile(chords, tonic, major):
    pytest.importorskip("essentia", reason=NEEDS_ESSENTIA)
    values = essentia_values(cadence(chords))
    for profile in ("temperley", "krumhansl", "edma"):
        assert values[f"key_{profile}_tonic"] == tonic, profile
        assert values[f"key_{profile}_major"] == major, profile
        assert values[f"key_{profile}_strength"] > 0.5, profile


def test_the_key_holds_at_22050_hz_and_with_other_profiles():
    pytest.importorskip("essentia", reason=NEEDS_ESSENTIA)
    values = essentia_values(
        cadence(C_MAJOR, 22050), sample_rate=22050, key_profiles=["bgate", "shaath"]
    )
    assert [values["key_bgate_tonic"], values["key_shaath_tonic"]] == [0, 0]
    assert "key_temperley_tonic" not in values


def test_a_click_track_at_120_bpm_has_tempo_120_and_two_onsets_a_second():
    pytest.importorskip("essentia", reason=NEEDS_ESSENTIA)
    values = essentia_values(click_track(120, 20))
    assert values["bpm"] == pytest.approx(120, abs=2)
    assert values["onset_rate"] == pytest.approx(2, abs=0.2)


def test_silence_gives_defined_values_in_the_table(tmp_path):
    pytest.importorskip("essentia", reason=NEEDS_ESSENTIA)
    sf.write(tmp_path / "silence.wav", np.zeros(3 * RATE, np.float32), RATE)
    sf.write(tmp_path / "blip.wav", np.zeros(50, np.float32), RATE)  # shorter than a frame
    table, quarantined = extract_shard(
        clips_table(tmp_path / "silence.wav", tmp_path / "blip.wav"), "essentia", {}
    )
    frame = table.to_pandas().set_index("clip_id")
    assert quarantined == [] and list(frame.index) == ["silence", "blip"]
    assert np.isfinite(frame.to_numpy()).all()
    assert (frame[["key_temperley_strength", "bpm", "onset_rate"]] == 0).all().all()


def test_the_columns_are_the_computed_values_in_order():
    pytest.importorskip("essentia", reason=NEEDS_ESSENTIA)
    signal = cadence(C_MAJOR)[: 2 * RATE]
    for params in ({}, {"key_profiles": ["edma"], "frame_size": 4096, "hop_size": 2048}):
        names = columns("essentia", {**_essentia_defaults(), **params})
        assert compute_clip("essentia", signal, params).shape == (1, len(names))
        assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sample_rate": 16000}, "44100 or 22050"),
        ({"frame_size": 3000}, "power of two"),
        ({"hop_size": 4096}, "at most frame_size"),
        ({"key_profiles": ["temperley", "nope"]}, "distinct items of"),
        ({"key_profiles": []}, "non-empty list"),
    ],
)
def test_bad_essentia_parameters_are_refused_naming_the_key(params, message):
    config = _config("essentia", {"essentia": params})
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_without_essentia_the_feature_is_refused_when_the_config_is_read(monkeypatch):
    monkeypatch.setitem(sys.modules, "essentia", None)  # as if it were not installed
    with pytest.raises(ConfigError) as refused:
        validate(_config("essentia"))
    message = str(refused.value)
    assert "experiment 'mine'" in message and "pip install 'merflow[essentia]'" in message
    assert message.count(". ") == 0  # one sentence
    validate(_config("compare_functionals"))  # the other features need nothing more


def test_without_essentia_computing_the_feature_names_the_extra(monkeypatch, tmp_path):
    from merflow.features import essentia_descriptors

    monkeypatch.setitem(sys.modules, "essentia", None)
    essentia_descriptors._standard.cache_clear()
    sf.write(tmp_path / "a.wav", np.zeros(RATE, np.float32), RATE)
    try:
        with pytest.raises(ConfigError, match=r"pip install 'merflow\[essentia\]'"):
            extract_shard(clips_table(tmp_path / "a.wav"), "essentia", {})
    finally:
        essentia_descriptors._standard.cache_clear()


def _config(feature: str, features: dict | None = None) -> dict:
    experiment = {"dataset": "tiny", "features": [feature], "models": ["logistic"], "seeds": [0]}
    return {
        "datasets": copy.deepcopy(TINY["datasets"]),
        "features": features or {},
        "experiments": {"mine": experiment},
    }


# --- compare_functionals --------------------------------------------------------------------


@pytest.mark.parametrize(("feature_set", "count"), [("ComParE_2016", 6373), ("eGeMAPSv02", 88)])
def test_functionals_equal_a_direct_opensmile_call_on_the_decoded_clip(
    feature_set, count, shared_data, tmp_path
):
    import opensmile

    source = sorted((shared_data / "4q-sample").rglob("*.mp3"))[0]
    cut = tmp_path / "cut.flac"  # 6 s of a real clip, re-encoded
    sf.write(cut, *_first_seconds(source, 6.0))
    params = {"feature_set": feature_set}
    table, quarantined = extract_shard(clips_table(cut), "compare_functionals", params)
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet[feature_set],
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    direct = smile.process_signal(audio.load(cut, 22050), 22050)
    assert quarantined == [] and table.num_columns == 1 + count
    assert table.column_names[1:] == list(direct.columns)
    ours = table.to_pandas().drop(columns="clip_id").to_numpy()
    np.testing.assert_allclose(ours, direct.to_numpy(np.float32), rtol=1e-6)


def _first_seconds(path, seconds: float) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, frames=int(seconds * sf.info(path).samplerate), dtype="float32")
    return data, rate


def test_a_clip_shorter_than_openSMILE_frames_gives_finite_functionals():
    values = compute_clip("compare_functionals", np.zeros(800, np.float32), {})
    assert values.shape == (1, 6373) and np.isfinite(values).all()


def test_an_unknown_functionals_set_is_refused_naming_the_sets():
    with pytest.raises(ConfigError, match="ComParE_2016, eGeMAPSv02"):
        validate(_config("compare_functionals", {"compare_functionals": {"feature_set": "IS09"}}))


# --- through the workflow -------------------------------------------------------------------


@pytest.mark.slow
def test_the_clip_heads_train_on_both_descriptor_features(tmp_path):
    pytest.importorskip("essentia", reason=NEEDS_ESSENTIA)
    experiment = {
        "dataset": "tiny",
        "features": ["essentia", "compare_functionals"],
        "models": ["logistic", "svm"],
        "seeds": [0],
        "split": {"method": "holdout", "test_fraction": 0.25, "val_fraction": 0.2},
    }
    config = {
        "datasets": {"tiny": {**TINY["datasets"]["tiny"], "duration_s": 4.0}},
        "features": {"shards": 1, "compare_functionals": {"feature_set": "eGeMAPSv02"}},
        "experiments": {"descriptors": experiment},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = run_snakemake(tmp_path, configfile=tmp_path / "c.yaml")
    assert out.returncode == 0, out.stderr[-4000:]
    summary = pd.read_csv(tmp_path / "results/tiny/descriptors/report/summary.csv")
    assert {"essentia", "compare_functionals"} <= set(summary["feature"])
    assert {"logistic", "svm"} <= set(summary["model"])
