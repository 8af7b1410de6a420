"""Pretrained embeddings: musicnn features against the network run by hand, imported embeddings
checked against the index, the heads that learn from clip vectors, fetching the weights, and
the workflow's musicnn rows (docs/embeddings.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml
from workflow_utils import executed_jobs, run_snakemake

from merflow.errors import ConfigError, DatasetError
from merflow.features import compute_clip, extract_features
from merflow.features.imported import import_embeddings, read_embeddings
from merflow.features.registry import FEATURES
from merflow.io import read_table, write_table
from merflow.learn import baselines
from merflow.learn.data import ClipVectors
from merflow.learn.fitted import load as load_fitted
from merflow.pretrained import cache, fetch

SR = 16000


@pytest.fixture(scope="module")
def network():
    """The cached MSD_musicnn (make setup fetches it; CI must have it)."""
    if not cache.is_cached("MSD_musicnn"):
        if os.environ.get("CI"):
            pytest.fail("CI must have the musicnn weights: `make setup` fetches them")
        pytest.skip("no cached musicnn weights: run `merflow pretrained fetch musicnn`")
    from merflow.pretrained import musicnn

    return musicnn.load_cached("MSD_musicnn")


def tone(seconds: float, hz: float = 330.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))).astype(
        np.float32
    )


def run_by_hand(network, patches: np.ndarray, layer: str = "penultimate") -> np.ndarray:
    from merflow.pretrained import musicnn

    return musicnn.predict(network, patches)[layer]


def test_the_clip_embedding_is_mean_and_std_over_successive_3s_patches(network):
    from merflow.pretrained import musicnn

    signal = tone(7.4)  # two whole patches; the rest is dropped as musicnn's extractor does
    vector = compute_clip("musicnn", signal, {})
    per_patch = run_by_hand(network, musicnn.logmel_patches(signal))
    assert per_patch.shape == (2, 200) and vector.shape == (1, 400)
    expected = np.stack([per_patch.mean(0), per_patch.std(0)], axis=1).reshape(1, -1)
    np.testing.assert_allclose(vector, expected, rtol=1e-5, atol=1e-6)
    taggram = compute_clip("musicnn", signal, {"layer": "taggram", "stats": ["mean"]})
    assert taggram.shape == (1, 50) and ((taggram >= 0) & (taggram <= 1)).all()


def test_each_window_sees_the_3s_patch_ending_at_its_end(network):
    from merflow.pretrained import musicnn

    signal = tone(4.2)
    windows = compute_clip("musicnn_500ms", signal, {})
    assert windows.shape == (8, 200)  # 4.2 s: 8 whole windows, as logmel_500ms has
    assert len(compute_clip("logmel_500ms", signal, {"sample_rate": SR})) == 8
    frames = musicnn.logmel(signal)
    for k, end_s in ((7, 4.0), (5, 3.0)):  # patches inside the clip, ending at 4.0 s and 3.0 s
        end = int(np.ceil(end_s * SR / musicnn.HOP_LENGTH))
        patch = frames[end - musicnn.PATCH_FRAMES : end][None]
        np.testing.assert_allclose(windows[k], run_by_hand(network, patch)[0], rtol=1e-4, atol=1e-5)


def test_early_windows_and_short_clips_see_silence_before_the_start(network):
    from merflow.pretrained import musicnn

    signal = tone(1.2)
    windows = compute_clip("musicnn_500ms", signal, {})
    assert windows.shape == (2, 200)
    frames = musicnn.logmel(signal)
    end = int(np.ceil(1.0 * SR / musicnn.HOP_LENGTH))
    patch = np.zeros((1, musicnn.PATCH_FRAMES, musicnn.N_MELS), np.float32)
    patch[0, -end:] = frames[:end]  # log10(1 + 0) = 0: silence before the clip
    np.testing.assert_allclose(windows[1], run_by_hand(network, patch)[0], rtol=1e-4, atol=1e-5)
    vector = compute_clip("musicnn", signal, {})  # one patch: the clip padded to 3 s
    assert vector.shape == (1, 400) and np.allclose(vector[0, 1::2], 0)  # std over one patch


def test_the_feature_stage_writes_aligned_tables(network, tmp_path):
    paths = []
    for i, seconds in enumerate((4.0, 2.5)):
        paths.append(tmp_path / f"c{i}.wav")
        sf.write(paths[-1], tone(seconds, 220.0 * (i + 1)), SR)
    clips = pd.DataFrame({"clip_id": ["c0", "c1"], "path": [str(p) for p in paths]})
    names = {"musicnn": {}, "musicnn_500ms": {}, "logmel_500ms": {}}
    tables, quarantined = extract_features(clips, names)
    assert quarantined == []
    assert tables["musicnn"].num_rows == 2 and tables["musicnn"].num_columns == 401
    windows = tables["musicnn_500ms"].select(["clip_id", "t"]).to_pandas()
    pd.testing.assert_frame_equal(
        windows, tables["logmel_500ms"].select(["clip_id", "t"]).to_pandas()
    )


# --- imported embeddings -------------------------------------------------------------------------


def test_imported_embeddings_quarantine_missing_clips_and_ignore_unknown_ones(tmp_path):
    frame = pd.DataFrame({"clip_id": ["a", "b", "zz"], "d0": [1.0, 2.0, 3.0], "d1": [0.0, 1, 2]})
    write_table(frame, tmp_path / "mine.parquet")
    table, columns, missing = read_embeddings(tmp_path / "mine.parquet", ["a", "b", "c"], False)
    assert list(table["clip_id"]) == ["a", "b"] and columns == ["d0", "d1"]
    assert table["d0"].dtype == np.float32
    assert [m["clip_id"] for m in missing] == ["c"] and "no embedding in" in missing[0]["reason"]


def test_imported_windows_from_npy_follow_the_500ms_grid(tmp_path):
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "a.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    table, _, missing = read_embeddings(folder, ["a"], True)
    assert list(table["t"]) == [0.5, 1.0, 1.5] and missing == []


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"id": ["a"], "d0": [1.0]}), "no clip_id column"),
        (pd.DataFrame({"clip_id": ["a"], "d0": [np.nan]}), "NaN or infinite values for clip"),
        (pd.DataFrame({"clip_id": ["a"], "d0": ["x"]}), "must be numeric"),
        (pd.DataFrame({"clip_id": ["a", "a"], "d0": [1.0, 2.0]}), "repeat"),
    ],
)
def test_bad_imported_embeddings_are_refused_naming_the_file(tmp_path, frame, message):
    write_table(frame, tmp_path / "bad.parquet")
    with pytest.raises(DatasetError, match=message) as error:
        read_embeddings(tmp_path / "bad.parquet", ["a"], False)
    assert "bad.parquet" in str(error.value)


def test_imported_windows_off_the_grid_are_refused(tmp_path):
    frame = pd.DataFrame({"clip_id": ["a", "a"], "t": [0.5, 0.75], "d0": [1.0, 2.0]})
    write_table(frame, tmp_path / "w.parquet")
    with pytest.raises(DatasetError, match="window end times"):
        read_embeddings(tmp_path / "w.parquet", ["a"], True)


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (np.zeros(5), "b.npy: 5 dimensions, the files before it 4"),
        (np.array([{"a": 1}], dtype=object), "b.npy: not a numeric .npy array"),
    ],
)
def test_a_folder_of_npy_arrays_that_do_not_agree_is_refused_naming_the_file(
    tmp_path, second, message
):
    np.save(tmp_path / "a.npy", np.zeros(4))
    np.save(tmp_path / "b.npy", second, allow_pickle=True)
    with pytest.raises(DatasetError, match=message):
        read_embeddings(tmp_path, ["a", "b"], False)


def import_windows(tiny: Path, source: Path, tmp_path: Path) -> tuple[pd.DataFrame, dict]:
    """``merflow import-embeddings`` of ``source`` for the tiny dataset's 4 s clips: the table
    and the quarantine reasons by clip."""
    out, quarantine = tmp_path / "table.parquet", tmp_path / "quarantine.parquet"
    params = FEATURES["embeddings_500ms"].defaults | {"path": str(source)}
    import_embeddings("embeddings_500ms", params, tiny / "data/clips.parquet", out, quarantine)
    reasons = read_table(quarantine).set_index("clip_id")["reason"].to_dict()
    return read_table(out), reasons


def windows_of(clip_id: str, t: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"clip_id": clip_id, "t": t, "d0": np.arange(len(t), dtype=np.float32)})


def test_imported_windows_that_do_not_fit_the_clips_grid_are_quarantined(tiny, tmp_path):
    whole = list(np.arange(1, 9) * 0.5)  # the 8 windows of a 4 s clip
    clip_ids = read_table(tiny / "data/clips.parquet")["clip_id"]
    good, nan, coarse, long, gap, partial, *rest = clip_ids
    frame = pd.concat(
        [
            windows_of(good, whole),
            windows_of(nan, [*whole[:-1], np.nan]),
            windows_of(coarse, whole[1::2]),  # a window every second: half of them missing
            windows_of(long, list(np.arange(1, 201) * 0.5)),  # running to 100 s
            windows_of(gap, whole[:3] + whole[4:]),
            windows_of(partial, [*whole, 4.5]),  # a last partial window, which some tools keep
        ]
    )
    write_table(frame, tmp_path / "mine.parquet")
    table, reasons = import_windows(tiny, tmp_path / "mine.parquet", tmp_path)
    assert sorted(set(table["clip_id"])) == [good, partial]
    assert "t is NaN or infinite in 1 row(s)" in reasons[nan]
    assert "a window every 1 s, not every 0.5 s" in reasons[coarse]
    assert "windows run to 100 s, past the clip's end (4 s)" in reasons[long]
    assert "1 window(s) missing, the first ending at 2 s" in reasons[gap]
    assert all(f"{tmp_path / 'mine.parquet'}: " in reasons[c] for c in (nan, coarse, long, gap))
    assert all("no embedding in" in reasons[c] for c in rest)


@pytest.mark.parametrize("layout", ["parquet", "npy"])
def test_imported_windows_on_another_grid_for_every_clip_stop_the_import(tiny, tmp_path, layout):
    """An export with 1 s windows: every clip has half its windows; that is the export's fault."""
    clip_ids = read_table(tiny / "data/clips.parquet")["clip_id"]
    source = tmp_path / "mine"
    if layout == "parquet":
        source = source.with_suffix(".parquet")
        write_table(pd.concat(windows_of(c, [1.0, 2.0, 3.0, 4.0]) for c in clip_ids), source)
        message = "a window every 1 s, not every 0.5 s"
    else:
        source.mkdir()
        for clip_id in clip_ids:
            np.save(source / f"{clip_id}.npy", np.zeros((4, 3), np.float32))
        message = r"4 window\(s\) of 0.5 s for a clip of 4 s \(8 expected\)"
    with pytest.raises(DatasetError, match=message) as error:
        import_windows(tiny, source, tmp_path)
    assert str(error.value).startswith(f"{source}: the windows of every clip are off the grid")


