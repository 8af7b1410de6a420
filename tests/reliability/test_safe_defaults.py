"""Safe defaults: nothing merflow reads can run code, and a dataset cannot reach outside its root.

Already tested elsewhere: :func:`merflow.config.load_config` refuses a ``!!python`` YAML tag
(tests/test_config.py); the manifest adapter refuses ``../`` paths and honours
``allow_outside_root`` (tests/test_datasets.py, and the label faults of test_bad_labels.py, which
include an absolute path and a DEAM song id ``../../secret/x``); file names with ``$(…)`` and ``;``
never reach a shell (test_bad_audio.py, test_workflow_bad_audio.py). Here: checkpoints and
``.npz`` files holding a pickled payload, a ``!!python`` tag in the file given to Snakemake with
``--configfile``, and the ``allow_outside_root`` switch at the index stage.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _fixtures_labels import path_outside_root, song_id_leading_outside_root, write_wav
from workflow_utils import run_snakemake

from merflow.datasets.index import build_index
from merflow.errors import MerflowError
from merflow.io import read_table, write_json
from merflow.learn import fitted
from merflow.learn.checkpoints import resume
from merflow.learn.data import ZScore
from merflow.learn.inference import load_predictor


class Payload:
    """Unpickling it creates the folder ``marker``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(2)}, "build": Payload(marker)}, path)
    return path


def test_the_payload_is_live_when_loaded_unsafely(tmp_path):
    """The control: without weights_only the checkpoint below does run its code."""
    checkpoint = malicious_checkpoint(tmp_path / "best.pt", tmp_path / "marker")
    torch.load(checkpoint, weights_only=False)
    assert (tmp_path / "marker").is_dir()


def test_a_best_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = {"model": "malik_crnn", "features_path": "f", "clips_path": "c", "split_path": "s"}
    write_json({"config": config}, run / "run.json")
    malicious_checkpoint(run / "best.pt", tmp_path / "marker")
    with pytest.raises(MerflowError, match="weights_only"):
        load_predictor(run)  # what `merflow evaluate` and `merflow predict` call
    assert not (tmp_path / "marker").exists()


def test_a_last_checkpoint_with_a_pickled_object_is_set_aside_unread(tmp_path, caplog):
    last = malicious_checkpoint(tmp_path / "last.pt", tmp_path / "marker")
    torch.save({}, tmp_path / "best.pt")
    progress, kept = resume(last, {"data": "data"}, None, None, None, torch.device("cpu"))
    assert progress.epoch == 0 and kept == {}  # a fresh start: nothing of it was used
    assert not last.exists() and (tmp_path / "last.pt.damaged").is_file()
    assert "weights_only" in caplog.text and "starting afresh" in caplog.text
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    ("name", "load"), [("norm.npz", ZScore.load), ("baseline.npz", fitted.load)]
)
def test_npz_files_with_pickled_objects_are_refused(name, load, tmp_path):
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(tmp_path / "marker")
    arrays = {"mean": np.zeros(2), "std": np.ones(2), "axis": np.int64(-1)}
    np.savez(tmp_path / "plain.npz", **arrays)  # the same file without the payload loads
    np.savez(tmp_path / name, **{**arrays, "mean": payload}, baseline=np.array("mean"))
    ZScore.load(tmp_path / "plain.npz")
    with pytest.raises(MerflowError, match=f"{name} is damaged.*allow_pickle=False.*train it"):
        load(tmp_path / name)
    assert not (tmp_path / "marker").exists()


@pytest.mark.slow
def test_snakemake_refuses_a_python_tag_in_a_configfile(tmp_path):
    marker = tmp_path / "marker"
    configfile = tmp_path / "config.yaml"
    configfile.write_text(f"datasets: !!python/object/apply:os.mkdir ['{marker}']\n")
    out = run_snakemake(tmp_path, "-n", configfile=configfile)
    assert out.returncode != 0
    assert "Config file is not valid JSON or YAML" in out.stdout + out.stderr  # refused unbuilt
    assert not marker.exists()


@pytest.mark.parametrize("fault", [path_outside_root, song_id_leading_outside_root])
def test_allow_outside_root_lets_such_paths_in(fault, tmp_path):
    case = fault(tmp_path / "data")
    result = build_index({**case.spec, "allow_outside_root": True}, tmp_path / "out")
    assert result.n_quarantined == 0
    assert set(case.bad_ids) <= set(read_table(tmp_path / "out" / "clips.parquet")["clip_id"])


def test_a_symlink_inside_the_root_may_point_anywhere(tmp_path):
    """Documented (datasets/manifest.py): a dataset folder of symlinks into shared storage."""
    target = write_wav(tmp_path / "shared storage" / "x.wav")
    root = tmp_path / "data"
    for name, label in (("a", "happy"), ("b", "sad")):
        write_wav(root / label / f"{name}.wav")
    (root / "sad" / "link.wav").symlink_to(target)
    build_index({"name": "s", "adapter": "folder", "root": root}, tmp_path / "out")
    clips = read_table(tmp_path / "out" / "clips.parquet").set_index("clip_id")
    assert clips.loc["link", "path"] == str(root / "sad" / "link.wav")
