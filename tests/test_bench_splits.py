"""The benchmark's configs (bench/recipes.py): for each dataset, the Snakemake config the driver
writes (experiments per recipe, repeated song-level k-fold, the datasets read in place), and the
Snakemake command it runs."""

from __future__ import annotations

import copy
import subprocess

import pandas as pd
import pytest
import yaml
from workflow_utils import REPO, bench_module

from merflow.config import dataset_spec, validate
from merflow.datasets.index import build_index
from merflow.splits import split_ids

bench = bench_module("recipes")

KFOLD = {"method": "kfold", "n_folds": 3, "repeats": 5, "seed": 0}


def _config(name, data, tmp_path, *options):
    args = bench.parse_args(["--data", str(data), "--out", str(tmp_path), *options])
    config = bench.bench_config(name, args, tmp_path / name)
    validate(copy.deepcopy(config))  # the workflow's own check: schema, roots, model/feature
    return config


def test_defaults_are_the_design_of_docs_recipes(tmp_path):
    args = bench.parse_args([])
    assert (args.folds, args.repeats, args.seeds) == (3, 5, [0, 1, 2, 3])
    assert args.datasets == ["4q", "emotify", "vgmidi", "synth"]
    assert args.data == REPO.parent / "shared" / "data"
    assert not str(bench.parse_args([]).out).startswith(str(REPO))  # results stay out of git


def test_4q_combines_both_folders_in_a_manifest_with_artists(shared_data, tmp_path):
    config = _config("4q", shared_data, tmp_path)
    entry = config["datasets"]["4q"]
    assert entry["adapter"] == "manifest" and entry["allow_outside_root"] is True
    assert config["features"]["logmel"] == {"n_frames": 1292}  # whole 30 s clips
    manifest = pd.read_csv(tmp_path / "4q" / "source" / "manifest.csv").set_index("clip_id")
    assert len(manifest) == 300
    assert manifest["label"].value_counts().to_dict() == {f"Q{q}": 75 for q in range(1, 5)}
    assert manifest["path"].map(lambda p: p.startswith("/")).all()
    sample = manifest["path"].str.contains("/4q-sample/")
    assert sample.sum() == 48
    assert manifest.loc["MT0000218346", "group"] == "Steven Curtis Chapman"
    dev = manifest[~sample]
    assert (dev["group"] == dev.index).all()  # 4q-dev names no artists: each clip its own song

    mtime = (tmp_path / "4q" / "source" / "manifest.csv").stat().st_mtime_ns
    _config("4q", shared_data, tmp_path)  # the same files: not rewritten, so not re-indexed
    assert (tmp_path / "4q" / "source" / "manifest.csv").stat().st_mtime_ns == mtime

    result = build_index(dataset_spec(config, "4q"), tmp_path / "index")
    assert (result.n_clips, result.n_quarantined) == (300, 0)
    assert result.classes == ["Q1", "Q2", "Q3", "Q4"]


def test_4q_has_one_experiment_per_recipe_and_the_baselines_once(shared_data, tmp_path):
    experiments = _config("4q", shared_data, tmp_path)["experiments"]
    assert list(experiments) == ["4q-velankar-paper", "4q-velankar-merflow"]
    paper, merflow = experiments.values()
    assert paper["recipe"] == "paper" and merflow["recipe"] == "merflow"
    assert paper["models"] == ["velankar_crnn", "velankar_parallel", "majority", "logistic"]
    assert merflow["models"] == ["velankar_crnn", "velankar_parallel"]
    for experiment in experiments.values():
        assert experiment["dataset"] == "4q" and experiment["features"] == ["logmel"]
        assert experiment["split"] == KFOLD and experiment["seeds"] == [0, 1, 2, 3]
        assert "train" not in experiment  # each recipe at its own defaults
    assert split_ids(**{k: KFOLD[k] for k in ("method", "seed", "n_folds", "repeats")})[-1] == (
        "kfold3-s0-r4-f2"
    )


