"""Config validation: a wrong key, type, name or path gives one message naming it."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from merflow import config as mfconfig
from merflow.errors import ConfigError
from merflow.features.registry import FEATURES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def default_config() -> dict:
    with (REPO / "config.yaml").open() as fh:
        return yaml.safe_load(fh)


def test_default_config_is_valid_and_gets_defaults(default_config):
    cfg = mfconfig.validate(copy.deepcopy(default_config))
    assert cfg["features"]["shards"] >= 1
    assert cfg["on_bad_audio"] in ("quarantine", "fail")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(resuls_dir="x"), "unknown key 'resuls_dir' at the top level"),
        (lambda c: c.update(on_bad_audio="ignore"), "'on_bad_audio' is 'ignore'; allowed values"),
        (
            lambda c: c["experiments"]["malik"]["models"].append("transformer"),
            "'experiments.malik.models.4' is 'transformer'; allowed values: 'malik_crnn_nb', "
            "'malik_crnn'",
        ),
        (
            lambda c: c["experiments"]["malik"]["features"].append("mfcc"),
            "'experiments.malik.features.2' is 'mfcc'",
        ),
        (lambda c: c["experiments"]["malik"].update(seq_len=[0]), "experiments.malik.seq_len.0"),
        (lambda c: c["experiments"]["malik"].update(seq_len=[-5]), "experiments.malik.seq_len.0"),
        (
            lambda c: c["experiments"]["malik"].update(dataset="deam"),
            "experiment 'malik' uses dataset 'deam', which is not defined",
        ),
        (
            lambda c: c["experiments"]["malik"].update(features=["logmel"]),
            "trains model 'malik_crnn' on none of its features",
        ),
        (
            lambda c: c["experiments"]["malik"].pop("seq_len"),
            "sets no 'seq_len'",
        ),
        (
            lambda c: c["datasets"].update(mine={"adapter": "folder"}),
            "dataset 'mine' has no 'root'",
        ),
        (
            lambda c: c["datasets"].update(mine={"adapter": "folder", "root": "/no/such/dir"}),
            "root /no/such/dir does not exist",
        ),
        (
            lambda c: c["datasets"].update(mine={"adapter": "mp4"}),
            "'datasets.mine.adapter' is 'mp4'; allowed values",
        ),
        (
            lambda c: c["experiments"]["malik"].update(split={"method": "holdout", "repeats": 3}),
            "experiment 'malik': split.repeats: 3 repeats of a holdout split",
        ),
        (
            lambda c: c["experiments"]["velankar"]["train"].update(epochs="many"),
            "'experiments.velankar.train.epochs': 'many' is not of type 'integer'",
        ),
    ],
)
def test_bad_config_names_the_key(default_config, mutate, expected):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        mfconfig.validate(cfg)
    assert expected in str(info.value)


def test_missing_dataset_root_says_what_to_download(default_config, tmp_path):
    cfg = copy.deepcopy(default_config)
    cfg["datasets"]["deam"] = {"adapter": "deam", "root": str(tmp_path / "DEAM")}
    with pytest.raises(ConfigError, match="Download DEAM .* and put it there"):
        mfconfig.validate(cfg)


def test_load_config_uses_safe_yaml(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("datasets: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(yaml.constructor.ConstructorError):
        mfconfig.load_config(path)


def test_run_grid_expands_models_features_lengths_and_seeds(default_config):
    cfg = mfconfig.validate(copy.deepcopy(default_config))
    runs = mfconfig.experiment_runs(cfg, "malik", ["holdout-s0"])
    crnn = [r for r in runs if r.model == "malik_crnn"]
    # 2 features x 2 sequence lengths x 2 seeds
    assert len(crnn) == 8
    assert {r.seq_len for r in crnn} == {"10", "30"}
    # deterministic baselines are fitted once, whatever the seeds
    ridge = [r for r in runs if r.model == "ridge"]
    assert len(ridge) == 2 and {r.seq_len for r in ridge} == {mfconfig.NO_SEQ_LEN}
    assert len({r.path for r in runs}) == len(runs)


def test_a_model_input_longer_than_the_stored_log_mel_is_named():
    with (REPO / "config.yaml").open() as fh:
        config = yaml.safe_load(fh)
    config["features"]["logmel"] = {"n_frames": 320}
    with pytest.raises(ConfigError, match=r"input_frames.*n_frames' stores 320"):
        mfconfig.validate(copy.deepcopy(config))
    config["experiments"]["velankar"]["train"]["input_frames"] = 320
    mfconfig.validate(config)


@pytest.mark.parametrize("window", [1.0, 0.25])
def test_a_window_the_targets_cannot_be_aligned_to_is_refused(default_config, window):
    """The targets sit on the 0.5 s grid: 1.0 s windows would match half of them."""
    config = copy.deepcopy(default_config)
    config["features"]["logmel_500ms"] = {"window_s": window}
    expected = rf"'features.logmel_500ms.window_s' is {window:g}; the targets cannot be aligned"
    with pytest.raises(ConfigError, match=expected):
        mfconfig.validate(config)
    config["features"]["logmel_500ms"] = {"window_s": 0.5}
    mfconfig.validate(config)


def test_the_frame_count_check_covers_every_frame_level_feature(default_config, monkeypatch):
    """A second frame-level feature (the registry's logmel under another name) is checked as
    logmel is: its stored frames must hold the network's input."""
    monkeypatch.setitem(
        FEATURES, "logmel_hq", dataclasses.replace(FEATURES["logmel"], name="logmel_hq")
    )
    config = copy.deepcopy(default_config)
    config["features"]["logmel_hq"] = {"n_frames": 320}
    config["experiments"]["velankar"]["features"] = ["logmel_hq"]
    with pytest.raises(ConfigError, match=r"'features.logmel_hq.n_frames' stores 320"):
        mfconfig.validate(config)