def test_npy_embeddings_of_ids_with_slashes_are_read_from_sub_folders(tmp_path):
    folder = tmp_path / "npy"
    for clip_id in ("audio/pop/34", "audio/rock/1", "top", ".hidden/x"):
        (folder / clip_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{clip_id}.npy", np.full(3, len(clip_id), np.float32))
    np.save(tmp_path / "outside.npy", np.zeros(3))  # the id ../outside must not reach it
    ids = ["audio/pop/34", "audio/rock/1", "top", "../outside", "audio/jazz/2", ".hidden/x"]
    table, _, missing = read_embeddings(folder, ids, False)
    assert list(table["clip_id"]) == ["audio/pop/34", "audio/rock/1", "top"]
    assert table["dim_0000"].tolist() == [12, 12, 3]
    reasons = {m["clip_id"]: m["reason"] for m in missing}
    assert set(reasons) == {"../outside", "audio/jazz/2", ".hidden/x"}
    assert reasons["audio/jazz/2"] == f"no embedding in {folder} (no audio/jazz/2.npy)"


def test_a_link_leading_out_of_the_npy_folder_is_refused(tmp_path):
    folder = tmp_path / "npy"
    (folder / "sub").mkdir(parents=True)
    np.save(folder / "a.npy", np.zeros(3))
    np.save(tmp_path / "secret.npy", np.ones(3))
    (folder / "sub/b.npy").symlink_to(tmp_path / "secret.npy")
    with pytest.raises(DatasetError, match=r"sub/b.npy: a link leading outside .*copy the array"):
        read_embeddings(folder, ["a", "sub/b"], False)


@pytest.mark.parametrize("window_s", [0, -0.5, "half a second"])
def test_the_window_of_imported_windows_is_checked(window_s):
    params = {"path": "x.parquet", "window_s": window_s}
    with pytest.raises(ConfigError, match=r"features.embeddings_500ms.window_s"):
        FEATURES["embeddings_500ms"].check(params)


# --- heads on clip vectors -----------------------------------------------------------------------


def clusters(n: int, seed: int) -> ClipVectors:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x[:, 0] += 3 * labels
    x[:, 1] -= 2 * labels
    return ClipVectors([f"c{i}" for i in range(n)], x, np.ones(n, np.int64), labels, list("abc"))


@pytest.mark.parametrize("name", ["svm", "logistic"])
def test_clip_vector_baselines_learn_separable_classes(name, tmp_path):
    train, test = clusters(60, 0), clusters(40, 1)
    fitted = baselines.fit(name, train, {}, seed=0)
    fitted.save(tmp_path / "b.npz")
    again = load_fitted(tmp_path / "b.npz")
    p = again.predict_proba(test.features, test.n_valid_frames)
    assert p.shape == (40, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p.argmax(1) == test.labels).mean() >= 0.8


# --- fetching the weights ------------------------------------------------------------------------


def test_fetching_without_network_names_the_wheel_option(tmp_path):
    env = dict(os.environ, MERFLOW_CACHE=str(tmp_path / "cache"), PIP_NO_CACHE_DIR="1")
    env["PIP_INDEX_URL"] = "http://127.0.0.1:9/simple"  # nothing listens there
    merflow = Path(sys.executable).with_name("merflow")
    out = subprocess.run(
        [str(merflow), "pretrained", "fetch", "musicnn"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot download musicnn==0.1.0" in out.stderr and "--wheel PATH" in out.stderr


def test_a_wheel_with_another_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path / "cache"))
    wheel = tmp_path / fetch.WHEEL
    wheel.write_bytes(b"not the musicnn wheel")
    with pytest.raises(fetch.FetchError, match="sha256 .* is not that of musicnn-0.1.0"):
        fetch.fetch_musicnn(wheel)
    assert not cache.is_cached("MSD_musicnn")


# --- the workflow's musicnn rows ---------------------------------------------------------------


EMBEDDING_EXPERIMENT = {
    "dataset": "tiny",
    "features": ["musicnn"],
    "models": ["mlp", "svm", "logistic", "majority"],
    "seeds": [0],
    "split": {"method": "holdout", "test_fraction": 0.34, "val_fraction": 0.2},
    "train": {"epochs": 3, "batch_size": 4},
    "skip_without_weights": True,
}
TINY = {
    "datasets": {"tiny": {"adapter": "synth", "n_clips": 12, "duration_s": 6.0, "seed": 1}},
    "features": {"shards": 2},
    "experiments": {"emb": EMBEDDING_EXPERIMENT},
}
LOGMEL_EXPERIMENT = {**EMBEDDING_EXPERIMENT, "features": ["logmel"], "models": ["logistic"]}


def test_without_cached_weights_the_demo_leaves_the_musicnn_rows_out_with_one_line(
    tmp_path, monkeypatch
):
    both = {**TINY, "experiments": {"emb": EMBEDDING_EXPERIMENT, "logmel": LOGMEL_EXPERIMENT}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(both))
    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path / "empty cache"))
    out = run_snakemake(tmp_path, "-n", configfile=tmp_path / "c.yaml")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if "left out" in line]
    assert lines == [
        "merflow: experiment 'emb' left out: the MSD_musicnn weights are not cached; run "
        "`merflow pretrained fetch musicnn` to include it"
    ]


