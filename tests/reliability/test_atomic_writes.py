"""A writer killed mid-write never leaves a file that looks whole under its final name.

A child process writes a Parquet table (merflow.io.write_table), a JSON file (write_json, as
metrics.json) or a checkpoint (training's last.pt writer) and is SIGKILLed at the last moment
before the rename: either with its temporary file complete, or with the temporary file cut to
half, as a kill during the write leaves it. The final name must hold the previous version intact
(or nothing), and the temporary file must be one that no reader or glob of the outputs picks up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from merflow.io import read_json, read_table, write_json, write_table

CHILD = r"""
import os, sys, time
from pathlib import Path

kind, target, moment = sys.argv[1:4]

def stall(temporary, final):  # os.replace, the rename that would publish the file
    if moment == "mid-write":
        size = os.path.getsize(temporary)
        os.truncate(temporary, size // 2)
    print(temporary, flush=True)
    time.sleep(300)

os.replace = stall
if kind == "parquet":
    import pandas as pd
    from merflow.io import write_table
    write_table(pd.DataFrame({"clip_id": ["new"] * 5000, "x": range(5000)}), target)
elif kind == "json":
    from merflow.io import write_json
    write_json({"rmse": [0.5] * 5000, "version": "new"}, target)
else:
    import torch
    from merflow.learn.checkpoints import save_atomic
    save_atomic({"model": {"w": torch.ones(5000)}, "progress": {"epoch": 9}}, Path(target))
"""

OLD = {
    "parquet": lambda path: write_table(pd.DataFrame({"clip_id": ["old"], "x": [1]}), path),
    "json": lambda path: write_json({"version": "old"}, path),
    "checkpoint": lambda path: torch.save({"model": {"w": torch.zeros(3)}}, path),
}
READ = {
    "parquet": lambda path: read_table(path)["clip_id"].tolist(),
    "json": lambda path: read_json(path)["version"],
    "checkpoint": lambda path: torch.load(path, weights_only=True)["model"]["w"].tolist(),
}
NAMES = {"parquet": "shard-0.parquet", "json": "metrics.json", "checkpoint": "last.pt"}


def kill_before_rename(kind: str, target: Path, moment: str) -> Path:
    """Run the writer until it is about to rename, SIGKILL it; return its temporary file."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(target), moment],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        temporary = Path(child.stdout.readline().strip())
        assert temporary.name, child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=300)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return temporary


def unreadable(kind: str, path: Path) -> bool:
    try:
        READ[kind](path)
    except Exception:  # each format's own error: ArrowInvalid, JSONDecodeError, RuntimeError
        return True
    return False


@pytest.mark.parametrize("moment", ["complete", "mid-write"])
@pytest.mark.parametrize("kind", sorted(NAMES))
def test_a_kill_before_the_rename_keeps_the_previous_file(kind, moment, tmp_path):
    target = tmp_path / NAMES[kind]
    OLD[kind](target)
    before = READ[kind](target)

    temporary = kill_before_rename(kind, target, moment)

    assert READ[kind](target) == before
    staging = temporary.parent  # a hidden folder beside the target: no glob of outputs sees it
    assert staging.parent == target.parent and temporary.name == target.name
    assert staging.name.startswith(".") and staging.suffix == ".part"
    assert list(tmp_path.glob(f"*{target.suffix}")) == [target]
    assert unreadable(kind, temporary) == (moment == "mid-write")


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_a_kill_during_the_first_write_leaves_no_file_at_all(kind, tmp_path):
    target = tmp_path / NAMES[kind]
    kill_before_rename(kind, target, "mid-write")
    assert not target.exists()  # so Snakemake, and merflow's resume, see no output and redo it


def test_the_rename_publishes_the_whole_file(tmp_path):
    """The same writers, not killed: the control that the child's writes are real."""
    target = tmp_path / "metrics.json"
    done = subprocess.run(
        [sys.executable, "-c", CHILD.replace("os.replace = stall", ""), "json", str(target), "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["version"] == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_outputs_get_the_usual_permissions_not_those_of_a_temporary_file(tmp_path):
    old_mask = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "metrics.json")
    finally:
        os.umask(old_mask)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_a_name_at_the_file_system_limit_is_written_and_rewritten(tmp_path):
    """The temporary name is never longer than the final one (issue 36: predict's long names)."""
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    table = tmp_path / ("t" * (longest - len(".parquet")) + ".parquet")
    report = tmp_path / ("r" * (longest - len(".json")) + ".json")
    for version in ("old", "new"):
        write_table(pd.DataFrame({"clip_id": [version]}), table)
        write_json({"version": version}, report)
    assert (
        read_table(table)["clip_id"].tolist() == ["new"] and read_json(report)["version"] == "new"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([table.name, report.name])


def test_a_killed_writer_of_a_long_name_leaves_debris_the_next_write_removes(tmp_path):
    target = tmp_path / ("m" * (os.pathconf(tmp_path, "PC_NAME_MAX") - len(".json")) + ".json")
    temporary = kill_before_rename("json", target, "mid-write")
    other = tmp_path / "other.json"
    write_json({"version": "other"}, other)
    assert temporary.exists()  # the debris of another file is not this writer's to remove
    write_json({"version": "new"}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, other.name])
