"""The presets in config/: each validates, keeps to its paper's protocol, stops with one message
naming what to download when its data are missing, and, given its data with the documented
`--config 'datasets={<name>: {root: ...}}'`, indexes them and plans the whole job graph."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from workflow_utils import REPO, executed_jobs, run_snakemake

from merflow import config as mfconfig
from merflow.io import read_table
from merflow.pretrained.cache import is_cached
from merflow.reporting.published import is_malik_dataset

PRESETS = {
    "malik_deam": "deam",
    "malik_deam_opensmile": "deam",
    "velankar_folder": "songs",
    "fourq": "4q",
    "emotify": "emotify",
    "emomusic": "emomusic",
    "pmemo": "pmemo",
}
MALIK_LENGTHS = [10, 20, 30, 60]
SEEDS = [0, 1, 2, 3, 4]


def preset_path(name: str) -> Path:
    return REPO / "config" / f"{name}.yaml"


def load_preset(name: str) -> dict:
    return yaml.safe_load(preset_path(name).read_text())


def with_root(preset: dict, root: Path) -> dict:
    for spec in preset["datasets"].values():
        spec["root"] = str(root)
    return preset


def test_the_presets_are_the_documented_ones():
    assert sorted(p.stem for p in (REPO / "config").glob("*.yaml")) == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates_once_its_root_exists(name, tmp_path):
    preset = load_preset(name)
    assert list(preset["datasets"]) == [PRESETS[name]]
    assert all(spec["root"] is None for spec in preset["datasets"].values())
    config = mfconfig.validate(with_root(preset, tmp_path))
    for experiment in config["experiments"].values():
        assert experiment["seeds"] == SEEDS
        if "malik_crnn" in experiment["models"]:
            assert experiment["models"] == ["malik_crnn", "malik_crnn_nb", "mean", "ridge"]
        elif experiment["features"] == ["musicnn"]:  # heads on pretrained embeddings
            assert experiment["models"] == ["logistic", "svm", "mlp", "majority"]
        else:
            models = ["velankar_crnn", "velankar_parallel", "majority", "logistic"]
            assert experiment["models"] == models


@pytest.mark.parametrize("name", ["malik_deam", "malik_deam_opensmile"])
def test_malik_presets_follow_the_paper_on_its_own_data(name, tmp_path):
    config = mfconfig.validate(with_root(load_preset(name), tmp_path))
    (experiment,) = config["experiments"].values()
    dataset = config["datasets"][experiment["dataset"]]
    assert dataset["adapter"] == "deam" and dataset["split_year"] == 2015
    assert dataset["paper_dataset"] is True and is_malik_dataset(dataset)
    assert experiment["paper"] == "malik2017" and experiment["recipe"] == "paper"
    assert experiment["seq_len"] == MALIK_LENGTHS
    assert experiment["split"]["method"] == "fixed"
    assert experiment["split"]["fixed_test"] == "evaluation"
    train = mfconfig.train_settings(config, next(iter(config["experiments"])))
    assert train["batch_size"] == 32 and train["lr"] == 0.001  # the paper's (Adam's default)
    features = ["deam_opensmile"] if name.endswith("opensmile") else ["compare_500ms"]
    assert experiment["features"][: len(features)] == features


def test_both_deam_presets_share_one_index():
    """One results folder can hold both: the dataset entries (hence the index) are the same."""
    first, second = load_preset("malik_deam"), load_preset("malik_deam_opensmile")
    assert first["datasets"] == second["datasets"]
    assert first["features"]["shards"] == second["features"]["shards"]
    assert set(first["experiments"]).isdisjoint(second["experiments"])


def test_velankar_preset_follows_the_paper(tmp_path):
    config = mfconfig.validate(with_root(load_preset("velankar_folder"), tmp_path))
    experiment = config["experiments"]["velankar"]
    assert experiment["recipe"] == "paper" and experiment["paper"] == "velankar"
    assert experiment["split"]["test_fraction"] == pytest.approx(1 / 3, abs=1e-3)
    assert mfconfig.train_settings(config, "velankar")["epochs"] == 25
    assert config["datasets"]["songs"]["paper_dataset"] is False  # theirs is not public


@pytest.mark.parametrize("name", ["fourq", "emotify", "emomusic", "pmemo"])
def test_public_dataset_presets_use_merflows_recipe(name, tmp_path):
    config = mfconfig.validate(with_root(load_preset(name), tmp_path))
    for experiment in config["experiments"].values():
        assert experiment["recipe"] == "merflow" and "train" not in experiment
        assert not config["datasets"][experiment["dataset"]].get("paper_dataset")
    if name == "emomusic":
        assert config["datasets"]["emomusic"]["split_year"] == 2013
        assert config["experiments"]["malik_emomusic"]["seq_len"] == MALIK_LENGTHS


# --- through Snakemake ----------------------------------------------------------------------------


def override(dataset: str, root: Path, **keys: str) -> str:
    """The --config value the presets document: merged into the preset's dataset entry."""
    extra = "".join(f", {k}: {v}" for k, v in keys.items())
    return f"datasets={{{dataset}: {{root: {root}{extra}}}}}"


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_without_its_data_stops_with_one_message(name, tmp_path):
    out = run_snakemake(tmp_path, "-n", configfile=preset_path(name))
    assert out.returncode != 0
    text = out.stdout + out.stderr
    dataset = PRESETS[name]
    download = " ".join(load_preset(name)["datasets"][dataset]["download"].split())
    message = f"config error: dataset '{dataset}' has no 'root'. Download {download}; then run"
    assert text.count(message) == 1
    assert f"--config 'datasets={{{dataset}: {{root: /path/to/it}}}}'" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_a_wrong_root_names_the_folder_and_the_override(tmp_path):
    missing = tmp_path / "no" / "DEAM"
    out = run_snakemake(
        tmp_path, "-n", "--config", override("deam", missing), configfile=preset_path("malik_deam")
    )
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert text.count(f"root {missing} does not exist. Download DEAM") == 1
    assert "--config 'datasets={deam: {root: /path/to/it}}'" in text


