"""A wrong config stops the real entry points with one message naming the key, and exit != 0.

tests/test_config.py checks :func:`merflow.config.validate` case by case (unknown key, model,
feature, adapter; seq_len 0 and -5; an undefined dataset; a missing root; wrong types) and
tests/test_workflow.py one unknown model through Snakemake. Here the same kinds of mistakes go
through ``snakemake -n`` (the config is checked while the workflow is parsed, so a dry run shows
exactly what a real run would) and through the ``merflow`` subcommands a rule calls.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _snakemake import TINY
from workflow_utils import run_snakemake, snakemake

from merflow.io import write_table

MERFLOW = Path(sys.executable).with_name("merflow")


def changed(edit) -> dict:
    config = copy.deepcopy(TINY)
    edit(config)
    return config


MISTAKES = {
    "unknown feature of an experiment": (
        lambda c: c["experiments"]["malik"].update(features=["mfcc"]),
        "'experiments.malik.features.0' is 'mfcc'; give a feature name (logmel,",
    ),
    "unknown feature section": (
        lambda c: c["features"].update(mfcc={}),
        "unknown key 'mfcc' under 'features'",
    ),
    "unknown feature parameter": (
        lambda c: c["features"]["logmel"].update(n_melz=64),
        "features.logmel has unknown key(s) n_melz; allowed: crop",
    ),
    "bad feature parameter value": (
        lambda c: c["features"].update(logmel_500ms={"window_s": -0.5}),
        "features.logmel_500ms.window_s = -0.5; expected a number greater than 0",
    ),
    "seq_len 0": (
        lambda c: c["experiments"]["malik"].update(seq_len=[0]),
        "'experiments.malik.seq_len.0': 0 is less than the minimum of 1",
    ),
    "seq_len -1": (
        lambda c: c["experiments"]["malik"].update(seq_len=[-1]),
        "'experiments.malik.seq_len.0': -1 is less than the minimum of 1",
    ),
    "dataset root missing from the disk": (
        lambda c: c["datasets"].update(mine={"adapter": "folder", "root": "/no/such/folder"}),
        "dataset 'mine': root /no/such/folder does not exist",
    ),
    "dataset without a root": (
        lambda c: c["datasets"].update(mine={"adapter": "deam"}),
        "dataset 'mine' has no 'root'",
    ),
    "n_mels beyond the FFT bins": (
        lambda c: c["features"]["logmel"].update(n_mels=100000),
        "features.logmel.n_mels = 100000; expected an integer from 1 to 512",
    ),
    "n_fft not a power of two": (
        lambda c: c["features"].update(logmel_500ms={"n_fft": 1000}),
        "features.logmel_500ms.n_fft = 1000; expected a power of two",
    ),
    "n_frames unbounded": (
        lambda c: c["features"]["logmel"].update(n_frames=10**7),
        "features.logmel.n_frames = 10000000; expected an integer from 1 to 20000",
    ),
    "unknown option of a baseline": (
        lambda c: c.update(model_options={"logistic": {"CC": 3}}),
        "model_options.logistic has unknown option(s) 'CC'; allowed: C, max_iter",
    ),
    "unknown option of a network": (
        lambda c: c.update(model_options={"velankar_crnn": {"filterz": 32}}),
        "model_options.velankar_crnn has unknown option(s) 'filterz'; allowed: dropout, filters",
    ),
    "logistic C of 0": (
        lambda c: c.update(model_options={"logistic": {"C": 0}}),
        "model_options.logistic.C = 0; expected a number > 0",
    ),
    "negative ridge alpha": (
        lambda c: c.update(model_options={"ridge": {"alpha": -1}}),
        "model_options.ridge.alpha = -1; expected a number >= 0",
    ),
    "svm C grid of text": (
        lambda c: c.update(model_options={"svm": {"C": "abc"}}),
        "model_options.svm.C = 'abc'; expected a non-empty list, each a number > 0",
    ),
    "options of an unknown model": (
        lambda c: c.update(model_options={"ridgee": {"alpha": 2}}),
        "model_options names unknown model 'ridgee'; known models: malik_crnn_nb",
    ),
    "empty results_dir": (
        lambda c: c.update(results_dir=""),
        "'results_dir' is empty, which would put every output at the filesystem root",
    ),
    "experiment naming an undefined dataset": (
        lambda c: c["experiments"]["velankar"].update(dataset="emotify"),
        "experiment 'velankar' uses dataset 'emotify', which is not defined",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_snakemake_stops_on_a_wrong_config_naming_the_key(mistake, tmp_path):
    edit, expected = MISTAKES[mistake]
    out = snakemake(tmp_path, changed(edit), "-n")
    assert out.returncode != 0
    assert expected in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_dataset_root_that_is_a_file_stops_snakemake(tmp_path):
    root = tmp_path / "songs.zip"
    root.write_bytes(b"PK\x03\x04 not unpacked")
    config = changed(lambda c: c["datasets"].update(mine={"adapter": "folder", "root": str(root)}))
    out = snakemake(tmp_path, config, "-n")
    assert out.returncode != 0
    assert f"dataset 'mine': root {root} is a file, not a folder" in out.stdout + out.stderr
    assert "does not exist" not in out.stdout + out.stderr


def renamed(section: str, old: str, new: str):
    def edit(config: dict) -> None:
        config[section][new] = config[section].pop(old)
        if section == "datasets":
            for experiment in config["experiments"].values():
                experiment["dataset"] = new

    return edit


@pytest.mark.slow
@pytest.mark.parametrize(
    ("section", "old", "name"),
    [("datasets", "tiny", n) for n in ("4q.v2", "my songs", "a;b", "../x")]
    + [("experiments", "malik", n) for n in ("4q.v2", "a;b")],
)
def test_a_name_that_cannot_be_a_path_stops_snakemake(section, old, name, tmp_path):
    out = snakemake(tmp_path, changed(renamed(section, old, name)), "-n")
    assert out.returncode != 0
    message = out.stdout + out.stderr
    assert f"the name {name!r} under '{section}' cannot be used in file paths" in message
    assert "letters, digits, '_' and '-'" in message
    assert "Traceback" not in message and "MissingInputException" not in message


@pytest.mark.slow
def test_a_preset_naming_an_undefined_dataset_stops_snakemake(tmp_path):
    """A preset replaces the demo config (Snakefile): the demo's datasets do not rescue it."""
    demo = changed(lambda c: c["datasets"].update(deam={"adapter": "synth"}))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(demo))
    preset = changed(lambda c: c["experiments"]["malik"].update(dataset="deam"))
    (tmp_path / "preset.yaml").write_text(yaml.safe_dump(preset))
    out = run_snakemake(tmp_path, "-n", configfile=tmp_path / "preset.yaml")
    assert out.returncode != 0
    message = out.stdout + out.stderr
    assert "experiment 'malik' uses dataset 'deam', which is not defined" in message
    assert "(defined: tiny)" in message