def test_a_run_whose_every_experiment_is_left_out_stops_with_the_fetch_command(
    tmp_path, monkeypatch
):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(TINY))
    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path / "empty cache"))
    out = run_snakemake(tmp_path, "-n", configfile=tmp_path / "c.yaml")
    assert out.returncode != 0 and "every experiment was left out" in out.stdout + out.stderr


def test_one_job_fetches_both_taggers_for_all_features(tmp_path, monkeypatch):
    """Two features on the two taggers, nothing cached: one fetch job writes both files (two
    jobs would convert the same wheel at once into the same folder)."""
    fetched = {**EMBEDDING_EXPERIMENT, "skip_without_weights": False}
    both = {"emb": fetched, "win": {**fetched, "features": ["musicnn_500ms"], "models": ["ridge"]}}
    features = {"shards": 2, "musicnn_500ms": {"model": "MTT_musicnn"}}
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({**TINY, "features": features, "experiments": both})
    )
    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path / "empty cache"))
    out = run_snakemake(tmp_path, "-n", configfile=tmp_path / "c.yaml")
    assert out.returncode == 0, out.stderr[-3000:]
    fetches = [
        wildcards for rule, wildcards in executed_jobs(out.stdout) if rule == "fetch_pretrained"
    ]
    assert len(fetches) == 1