def write_tone(path: Path, seconds: float, frequency: float = 440.0, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.2 * np.sin(2 * np.pi * frequency * t), rate)


def write_rows(path: Path, rows: list[list], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)


def fake_deam(root: Path, song_ids=("2", "3", "4", "2001", "2002")) -> Path:
    """DEAM's layout in miniature: 20 s songs rated every 500 ms from 15 s, and its features."""
    times = [15000 + 500 * k for k in range(11)]
    header = ["song_id", *(f"sample_{t}ms" for t in times)]
    dynamic = root / "annotations/annotations averaged per song/dynamic (per second annotations)"
    rng = np.random.default_rng(0)
    for dimension in ("arousal", "valence"):
        rows = [[i, *np.round(rng.uniform(-0.5, 0.5, len(times)), 3)] for i in song_ids]
        write_rows(dynamic / f"{dimension}.csv", [header, *rows])
    names = [f"f{k}" for k in range(260)]
    for k, song_id in enumerate(song_ids):
        write_tone(root / "MEMD_audio" / f"{song_id}.wav", 20.0, 200.0 + 50 * k)
        rows = [[f"{0.5 * w:.1f}", *rng.normal(size=260).round(4)] for w in range(40)]
        write_rows(root / "features" / f"{song_id}.csv", [["frameTime", *names], *rows], ";")
    return root


def fake_folder(root: Path) -> Path:
    for k in range(6):
        write_tone(root / ("calm" if k % 2 else "tense") / f"song{k}.wav", 3.0, 300.0 + 40 * k)
    return root


def plan(tmp_path: Path, preset: str, setting: str) -> tuple[Path, Counter]:
    """Index the preset's dataset for real, then dry-run the rest: the jobs left to run."""
    args = ("--config", setting)
    indexed = run_snakemake(tmp_path, "--until", "index", *args, configfile=preset_path(preset))
    assert indexed.returncode == 0, indexed.stderr[-3000:]
    planned = run_snakemake(tmp_path, "-n", *args, configfile=preset_path(preset))
    assert planned.returncode == 0, planned.stderr[-3000:]
    return tmp_path / "results", Counter(rule for rule, _ in executed_jobs(planned.stdout))