# --- the subcommands the rules call -----------------------------------------------------------


def merflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MERFLOW), *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def assert_user_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in run.stderr


def test_index_with_a_missing_root_names_the_key(tmp_path):
    spec = {"name": "mine", "adapter": "folder", "root": str(tmp_path / "nowhere")}
    run = merflow("index", "--spec", json.dumps(spec), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert_user_error(run, str(tmp_path / "nowhere"), "'datasets.mine.root'")


def test_index_with_an_unknown_adapter_lists_the_adapters(tmp_path):
    spec = {"name": "mine", "adapter": "zip", "root": str(tmp_path)}
    run = merflow("index", "--spec", json.dumps(spec), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert_user_error(run, "unknown adapter 'zip'", "deam, folder, manifest, pmemo, synth")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--feature", "mfcc"], "unknown feature 'mfcc'; merflow computes: logmel"),
        (["--feature", "logmel", "--params", '{"n_melz": 3}'], "unknown key(s) n_melz"),
    ],
)
def test_features_with_an_unknown_name_or_parameter_name_it(args, expected, tmp_path):
    write_table(pd.DataFrame({"clip_id": ["a"], "path": ["a.wav"], "shard": [0]}), tmp_path / "c")
    out = ["--out", str(tmp_path / "f.parquet"), "--quarantine", str(tmp_path / "q.parquet")]
    clips = ["--clips", str(tmp_path / "c"), "--shard", "0"]
    run = merflow("features", *clips, *args, *out, cwd=tmp_path)
    assert_user_error(run, expected)
    assert not (tmp_path / "f.parquet").exists()


def train_args(tmp_path: Path, model: str, seq_len: str) -> list[str]:
    """Arguments of `merflow train`; the tables need not exist, the config is checked first."""
    tables = {name: str(tmp_path / f"{name}.parquet") for name in ("features", "clips", "split")}
    return [
        "train",
        *("--run-dir", str(tmp_path / "run"), "--model", model, "--seq-len", seq_len),
        *("--features", tables["features"], "--clips", tables["clips"]),
        *("--split", tables["split"], "--gpu", "0"),
    ]


def test_train_with_an_unknown_model_lists_the_models(tmp_path):
    run = merflow(*train_args(tmp_path, "transformer", "10"), cwd=tmp_path)
    assert_user_error(run, "unknown model 'transformer'; known models: malik_crnn")


@pytest.mark.parametrize("seq_len", ["0", "-1"])
def test_train_with_a_sequence_length_below_one_names_it(seq_len, tmp_path):
    run = merflow(*train_args(tmp_path, "malik_crnn", seq_len), cwd=tmp_path)
    assert_user_error(run, "seq_len")