@pytest.mark.slow
def test_with_cached_weights_the_heads_train_on_musicnn_and_are_reported(network, tmp_path):
    ids = [f"synth_{i:04d}" for i in range(11)]  # synth_0011 has no embedding
    mine = pd.DataFrame(np.random.default_rng(0).normal(size=(11, 8)), columns=list("abcdefgh"))
    write_table(mine.assign(clip_id=ids), tmp_path / "mine.parquet")
    imported = {**EMBEDDING_EXPERIMENT, "features": ["embeddings"], "models": ["logistic"]}
    config = {
        **TINY,
        "features": {"shards": 2, "embeddings": {"path": str(tmp_path / "mine.parquet")}},
        "experiments": {"emb": EMBEDDING_EXPERIMENT, "mine": imported},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = run_snakemake(tmp_path, configfile=tmp_path / "c.yaml")
    assert out.returncode == 0, out.stderr[-4000:]
    report = (tmp_path / "results/tiny/emb/report/velankar_models.md").read_text()
    for label in ("MLP head [mlp]", "SVM (RBF kernel) [svm]", "logistic regression (baseline)"):
        assert label in report
    left_out = pd.read_csv(tmp_path / "results/tiny/mine/report/quarantine.csv")
    assert list(left_out["clip_id"]) == ["synth_0011"]
    assert "no embedding in" in left_out["reason"].iloc[0]


def test_overlapping_patches_share_work_and_keep_every_number():
    from merflow.pretrained import musicnn

    torch.manual_seed(0)
    network = musicnn.Musicnn().eval()
    rng = np.random.default_rng(3)
    spectrogram = rng.random((700, musicnn.N_MELS), dtype=np.float32) * 3
    starts = [0, 1, 31, 62, 250, 400, 700 - musicnn.PATCH_FRAMES]  # edges and overlaps
    one_by_one = musicnn.predict(network, np.stack([spectrogram[s : s + 187] for s in starts]))
    shared = musicnn.predict_at(network, spectrogram, starts, batch_size=3)
    for name, expected in one_by_one.items():
        np.testing.assert_allclose(shared[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)