def malik_jobs(n_features: int, n_lengths: int, extracted: bool = True) -> dict[str, int]:
    networks = n_features * 2 * n_lengths * len(SEEDS)
    baselines = n_features * 2  # mean and ridge: fitted once, for the first seed
    jobs = {"train": networks, "fit_baseline": baselines, "evaluate": networks + baselines}
    if extracted:
        jobs |= {"extract_features": n_features * 8, "merge_features": n_features}
    else:
        jobs |= {"provided_features": 1}
    return jobs | {"make_split": 1, "aggregate": 1, "report_index": 1, "all": 1}


VELANKAR_JOBS = {
    "train": 2 * len(SEEDS),
    "fit_baseline": 2,
    "evaluate": 2 * len(SEEDS) + 2,
    "extract_features": 8,
    "merge_features": 1,
    "make_split": 1,
    "aggregate": 1,
    "report_index": 1,
    "all": 1,
}


# the musicnn heads of a classification preset: mlp per seed; logistic, svm, majority once
HEAD_JOBS = {
    "train": len(SEEDS),
    "fit_baseline": 3,
    "evaluate": len(SEEDS) + 3,
    "extract_features": 8,
    "merge_features": 1,
    "make_split": 1,
    "aggregate": 1,
}


def together(*experiments: dict[str, int]) -> dict[str, int]:
    """The jobs of several experiments of one config: one report index, one target."""
    return dict(
        sum((Counter(jobs) for jobs in experiments), Counter()) | {"report_index": 1, "all": 1}
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "sample", "keys", "n_clips", "jobs"),
    [  # each public preset: the paper's models, and the same on musicnn (its weights cached)
        ("fourq", "4q-sample", {"audio_dir": "audio"}, 48, together(VELANKAR_JOBS, HEAD_JOBS)),
        ("emotify", "emotify-sample", {}, 30, together(VELANKAR_JOBS, HEAD_JOBS)),
        ("emomusic", "emomusic-sample", {}, 10, together(malik_jobs(2, 4), malik_jobs(1, 4))),
        ("pmemo", "pmemo-sample", {}, 4, together(malik_jobs(2, 3), malik_jobs(1, 3))),
    ],
)
def test_a_public_dataset_preset_indexes_its_sample_and_plans_every_job(
    tmp_path, shared_data, preset, sample, keys, n_clips, jobs
):
    dataset = PRESETS[preset]
    results, planned = plan(tmp_path, preset, override(dataset, shared_data / sample, **keys))
    clips = read_table(results / dataset / "clips.parquet")
    assert len(clips) == n_clips
    if not is_cached("MSD_musicnn"):
        jobs = jobs | {"fetch_pretrained": 1}
    assert dict(planned) == jobs


@pytest.mark.slow
def test_the_deam_presets_index_deam_and_plan_every_job(tmp_path):
    root = fake_deam(tmp_path / "DEAM")
    setting = override("deam", root)
    results, planned = plan(tmp_path / "work", "malik_deam", setting)
    clips = read_table(results / "deam/clips.parquet")
    assert clips.set_index("clip_id")["fixed_split"].to_dict() == {
        "2": "development",
        "3": "development",
        "4": "development",
        "2001": "evaluation",
        "2002": "evaluation",
    }
    assert dict(planned) == malik_jobs(2, 4)
    # the other DEAM preset in the same folder finds its index made: only its own jobs are left
    opensmile = preset_path("malik_deam_opensmile")
    out = run_snakemake(tmp_path / "work", "-n", "--config", setting, configfile=opensmile)
    assert out.returncode == 0, out.stderr[-3000:]
    planned = Counter(rule for rule, _ in executed_jobs(out.stdout))
    assert dict(planned) == malik_jobs(1, 4, extracted=False)


@pytest.mark.slow
def test_the_velankar_preset_indexes_a_class_folder_and_plans_every_job(tmp_path):
    root = fake_folder(tmp_path / "songs")
    results, planned = plan(tmp_path / "work", "velankar_folder", override("songs", root))
    labels = Counter(read_table(results / "songs/clips.parquet")["label"])
    assert labels == {"calm": 3, "tense": 3}
    assert dict(planned) == VELANKAR_JOBS