def test_emotify_is_read_through_its_manifest(shared_data, tmp_path):
    config = _config("emotify", shared_data, tmp_path, "--folds", "2", "--repeats", "1")
    entry = config["datasets"]["emotify"]
    assert entry == {
        "adapter": "manifest",
        "root": str((shared_data / "emotify-sample").resolve()),
        "csv": "labels_3class.csv",
    }
    assert config["features"]["logmel"] == {"n_frames": 2584}  # whole 60 s clips
    assert list(config["experiments"]) == ["emotify-velankar-paper", "emotify-velankar-merflow"]
    split = config["experiments"]["emotify-velankar-merflow"]["split"]
    assert split == {**KFOLD, "n_folds": 2, "repeats": 1}


def test_vgmidi_uses_its_adapter_and_the_malik_models(shared_data, tmp_path):
    config = _config("vgmidi", shared_data, tmp_path, "--seeds", "3")
    assert config["datasets"]["vgmidi"] == {
        "adapter": "vgmidi",
        "root": str((shared_data / "vgmidi-sample").resolve()),
    }
    assert list(config["experiments"]) == ["vgmidi-malik-paper", "vgmidi-malik-merflow"]
    paper = config["experiments"]["vgmidi-malik-paper"]
    assert paper["models"] == ["malik_crnn", "malik_crnn_nb", "mean", "ridge"]
    assert paper["features"] == ["logmel_500ms"] and paper["seq_len"] == [10, 30]
    assert paper["seeds"] == [3] and "logmel" not in config["features"]


def test_synth_has_both_tasks_and_its_size_from_the_options(tmp_path):
    config = _config("synth", tmp_path, tmp_path, "--synth-clips", "18", "--synth-seconds", "8")
    assert config["datasets"]["synth"] == {
        "adapter": "synth",
        "n_clips": 18,
        "duration_s": 8.0,
        "n_classes": 3,
        "seed": 0,
    }
    assert config["features"]["logmel"] == {"n_frames": 640}  # padded to the networks' input
    assert list(config["experiments"]) == [
        "synth-velankar-paper",
        "synth-velankar-merflow",
        "synth-malik-paper",
        "synth-malik-merflow",
    ]
    assert _config("synth", tmp_path, tmp_path)["features"]["logmel"] == {"n_frames": 1292}


def test_models_epochs_and_recipes_narrow_the_experiments(tmp_path):
    options = ["--models", "velankar_crnn", "--epochs", "2", "--recipes", "merflow"]
    experiments = _config("synth", tmp_path, tmp_path, *options)["experiments"]
    assert list(experiments) == ["synth-velankar-merflow"]  # no Malik network: no regression
    (only,) = experiments.values()
    assert only["models"] == ["velankar_crnn", "majority", "logistic"]
    assert only["train"] == {"epochs": 2}


def test_the_workflow_runs_on_the_written_config(tmp_path, monkeypatch):
    args = bench.parse_args(["--out", str(tmp_path), "--cores", "3", "--gpus", "0"])
    config = bench.bench_config("synth", args, tmp_path / "synth")
    (tmp_path / "synth").mkdir()
    calls = []

    def run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(bench.subprocess, "run", run)
    bench.run_workflow(tmp_path / "synth", config, args.cores, args.gpus)
    ((cmd, kwargs),) = calls
    configfile = tmp_path / "synth" / "config.yaml"
    assert yaml.safe_load(configfile.read_text()) == config
    assert cmd[1:3] == ["-s", str(REPO / "Snakefile")]
    assert cmd[3:7] == ["-d", str(tmp_path / "synth"), "--configfile", str(configfile)]
    assert cmd[7:11] == ["--cores", "3", "--resources", "gpu=0"]
    assert kwargs["env"]["PATH"].startswith(str(bench.SNAKEMAKE.parent))  # merflow's CLI

    monkeypatch.setattr(
        bench.subprocess, "run", lambda cmd, **_: subprocess.CompletedProcess(cmd, 1)
    )
    with pytest.raises(SystemExit, match="snakemake failed in .*synth"):
        bench.run_workflow(tmp_path / "synth", config, args.cores, args.gpus)
