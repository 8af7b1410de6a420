"""The CLI: stages without Snakemake, and errors that reach the user as one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_datasets import write_deam_features

from merflow import cli
from merflow.io import read_table, write_table
from merflow.learn.data import load_windowed


def test_deams_own_features_become_a_feature_table_training_can_load(tmp_path):
    expected = write_deam_features(tmp_path / "deam" / "features", "2", 4, seed=3)
    write_deam_features(tmp_path / "deam" / "features", "7", 3, seed=4)
    clips = tmp_path / "clips.parquet"
    write_table(pd.DataFrame({"clip_id": ["2"]}), clips)  # only indexed clips are read
    out = tmp_path / "features" / "deam_opensmile.parquet"
    quarantine = tmp_path / "features" / "deam_opensmile.quarantine.parquet"
    argv = ["provided-features", "--clips", str(clips), "--root", str(tmp_path / "deam")]
    assert cli.main([*argv, "--out", str(out), "--quarantine", str(quarantine)]) == 0
    data, problems = load_windowed(out, ["2", "7"])
    assert data.clip_ids == ["2"] and list(data.times[0]) == [0.5, 1.0, 1.5, 2.0]
    assert [p["clip_id"] for p in problems] == ["7"]  # not indexed, so not read
    np.testing.assert_allclose(data.features[0], expected, rtol=1e-6)
    assert read_table(quarantine).empty


def test_a_user_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    clips = tmp_path / "clips.parquet"
    write_table(pd.DataFrame({"clip_id": ["2"]}), clips)
    argv = ["provided-features", "--clips", str(clips), "--root", str(tmp_path / "nowhere")]
    code = cli.main([*argv, "--out", str(tmp_path / "o.parquet"), "--quarantine", "q.parquet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("merflow provided-features: error:") and "nowhere" in err
    assert "Traceback" not in err


def test_a_missing_input_file_is_named_without_a_traceback(tmp_path, capsys):
    missing = tmp_path / "clips.parquet"
    argv = ["features", "--clips", str(missing), "--feature", "logmel", "--shard", "0"]
    code = cli.main([*argv, "--out", str(tmp_path / "o.parquet"), "--quarantine", "q.parquet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("merflow features: error:") and str(missing) in err
