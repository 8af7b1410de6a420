"""The whole workflow on a folder dataset full of bad, odd and awkwardly named files (Snakemake).

``quarantine``: the run completes, every broken file is listed with its reason, and the report
says how many clips were left out and why. ``fail``: the run stops at the index stage, its log
naming the files. The dataset folder's name holds ``$(touch pwned)``, ``;`` and quotes, and it
reaches the shell of every job that reads the dataset.
"""

from __future__ import annotations

import pandas as pd
import pytest
from _fixtures_audio import all_cases, broken_cases, no_command_ran, stem, write_folder_dataset
from workflow_utils import snakemake

from merflow.io import read_json, read_table

pytestmark = pytest.mark.slow

ROOT_NAME = 'data $(touch pwned); it\'s "q"'
RUN = "bad/velankar/runs/logmel/velankar_crnn/lenfull/holdout-s0/seed0"


def config(root, policy: str) -> dict:
    return {
        "on_bad_audio": policy,
        "datasets": {"bad": {"adapter": "folder", "root": str(root)}},
        "features": {"shards": 2, "logmel": {"n_frames": 64}},
        "experiments": {
            "velankar": {
                "dataset": "bad",
                "features": ["logmel"],
                "models": ["velankar_crnn", "majority"],
                "seeds": [0],
                "split": {"method": "holdout", "test_fraction": 0.34, "val_fraction": 0.2},
                "train": {"epochs": 1, "patience": 1, "batch_size": 8, "input_frames": 64},
            }
        },
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_workflow") / ROOT_NAME
    write_folder_dataset(root, all_cases())
    return root


def test_quarantine_run_goes_on_and_the_report_says_what_was_left_out(dataset, tmp_path):
    (tmp_path / "work").mkdir()
    out = snakemake(tmp_path / "work", config(dataset, "quarantine"))
    assert out.returncode == 0, out.stderr[-4000:]
    results = tmp_path / "work" / "results" / "bad"
    at_index = {stem(c): c.reason for c in broken_cases() if c.ending == "index"}
    at_features = {stem(c): c.reason for c in broken_cases() if c.ending == "features"}

    index_quarantine = read_table(results / "quarantine.parquet").set_index("clip_id")
    assert sorted(index_quarantine.index) == sorted(at_index)
    feature_quarantine = read_table(results / "features" / "logmel.quarantine.parquet")
    assert sorted(feature_quarantine["clip_id"]) == sorted(at_features)

    n_usable = len(read_table(results / "clips.parquet")) - len(at_features)
    assert len(read_table(results / "features" / "logmel.parquet")) == n_usable == 20
    assert 0 <= read_json(results.parent / RUN / "metrics.json")["accuracy"] <= 1

    report = (results / "velankar" / "report" / "index.md").read_text()
    assert f"{len(at_index) + len(at_features)} clip(s) quarantined" in report
    for reason in {**at_index, **at_features}.values():
        assert reason in report
    listed = pd.read_csv(results / "velankar" / "report" / "quarantine.csv")["clip_id"]
    assert sorted(listed) == sorted({**at_index, **at_features})
    assert no_command_ran(tmp_path, dataset.parent)


def test_fail_run_stops_at_the_index_naming_the_files(dataset, tmp_path):
    (tmp_path / "work").mkdir()
    out = snakemake(tmp_path / "work", config(dataset, "fail"))
    assert out.returncode != 0
    log = (tmp_path / "work" / "results" / "logs" / "index" / "bad.log").read_text()
    for case in broken_cases():
        if case.ending == "index":
            assert case.file_name in log and case.reason in log
    assert "on_bad_audio: quarantine" in log
    assert not (tmp_path / "work" / "results" / "bad" / "clips.parquet").exists()
    assert no_command_ran(tmp_path, dataset.parent)
