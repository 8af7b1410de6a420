"""Tagging new audio: models trained here on tiny synthetic data, applied to real recordings."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from trained_models import CLASSES
from workflow_utils import jobs_to_run, snakemake

from merflow import audio
from merflow.cli import main
from merflow.config import load_config, predict_job
from merflow.errors import ConfigError, DatasetError
from merflow.export import CARD_FILE, MODEL_FILE, WEIGHTS_FILE, export
from merflow.features.windows import n_windows
from merflow.io import read_json, read_table
from merflow.learn.evaluation import predict as evaluate_part
from merflow.learn.sequences import chunk_starts
from merflow.predict import find_audio, load_model


@pytest.fixture(scope="module")
def songs(shared_data) -> dict[str, Path]:
    """Real recordings: 45 s emoMusic clips (44.1 kHz mono), ~30 s 4Q clips (mixed rates)."""
    emomusic = shared_data / "emomusic-sample/clips_45seconds"
    return {
        "emo_2": emomusic / "2.mp3",
        "emo_10": emomusic / "10.mp3",
        "q1": sorted((shared_data / "4q-sample/audio/Q1").glob("*.mp3"))[0],
        "q3": sorted((shared_data / "4q-sample/audio/Q3").glob("*.mp3"))[0],
        "pmemo": shared_data / "pmemo-sample/108.mp3",  # stereo
    }


def decoded_duration(path: Path, sample_rate: int = 22050) -> float:
    return len(audio.load(path, sample_rate)) / sample_rate


@pytest.fixture
def short_song(songs, tmp_path) -> Path:
    """1.2 s of real audio: shorter than a classifier segment, 2 regression windows."""
    signal = audio.load(songs["q1"], 22050)
    path = tmp_path / "short.wav"
    sf.write(path, signal[: int(1.2 * 22050)], 22050)
    return path


# --- regression ----------------------------------------------------------------------------------


def test_regression_gives_arousal_valence_every_500ms_over_the_whole_song(tiny, songs):
    model = load_model(tiny / "runs/malik")
    for key in ("emo_2", "q3", "pmemo"):
        song = model.predict_file(songs[key])
        expected = n_windows(decoded_duration(songs[key]), 0.5)
        assert list(song.table.columns) == ["clip_id", "t", "arousal", "valence"]
        assert len(song.table) == expected and expected >= 50
        np.testing.assert_allclose(song.table["t"], 0.5 * np.arange(1, expected + 1))
        assert np.isfinite(song.table[["arousal", "valence"]].to_numpy()).all()
        assert song.summary["n_windows"] == expected
        assert song.summary["arousal"] == pytest.approx(song.table["arousal"].mean())
        assert song.summary["valence"] == pytest.approx(song.table["valence"].mean())


def test_a_song_shorter_than_the_sequence_and_a_window(tiny, short_song, tmp_path):
    model = load_model(tiny / "runs/malik")  # seq_len 3: 2 windows are one shorter chunk
    assert model.predict_file(short_song).table["t"].tolist() == [0.5, 1.0]
    tiny_song = tmp_path / "blip.wav"
    sf.write(tiny_song, np.zeros(2000, np.float32), 22050)  # 0.09 s: padded to one window
    assert model.predict_file(tiny_song).table["t"].tolist() == [0.5]


def test_predicting_a_file_equals_evaluating_its_feature_table(tiny):
    """Same feature parameters, normalization, chunking and stitching as evaluation."""
    model = load_model(tiny / "runs/malik")
    evaluated, _ = evaluate_part(tiny / "runs/malik", part="test")
    clips = read_table(tiny / "data/clips.parquet").set_index("clip_id")
    for clip_id, rows in evaluated.groupby("clip_id"):
        song = model.predict_file(clips.loc[clip_id, "path"]).table.set_index("t")
        for dim in ("arousal", "valence"):
            np.testing.assert_allclose(
                song.loc[rows["t"], dim], rows[f"{dim}_pred"], rtol=1e-5, atol=1e-6
            )


# --- classification ------------------------------------------------------------------------------


def test_classifier_gives_probabilities_per_segment_and_a_song_vote(tiny, songs):
    model = load_model(tiny / "runs/velankar")
    assert model.outputs == CLASSES
    for key in ("q1", "emo_10"):
        song = model.predict_file(songs[key])
        table, duration = song.table, decoded_duration(songs[key])
        frames = 1 + int(duration * 22050) // 512
        assert len(table) == len(chunk_starts(frames, 192)) > 5
        probabilities = table[[f"p_{c}" for c in CLASSES]].to_numpy()
        np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
        assert (probabilities >= 0).all()
        assert table["start_s"].is_monotonic_increasing and table["start_s"].iloc[0] == 0
        assert table["end_s"].iloc[-1] == pytest.approx(duration, abs=0.03)
        assert (table["end_s"] - table["start_s"]).iloc[:-1].round(2).eq(4.46).all()
        song_mean = probabilities.mean(0)
        assert song.summary["predicted"] == CLASSES[int(song_mean.argmax())]
        assert [song.summary[f"p_{c}"] for c in CLASSES] == pytest.approx(song_mean)
        assert list(table["predicted"]) == [CLASSES[i] for i in probabilities.argmax(1)]


def test_a_clip_shorter_than_a_segment_is_padded_as_in_training(tiny, short_song):
    table = load_model(tiny / "runs/velankar").predict_file(short_song).table
    assert len(table) == 1 and table["end_s"].iloc[0] == pytest.approx(1.2, abs=0.03)
    assert table[[f"p_{c}" for c in CLASSES]].sum(axis=1).iloc[0] == pytest.approx(1.0)


def test_a_training_length_clip_gets_the_evaluation_probabilities(tiny):
    model = load_model(tiny / "runs/velankar")
    evaluated, _ = evaluate_part(tiny / "runs/velankar", part="test")
    clips = read_table(tiny / "data/clips.parquet").set_index("clip_id")
    for row in evaluated.itertuples():
        table = model.predict_file(clips.loc[row.clip_id, "path"]).table
        assert len(table) == 1
        for c in CLASSES:
            assert table[f"p_{c}"].iloc[0] == pytest.approx(getattr(row, f"p_{c}"), abs=1e-5)


# --- export --------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["malik", "velankar", "ridge"])
def test_an_exported_model_predicts_exactly_as_its_run(tiny, exported, songs, run):
    from_run = load_model(tiny / "runs" / run).predict_file(songs["q3"]).table
    from_export = load_model(exported / run).predict_file(songs["q3"]).table
    pd.testing.assert_frame_equal(from_run, from_export, check_exact=True)


def test_the_export_holds_weights_statistics_card_and_no_pickle(tiny, exported):
    spec = read_json(exported / "velankar" / MODEL_FILE)
    assert spec["feature"] == "logmel" and spec["feature_params"]["n_frames"] == 192
    assert spec["outputs"] == CLASSES and spec["build"]["n_outputs"] == 3
    assert spec["build"]["members"] == 2  # the checkpoint ensemble of both epochs
    assert spec["training"]["seed"] == 0
    assert sorted(p.name for p in (exported / "velankar").iterdir()) == sorted(
        [MODEL_FILE, WEIGHTS_FILE, "norm.npz", CARD_FILE]
    )
    assert (exported / "ridge" / "baseline.npz").is_file()
    card = (exported / "velankar" / CARD_FILE).read_text()
    assert "`energetic`, `sad`, `calm`" in card and "dataset `tiny`" in card
    assert "6 train / 2 val / 2 test clips" in card and "seed 0" in card


def test_the_export_carries_metrics_and_is_replaced_by_a_new_export(tiny, tmp_path):
    run = tiny / "runs/ridge"
    from merflow.learn.evaluation import evaluate

    evaluate(run, part="test")
    out = export(run, tmp_path / "model")
    (out / "stale.txt").write_text("from an earlier export")
    export(run, out)
    assert not (out / "stale.txt").exists()
    assert read_json(out / MODEL_FILE)["metrics"]["test"]["task"] == "regression"
    assert "- test (2 songs, per-song means): arousal RMSE" in (out / CARD_FILE).read_text()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="holds no exported model"):
        export(run, tmp_path / "other")


def test_an_export_needs_no_results_tree_but_a_run_does(tiny, exported, songs):
    data, hidden = tiny / "data", tiny / "data-moved"
    data.rename(hidden)
    try:
        assert len(load_model(exported / "malik").predict_file(songs["q1"]).table) > 50
        with pytest.raises(DatasetError, match="names the feature table .*logmel_500ms.parquet"):
            load_model(tiny / "runs/malik")
    finally:
        hidden.rename(data)


def test_models_that_cannot_tag_audio_say_why(exported, tmp_path):
    with pytest.raises(DatasetError, match="neither an exported model"):
        load_model(tmp_path)
    copy = shutil.copytree(exported / "malik", tmp_path / "copy")
    spec = read_json(copy / MODEL_FILE)
    (copy / MODEL_FILE).write_text(
        json.dumps({**spec, "feature_params": {**spec["feature_params"], "n_mels": 40}})
    )
    with pytest.raises(DatasetError, match="trained on 64 'logmel_500ms' values"):
        load_model(copy)
    (copy / MODEL_FILE).write_text(json.dumps({**spec, "feature": "deam_opensmile"}))
    with pytest.raises(ConfigError, match="cannot compute from audio"):
        load_model(copy)


# --- many files, the CLI -------------------------------------------------------------------------


def test_find_audio_names_songs_by_their_path_below_the_folder(tmp_path):
    names = ("a/x.mp3", "b/x.MP3", "b/.hidden.mp3", "b/notes.txt", "x.wav", ".Trash/y.mp3")
    for name in (*names, ".cache/notes.txt"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    found, problems = find_audio([tmp_path / "in", tmp_path / "in/x.wav", tmp_path / "empty"])
    assert [c for c, _ in found] == ["a/x", "b/x", "x", "x-2"]
    reasons = {Path(p["path"]).name: p["reason"] for p in problems}
    assert set(reasons) == {"notes.txt", "empty"}  # nothing left out in silence
    assert "no audio files" in reasons["empty"]
    assert reasons["notes.txt"].startswith("not an audio format merflow decodes")


def test_the_cli_tags_good_files_and_reports_bad_ones(tiny, songs, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(songs["q1"], folder / "good.mp3")
    (folder / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(4000))
    (folder / "empty.mp3").write_bytes(b"")
    out = tmp_path / "out"
    argv = ["predict", "--model", str(tiny / "runs/velankar"), "--out", str(out), "--gpu", "0"]
    code = main([*argv, "--plot", "--format", "parquet", str(folder), str(songs["emo_2"])])
    assert code == 0
    summary = read_table(out / "songs.parquet")
    assert sorted(summary["clip_id"]) == ["2", "good"]
    assert summary[[f"p_{c}" for c in CLASSES]].sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert set(summary["predicted"]) <= set(CLASSES)
    segments = read_table(out / "segments/good.parquet")
    assert list(segments.columns[:5]) == ["clip_id", "segment", "start_s", "end_s", "predicted"]
    assert (out / "plots/good.png").stat().st_size > 5000 and (out / "plots/2.png").is_file()
    report = read_json(out / "predict.json")
    assert report["n_files"] == 4 and report["n_tagged"] == 2
    reasons = {Path(p["path"]).name: p["reason"] for p in report["unreadable"]}
    assert set(reasons) == {"noise.mp3", "empty.mp3"} and "empty" in reasons["empty.mp3"]
    stderr = capsys.readouterr().err
    assert "tagged 2 of 4 file(s)" in stderr and "noise.mp3: cannot decode" in stderr


def test_names_at_the_file_system_limit_are_tagged_or_listed_and_the_summary_written(
    exported, tmp_path, capsys
):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    longest = os.pathconf(folder, "PC_NAME_MAX")
    fits = "f" * (longest - len(".parquet"))  # its output name is as long as names can be
    too_long = "t" * (longest - len(".wav"))  # a legal audio name, but <name>.parquet is not
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * 22050) / 22050)
    for stem in ("short", fits, too_long):
        sf.write(folder / f"{stem}.wav", tone, 22050)
    argv = ["predict", "--model", str(exported / "malik"), "--out", str(out), "--gpu", "0"]
    assert main([*argv, "--format", "parquet", str(folder)]) == 0
    assert sorted(read_table(out / "songs.parquet")["clip_id"]) == [fits, "short"]
    assert read_table(out / f"windows/{fits}.parquet")["clip_id"].iloc[0] == fits
    report = read_json(out / "predict.json")
    assert (report["n_files"], report["n_tagged"]) == (3, 2)
    (unreadable,) = report["unreadable"]
    assert Path(unreadable["path"]).name == f"{too_long}.wav"
    assert "longer name than the file system allows" in unreadable["reason"]
    assert "tagged 2 of 3 file(s)" in capsys.readouterr().err
    written = sorted(p.name for p in (out / "windows").iterdir())
    assert written == [f"{fits}.parquet", "short.parquet"]  # and no temporary debris


def test_the_cli_writes_csv_for_a_regression_model(exported, songs, tmp_path):
    out = tmp_path / "out"
    argv = ["predict", "--model", str(exported / "malik"), "--out", str(out), "--gpu", "0"]
    assert main([*argv, str(songs["emo_10"])]) == 0
    windows = pd.read_csv(out / "windows/10.csv")
    assert list(windows.columns) == ["clip_id", "t", "arousal", "valence"]
    assert windows["t"].diff().dropna().eq(0.5).all()
    summary = pd.read_csv(out / "songs.csv")
    expected = ["clip_id", "path", "duration_s", "n_windows", "arousal", "valence"]
    assert list(summary.columns) == expected
    assert summary["arousal"].iloc[0] == pytest.approx(windows["arousal"].mean(), rel=1e-5)


def test_nothing_taggable_exits_non_zero(exported, tmp_path, capsys):
    (tmp_path / "noise.mp3").write_bytes(np.random.default_rng(1).bytes(3000))
    (tmp_path / "empty.wav").write_bytes(b"")
    argv = ["predict", "--model", str(exported / "malik"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--gpu", "0", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "no file could be tagged" in err and "empty.wav" in err
    assert read_json(tmp_path / "out/predict.json")["n_tagged"] == 0


def test_the_cli_exports(tiny, tmp_path):
    assert main(["export", str(tiny / "runs/ridge"), str(tmp_path / "m")]) == 0
    assert read_json(tmp_path / "m" / MODEL_FILE)["model"] == "ridge"
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "n")]) != 0


# --- configuration and the workflow --------------------------------------------------------------


def workflow_config(predict: dict | None = None) -> dict:
    """A small valid config (its experiment is never run here), with a ``predict`` section."""
    config = {
        "datasets": {"tiny": {"adapter": "synth", "n_clips": 8, "duration_s": 4.0}},
        "features": {"shards": 1},
        "experiments": {
            "v": {"dataset": "tiny", "features": ["logmel"], "models": ["majority"], "seeds": [0]}
        },
    }
    return config if predict is None else {**config, "predict": predict}


def checked(tmp_path: Path, predict: dict) -> dict:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(workflow_config(predict)))
    return load_config(tmp_path / "config.yaml")


def test_the_predict_section_is_checked_and_completed(tmp_path):
    config = checked(tmp_path, {"mine": {"input": str(tmp_path), "model": "m"}})
    job = predict_job(config, "mine")
    assert job == {"input": str(tmp_path), "model": "m", "format": "csv", "plot": False}
    with pytest.raises(ConfigError, match="predict.mine.input: .*nowhere does not exist"):
        checked(tmp_path, {"mine": {"input": str(tmp_path / "nowhere"), "model": "m"}})
    with pytest.raises(ConfigError, match="unknown key 'fmt'"):
        checked(tmp_path, {"mine": {"input": str(tmp_path), "model": "m", "fmt": "csv"}})


@pytest.mark.slow
def test_the_workflow_predict_rule_tags_a_folder(exported, songs, tmp_path):
    audio_dir = tmp_path / "new audio"  # a space: paths are quoted for the shell
    audio_dir.mkdir()
    for key in ("q1", "emo_2"):
        shutil.copy(songs[key], audio_dir / songs[key].name)
    assert "predict" not in jobs_to_run(tmp_path, workflow_config())
    job = {"input": str(audio_dir), "model": str(exported / "velankar"), "plot": True}
    config = workflow_config({"mine": job})
    assert jobs_to_run(tmp_path, config)["predict"] == 1  # part of the default target now
    out = snakemake(tmp_path, config, "--", "results/predict/mine")
    assert out.returncode == 0, out.stderr[-3000:]
    result = tmp_path / "results/predict/mine"
    summary = pd.read_csv(result / "songs.csv")
    assert sorted(summary["clip_id"]) == sorted([songs["q1"].stem, songs["emo_2"].stem])
    assert len(list((result / "plots").glob("*.png"))) == 2
    assert read_json(result / "predict.json")["model"]["model"] == "velankar_crnn"
