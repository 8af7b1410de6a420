"""The feature stage: values against direct library calls, table layout, quarantine, merge."""

from __future__ import annotations

import os

import librosa
import numpy as np
import opensmile
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from merflow import audio
from merflow.errors import AudioError, ConfigError, DatasetError
from merflow.features import (
    FEATURES,
    columns,
    compute_clip,
    computed,
    default_params,
    extract_features,
    extract_shard,
    merge_shards,
    resolve_params,
    write_feature_table,
)
from merflow.features.logmel import DB_FLOOR
from merflow.io import read_metadata
from merflow.learn.data import load_windowed
from merflow.tables import read_table

SR = 22050


def _tone(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A sine with a little noise and a slow level change: non-trivial in every feature."""
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).normal(scale=0.01, size=t.size)
    level = 0.2 + 0.1 * np.sin(2 * np.pi * 0.7 * t)
    return (level * np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32)


def _direct_logmel(y: np.ndarray, n_mels: int) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=n_mels)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)


def _write_wav(folder, name: str, signal: np.ndarray, sr: int = SR) -> str:
    path = folder / name
    sf.write(path, signal, sr)
    return str(path)


# --- parameters ------------------------------------------------------------------------------


def test_registry_kinds_and_defaults():
    assert {n: s.kind for n, s in FEATURES.items()} == {
        "logmel": "frames",
        "logmel_500ms": "windows",
        "compare_500ms": "windows",
        "compare_functionals": "clip",
        "essentia": "clip",
        "musicnn": "clip",
        "musicnn_500ms": "windows",
        "embeddings": "clip",  # imported from the user's files
        "embeddings_500ms": "windows",
        "deam_opensmile": "windows",  # comes with DEAM, not computed
    }
    assert computed() == [
        "logmel",
        "logmel_500ms",
        "compare_500ms",
        "compare_functionals",
        "essentia",
        "musicnn",
        "musicnn_500ms",
    ]
    assert default_params("logmel")["n_mels"] == 128
    assert default_params("logmel")["n_frames"] == 640
    assert default_params("logmel_500ms")["n_mels"] == 64
    assert resolve_params("compare_500ms", {}) == default_params("compare_500ms")


def test_resolve_params_rejects_unknown_keys_naming_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"n_melz.*allowed: .*n_mels"):
        resolve_params("logmel", {"n_melz": 64})


@pytest.mark.parametrize(
    ("name", "overrides", "key"),
    [
        ("logmel", {"crop": "middle"}, "crop"),
        ("logmel", {"pad": "zeros"}, "pad"),
        ("logmel", {"n_frames": 0}, "n_frames"),
        ("logmel", {"n_mels": "64"}, "n_mels"),
        ("logmel", {"fmax": 20000}, "fmax"),
        ("logmel_500ms", {"stats": ["mean", "median"]}, "stats"),
        ("compare_500ms", {"window_s": 0.05}, "window_s"),
    ],
)
def test_resolve_params_rejects_bad_values(name, overrides, key):
    with pytest.raises(ConfigError, match=rf"features\.{name}\.{key}"):
        resolve_params(name, overrides)


def test_unknown_feature_is_a_config_error():
    with pytest.raises(ConfigError, match="logmel_500ms"):
        resolve_params("mfcc", {})


# --- logmel ----------------------------------------------------------------------------------


def test_logmel_default_shape_pads_with_the_silence_floor():
    y = _tone(3.0)
    out = compute_clip("logmel", y, resolve_params("logmel", {}))
    direct = _direct_logmel(y, 128)  # 130 frames
    assert out.shape == (128, 640)
    np.testing.assert_allclose(out[:, : direct.shape[1]], direct, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(out[:, direct.shape[1] :], DB_FLOOR)


@pytest.mark.parametrize(("crop", "start"), [("center", (130 - 64) // 2), ("start", 0)])
def test_logmel_crops_long_signals(crop, start):
    y = _tone(3.0)
    out = compute_clip("logmel", y, resolve_params("logmel", {"n_frames": 64, "crop": crop}))
    np.testing.assert_allclose(out, _direct_logmel(y, 128)[:, start : start + 64], atol=1e-3)


def test_logmel_pad_policies_on_a_short_signal():
    y = _tone(0.5)
    direct = _direct_logmel(y, 128)  # 22 frames
    n = direct.shape[1]
    repeat = compute_clip("logmel", y, resolve_params("logmel", {"n_frames": 50, "pad": "repeat"}))
    np.testing.assert_allclose(repeat, direct[:, np.arange(50) % n], atol=1e-3)
    edge = compute_clip("logmel", y, resolve_params("logmel", {"n_frames": 50, "pad": "edge"}))
    np.testing.assert_allclose(edge[:, n:], np.repeat(direct[:, -1:], 50 - n, axis=1), atol=1e-3)


# --- logmel_500ms ----------------------------------------------------------------------------


def test_logmel_500ms_equals_direct_mel_pooled_by_frame_centre():
    y = _tone(3.2)  # 6 whole windows; the partial 7th is dropped
    params = resolve_params("logmel_500ms", {"stats": ["mean", "std"]})
    out = compute_clip("logmel_500ms", y, params)
    direct = _direct_logmel(y, 64)
    centres = np.arange(direct.shape[1]) * 512 / SR
    expected = np.empty((6, 128))
    for k in range(6):
        frames = direct[:, (centres >= 0.5 * k) & (centres < 0.5 * (k + 1))]
        expected[k, 0::2], expected[k, 1::2] = frames.mean(1), frames.std(1)
    assert out.shape == (6, 128)
    assert columns("logmel_500ms", params)[:3] == ["mel_000_mean", "mel_000_std", "mel_001_mean"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_logmel_500ms_of_a_stepped_sine_steps_by_the_level_change():
    t = np.arange(3 * SR) / SR
    amplitude = 1e-4 * 10 ** np.floor(t / 0.5)  # +20 dB every 500 ms
    y = (amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = compute_clip("logmel_500ms", y, resolve_params("logmel_500ms", {}))
    band = out.mean(axis=0).argmax()  # the band holding 1 kHz
    np.testing.assert_allclose(np.diff(out[:, band]), 20.0, atol=1.5)


# --- compare_500ms ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opensmile_reference():
    config = os.path.join(
        os.path.dirname(opensmile.__file__), "core", "config", "compare", "ComParE_2016.conf"
    )
    return opensmile.Smile(feature_set=config, feature_level="lld;lld_de")


def test_compare_500ms_columns_follow_opensmile_names(opensmile_reference):
    names = opensmile_reference.feature_names
    expected = [f"{n}_{s}" for n in names for s in ("mean", "std")]
    got = columns("compare_500ms", default_params("compare_500ms"))
    assert got == expected
    assert len(got) == 260
    assert got[:3] == ["F0final_sma_mean", "F0final_sma_std", "voicingFinalUnclipped_sma_mean"]
    assert got[130:132] == ["F0final_sma_de_mean", "F0final_sma_de_std"]
    assert got[-1] == "mfcc_sma_de[14]_std"


def test_compare_500ms_pools_opensmile_frames_by_timestamp(opensmile_reference):
    y = _tone(3.0)
    out = compute_clip("compare_500ms", y, resolve_params("compare_500ms", {}))
    lld = opensmile_reference.process_signal(y, SR)
    starts = lld.index.get_level_values("start")
    lld = lld[~starts.duplicated()]
    centres = lld.index.get_level_values("start").total_seconds().to_numpy() + 0.030
    assert (lld.index.get_level_values("end")[0] - starts[0]).total_seconds() == pytest.approx(0.06)
    values = lld.to_numpy()
    expected = np.empty((6, 260))
    for k in range(6):
        frames = values[(centres >= 0.5 * k) & (centres < 0.5 * (k + 1))]
        expected[k, 0::2], expected[k, 1::2] = frames.mean(0), frames.std(0)
    assert out.shape == (6, 260)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_compare_500ms_of_a_very_short_clip_is_one_finite_window():
    out = compute_clip("compare_500ms", _tone(0.3), resolve_params("compare_500ms", {}))
    assert out.shape == (1, 260)
    assert np.isfinite(out).all()
    mel = compute_clip("logmel_500ms", _tone(0.3), resolve_params("logmel_500ms", {}))
    assert mel.shape == (1, 64)


# --- real audio ------------------------------------------------------------------------------


def test_real_clips_decode_at_the_configured_rate(shared_data):
    mono_16k = shared_data / "4q-dev/audio/Q1/MT0013621344.mp3"  # 16 kHz mono, 10.08 s
    stereo_44k = shared_data / "pmemo-sample/634.mp3"  # 44.1 kHz stereo, 45.15 s
    clips = pd.DataFrame({"clip_id": ["634", "MT0013621344"], "path": [stereo_44k, mono_16k]})
    params = {name: {} for name in computed()}
    tables, quarantined = extract_features(clips, params)
    assert quarantined == []
    for path, native_rate in ((mono_16k, 16000), (stereo_44k, 44100)):
        native, rate = sf.read(path)  # (the MP3 header of 634 overstates its length by 0.11 s)
        assert rate == native_rate
        assert len(audio.load(path, SR)) == pytest.approx(len(native) * SR / rate, abs=2)
    compare = tables["compare_500ms"].to_pandas()
    assert compare.groupby("clip_id").size().to_dict() == {"634": 90, "MT0013621344": 20}
    assert compare.iloc[:, 2:].notna().all().all()
    assert compare.loc[compare.clip_id == "MT0013621344", "t"].max() == 10.0
    assert tables["logmel_500ms"].num_rows == 110
    logmel = tables["logmel"].to_pandas()
    # 10.08 s at hop 512 -> 435 STFT frames < 640; 45 s -> cropped to 640
    assert logmel.set_index("clip_id")["n_valid_frames"].to_dict() == {
        "634": 640,
        "MT0013621344": 435,
    }


# --- shards: quarantine, tables, merge -------------------------------------------------------


@pytest.fixture
def small_clips(tmp_path):
    good_a = _write_wav(tmp_path, "a.wav", _tone(1.6, seed=1))
    good_b = _write_wav(tmp_path, "b.wav", _tone(1.1, seed=2))
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"this is not audio at all" * 100)
    return pd.DataFrame({"clip_id": ["b", "broken", "a"], "path": [good_b, str(broken), good_a]})


def test_extract_shard_quarantines_an_unreadable_file(small_clips):
    table, quarantined = extract_shard(small_clips, "logmel_500ms", {})
    assert sorted(set(table.column("clip_id").to_pylist())) == ["a", "b"]
    assert len(quarantined) == 1
    row = quarantined[0]
    assert row["clip_id"] == "broken"
    assert row["stage"] == "features"
    assert row["path"].endswith("broken.mp3")
    assert row["reason"]


def test_extract_shard_fail_raises_naming_the_file(small_clips):
    with pytest.raises(AudioError, match="broken.mp3"):
        extract_shard(small_clips, "logmel_500ms", {}, on_bad_audio="fail")


def test_extract_features_gives_every_table_the_same_clips(small_clips):
    tables, quarantined = extract_features(small_clips, {n: {} for n in computed()})
    assert [q["clip_id"] for q in quarantined] == ["broken"]
    for table in tables.values():
        assert set(table.column("clip_id").to_pylist()) == {"a", "b"}
    windows = tables["compare_500ms"].to_pandas()
    assert windows.groupby("clip_id")["t"].apply(list).to_dict() == {
        "a": [0.5, 1.0, 1.5],
        "b": [0.5, 1.0],
    }


def test_windowed_shards_merge_sorted_with_metadata(tmp_path, small_clips):
    params = resolve_params("logmel_500ms", {"stats": ["mean", "std"]})
    shards = []
    for i, ids in enumerate([["b"], ["a", "broken"], []]):  # an empty shard is legitimate
        part = small_clips[small_clips.clip_id.isin(ids)]
        table, _ = extract_shard(part, "logmel_500ms", params)
        shards.append(
            write_feature_table(table, tmp_path / f"shard-{i}.parquet", "logmel_500ms", params)
        )
    merged = merge_shards(shards, tmp_path / "merged.parquet")
    meta = read_metadata(merged)
    assert meta["feature"] == "logmel_500ms"
    assert meta["params"] == params
    assert meta["columns"] == columns("logmel_500ms", params)
    assert meta["sample_rate"] == SR
    assert meta["window_s"] == 0.5
    data, problems = load_windowed(merged, ["a", "b", "broken"])
    assert data.clip_ids == ["a", "b"] and [p["clip_id"] for p in problems] == ["broken"]
    np.testing.assert_array_equal(np.concatenate(data.times), [0.5, 1.0, 1.5, 0.5, 1.0])
    assert [m.shape for m in data.features] == [(3, 128), (2, 128)]
    assert data.features[0].dtype == np.float32
    expected_a = compute_clip("logmel_500ms", audio.load(small_clips.path[2], SR), params)
    np.testing.assert_array_equal(data.features[0], expected_a)
    schema = pq.read_schema(merged)
    assert str(schema.field("t").type) == "double"
    assert str(schema.field("mel_000_mean").type) == "float"
    only_b, _ = load_windowed(merged, ["b"])
    assert only_b.clip_ids == ["b"] and len(only_b.times[0]) == 2


def test_frame_table_round_trip(tmp_path, small_clips):
    params = resolve_params("logmel", {"n_frames": 60, "n_mels": 32})
    table, _ = extract_shard(small_clips, "logmel", params)
    path = write_feature_table(table, tmp_path / "logmel.parquet", "logmel", params)
    merged = merge_shards([path], tmp_path / "merged.parquet")
    assert read_metadata(merged)["shape"] == [32, 60]
    table = read_table(merged, "frames")
    assert table.column("clip_id").to_pylist() == ["a", "b"]
    frames = table.column("logmel").combine_chunks().flatten().to_numpy().reshape(2, 32, 60)
    expected_b = compute_clip("logmel", audio.load(small_clips.path[0], SR), params)
    np.testing.assert_array_equal(frames[1], expected_b)
    n_valid = pq.read_table(merged, columns=["n_valid_frames"]).column(0).to_pylist()
    assert n_valid == [60, 1 + int(1.1 * SR) // 512]  # a: 69 frames, cropped; b: 48, padded
    with pytest.raises(DatasetError, match="not a windowed feature table.*lacks column.*t"):
        load_windowed(merged, ["a"])


def test_merge_refuses_shards_with_different_params(tmp_path, small_clips):
    paths = []
    for i, stats in enumerate((["mean"], ["mean", "std"])):
        params = resolve_params("logmel_500ms", {"stats": stats})
        part = small_clips[small_clips.clip_id == ["a", "b"][i]]
        table, _ = extract_shard(part, "logmel_500ms", params)
        paths.append(write_feature_table(table, tmp_path / f"s{i}.parquet", "logmel_500ms", params))
    with pytest.raises(DatasetError, match="params"):
        merge_shards(paths, tmp_path / "merged.parquet")
    assert not (tmp_path / "merged.parquet").exists()


def test_merge_refuses_a_clip_in_two_shards(tmp_path, small_clips):
    params = resolve_params("logmel_500ms", {})
    table, _ = extract_shard(small_clips, "logmel_500ms", params)
    paths = [
        write_feature_table(table, tmp_path / f"s{i}.parquet", "logmel_500ms", params)
        for i in range(2)
    ]
    with pytest.raises(DatasetError, match="two shards"):
        merge_shards(paths, tmp_path / "merged.parquet")


def test_write_feature_table_refuses_a_table_of_other_params(tmp_path, small_clips):
    table, _ = extract_shard(small_clips, "logmel_500ms", {})
    with pytest.raises(Exception, match="schema"):
        write_feature_table(
            table,
            tmp_path / "x.parquet",
            "logmel_500ms",
            resolve_params("logmel_500ms", {"n_mels": 32}),
        )
