"""Bad labels at index time, under both policies (bad audio: test_bad_audio.py); classes a split
cannot serve, at the splits stage.

``fail``: the run stops with a DatasetError naming the file or row and the fix, and writes nothing.
``quarantine``: exactly the bad clip is listed (with a reason), every other clip is indexed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _fixtures_labels import GOOD_IDS, LABEL_FAULTS, Case, labelled

from merflow.datasets.index import build_index
from merflow.errors import DatasetError
from merflow.io import read_table, write_table
from merflow.splits import make_splits

MERFLOW = Path(sys.executable).with_name("merflow")


def assert_fails_naming(case: Case, out: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        build_index(case.spec, out, on_bad_audio="fail")
    message = str(caught.value)
    for fragment in [case.reason, *case.names, "on_bad_audio: quarantine"]:
        assert fragment in message
    assert not out.exists(), "a failed index must not leave tables behind"


def assert_quarantines_exactly(case: Case, out: Path) -> None:
    result = build_index(case.spec, out, on_bad_audio="quarantine")
    quarantine = read_table(out / "quarantine.parquet")
    clips = read_table(out / "clips.parquet")
    assert sorted(quarantine["clip_id"]) == sorted(case.bad_ids)
    assert all(case.reason in reason for reason in quarantine["reason"])
    assert set(quarantine["stage"]) == {"index"}
    assert not set(case.bad_ids) & set(clips["clip_id"])
    assert len(clips) == result.n_clips >= 2  # the good clips went on
    assert result.n_quarantined == len(case.bad_ids)


@pytest.mark.parametrize("fault", sorted(LABEL_FAULTS))
def test_label_fault_fails_with_a_message_naming_file_and_fix(fault, tmp_path):
    assert_fails_naming(LABEL_FAULTS[fault](tmp_path / "data"), tmp_path / "out")


@pytest.mark.parametrize("fault", sorted(LABEL_FAULTS))
def test_label_fault_quarantines_only_the_bad_clip(fault, tmp_path):
    assert_quarantines_exactly(LABEL_FAULTS[fault](tmp_path / "data"), tmp_path / "out")


def test_good_fixture_has_no_fault(tmp_path):
    """The builders' base datasets are clean, so each fault above is the only one."""
    build_index(labelled(tmp_path / "data"), tmp_path / "out", on_bad_audio="fail")
    assert sorted(read_table(tmp_path / "out" / "clips.parquet")["clip_id"]) == list(GOOD_IDS)


# --- classes a split cannot serve: the splits stage stops (`merflow splits`) ------------------


def split_cli(clips: Path, settings: dict, out: Path) -> subprocess.CompletedProcess:
    args = ["splits", "--clips", str(clips), "--settings", json.dumps(settings)]
    args += ["--split-id", f"holdout-s{settings['seed']}", "--out", str(out)]
    return subprocess.run([str(MERFLOW), *args], capture_output=True, text=True, timeout=120)


def clips_with_a_rare_class(path: Path, n_rare: int) -> pd.DataFrame:
    labels = ["common"] * 30 + ["rare"] * n_rare
    ids = [f"clip{i:02d}" for i in range(len(labels))]
    clips = pd.DataFrame({"clip_id": ids, "group": ids, "label": labels})
    write_table(clips, path)
    return clips


def seed_stranding_a_class(clips: pd.DataFrame) -> int:
    """A seed whose unstratified holdout puts the single 'rare' song in test only."""
    for seed in range(100):
        try:
            make_splits(clips, None, method="holdout", seed=seed, stratify="none")
        except DatasetError as err:
            if "appear in test but not in train" in str(err):
                return seed
    raise AssertionError("no seed puts the rare class in test only")


def test_a_class_only_in_the_test_split_stops_the_splits_stage(tmp_path):
    clips = clips_with_a_rare_class(tmp_path / "clips.parquet", n_rare=1)
    settings = {"method": "holdout", "seed": seed_stranding_a_class(clips), "stratify": "none"}
    run = split_cli(tmp_path / "clips.parquet", settings, tmp_path / "split.parquet")
    assert run.returncode == 2
    assert "class(es) ['rare'] appear in test but not in train" in run.stderr
    assert "split.stratify: label" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "split.parquet").exists()


def test_a_class_too_small_for_train_val_and_test_stops_the_splits_stage(tmp_path):
    clips_with_a_rare_class(tmp_path / "clips.parquet", n_rare=2)
    settings = {"method": "holdout", "seed": 0, "val_fraction": 0.2}  # stratified by label
    run = split_cli(tmp_path / "clips.parquet", settings, tmp_path / "split.parquet")
    assert run.returncode == 2
    assert "'rare' has 2, but at least 3 are needed" in run.stderr
    assert not (tmp_path / "split.parquet").exists()
