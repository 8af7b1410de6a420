"""merflow status: the state of run folders built by hand, the listing, planned runs, and what a
real (interrupted) training run leaves for it to read."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from test_training import regression_config, write_regression_tables
from workflow_utils import tiny_config

from merflow import cli, status
from merflow.models.registry import MODELS
from merflow.runs import RETRAIN, Run

EXPERIMENT = "exp"
FIELDS = ("dataset", "experiment", "feature", "model", "seq_len", "split", "seed")


def run_of(seed: int, model: str = "malik_crnn", seq_len: str = "10") -> Run:
    return Run(EXPERIMENT, "deam", "compare_500ms", model, seq_len, "holdout-s0", seed)


def make_folder(results: Path, run: Run) -> Path:
    folder = results / run.path
    folder.mkdir(parents=True)
    return folder


def write_done(results: Path, run: Run, best: float = 0.1234, wall: float = 125.0) -> Path:
    folder = make_folder(results, run)
    record = {
        "config": {"model": run.model, "seed": run.seed},
        "device": "cuda:1",
        "wall_time_s": wall,
        "result": {"best_val_metric": best, "epochs_run": 10},
    }
    (folder / "run.json").write_text(json.dumps(record))
    (folder / "train.log").write_text("...\nmerflow: done: {...}\n")
    model_file = "baseline.npz" if MODELS[run.model].baseline else "best.pt"
    for name in ("norm.npz", model_file):  # status only sees that they are there
        (folder / name).write_bytes(b"")
    return folder


def write_history(folder: Path, rows: int) -> None:
    lines = ["epoch,train_loss,val_loss,train_metric,val_metric,seconds"]
    lines += [f"{e},0.5,0.6,0.5,0.6,1.0" for e in range(1, rows + 1)]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")


def write_training(results: Path, run: Run, pid: int, started_s_ago: float = 90) -> Path:
    folder = make_folder(results, run)
    started = datetime.now(UTC) - timedelta(seconds=started_s_ago)
    state = {
        "epochs": 10,
        "device": "cpu",
        "started_at": started.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": pid,
    }
    (folder / "status.json").write_text(json.dumps(state))
    write_history(folder, 3)
    (folder / "train.log").write_text("12:00:01 INFO merflow.training: epoch 3/10 ...\n")
    return folder


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def results(tmp_path) -> Path:
    """One run in each state."""
    results = tmp_path / "results"
    write_done(results, run_of(0))
    write_training(results, run_of(1), pid=1)  # alive (init), or at least not provably gone
    write_training(results, run_of(2), pid=dead_pid())
    failed = make_folder(results, run_of(3))
    (failed / "train.log").write_text("INFO loading\nmerflow train: error: features.parquet: ...\n")
    crashed = write_training(results, run_of(4), pid=1)
    (crashed / "train.log").write_text(
        'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: CUDA oom\n'
    )
    make_folder(results, run_of(5))  # Snakemake made the folder; nothing written yet
    (results / "deam" / EXPERIMENT / "runs" / "notes").mkdir()  # not a run folder
    return results


def listed(capsys, *argv: str) -> tuple[list[dict[str, str]], str]:
    """The lines of ``merflow status`` as {column: cell} (split on runs of 2+ spaces)."""
    assert cli.main(["status", *argv]) == 0
    return parsed(capsys.readouterr().out)


def parsed(out: str) -> tuple[list[dict[str, str]], str]:
    header, *rows, summary = out.splitlines()
    assert header.split() == list(status.COLUMNS)
    starts = [header.index(name) for name in status.COLUMNS]
    ends = [*starts[1:], None]
    return [
        {name: line[a:b].strip() for name, a, b in zip(status.COLUMNS, starts, ends, strict=True)}
        for line in rows
    ], summary


def test_each_run_folder_gets_its_state_and_fields(results, capsys):
    rows, summary = listed(capsys, str(results))
    by_seed = {int(row["seed"]): row for row in rows}
    assert sorted(by_seed) == [0, 1, 2, 3, 4, 5]
    for row in rows:
        assert [row[f] for f in FIELDS[:-1]] == [
            "deam",
            EXPERIMENT,
            "compare_500ms",
            "malik_crnn",
            "10",
            "holdout-s0",
        ]
    done = by_seed[0]
    assert (done["state"], done["best_val"], done["wall_time"], done["device"]) == (
        "done",
        "0.1234",
        "2m05s",
        "cuda:1",
    )
    training = by_seed[1]
    assert training["state"] == "training epoch 3 of 10" and training["device"] == "cpu"
    assert training["wall_time"].startswith("1m") and training["best_val"] == "-"
    assert by_seed[2]["state"] == "stopped epoch 3 of 10"  # its process is gone
    assert by_seed[3]["state"] == "failed" and by_seed[4]["state"] == "failed"
    assert by_seed[5]["state"] == "queued" and by_seed[5]["device"] == "-"
    assert summary == "6 runs: 1 done, 1 training, 1 stopped, 2 failed, 1 queued"


def test_a_run_trained_by_merflow_is_read_while_training_and_when_done(tmp_path):
    tables = write_regression_tables(tmp_path / "tables")
    results = tmp_path / "results"
    run = run_of(0)
    config = regression_config(tables, epochs=4)

    def stop_after_second_epoch(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    from merflow.learn.training import train

    with pytest.raises(KeyboardInterrupt):
        train(results / run.path, config, on_epoch_end=stop_after_second_epoch)
    (line,) = status.collect(results)[0]
    assert (line.label, line.device) == ("training epoch 2 of 4", "cpu")  # this process lives
    train(results / run.path, config)
    (line,) = status.collect(results)[0]
    assert (line.state, line.device) == ("done", "cpu") and line.best_val is not None
    assert line.wall_time_s is not None


@pytest.mark.parametrize(
    ("name", "model", "deleted"),
    [
        ("malik", "malik_crnn", "best.pt"),
        ("ridge", "ridge", "baseline.npz"),
        ("ridge", "ridge", "norm.npz"),
    ],
)
def test_a_finished_run_without_its_model_files_says_what_is_missing_and_what_to_do(
    tiny, tmp_path, capsys, name, model, deleted
):
    results = tmp_path / "results"
    whole, damaged = run_of(0, model, "full"), run_of(1, model, "full")
    for run in (whole, damaged):
        shutil.copytree(tiny / "runs" / name, results / run.path)
    (results / damaged.path / deleted).unlink()
    assert cli.main(["status", str(results)]) == 0
    out, err = capsys.readouterr()
    rows, summary = parsed(out)
    assert [row["state"] for row in rows] == ["done", f"incomplete: {deleted} missing"]
    assert summary == "2 runs: 1 done, 1 incomplete"
    assert err == f"merflow status: {results / damaged.path}: {deleted} missing; {RETRAIN}\n"


def test_planned_runs_without_a_folder_are_queued(tmp_path, capsys):
    config = tiny_config()
    config["results_dir"] = str(tmp_path / "results")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = Run("malik", "tiny", "logmel_500ms", "ridge", "full", "holdout-s0", 0)
    write_done(tmp_path / "results", done)
    write_done(tmp_path / "results", run_of(0))  # a run of another config stays listed

    rows, summary = listed(capsys, "--config", str(path))
    assert {tuple(row[f] for f in FIELDS) + (row["state"],) for row in rows} == {
        ("tiny", "malik", "logmel_500ms", "malik_crnn_nb", "8", "holdout-s0", "0", "queued"),
        ("tiny", "malik", "logmel_500ms", "ridge", "full", "holdout-s0", "0", "done"),
        ("tiny", "velankar", "logmel", "velankar_crnn", "full", "holdout-s0", "0", "queued"),
        ("tiny", "velankar", "logmel", "majority", "full", "holdout-s0", "0", "queued"),
        ("deam", EXPERIMENT, "compare_500ms", "malik_crnn", "10", "holdout-s0", "0", "done"),
    }
    assert summary == "5 runs: 2 done, 3 queued"


def test_thousands_of_runs_read_two_small_files_each(tmp_path, monkeypatch):
    results = tmp_path / "results"
    runs = [run_of(seed) for seed in range(2000)]
    for run in runs:
        write_done(results, run, best=run.seed / 1e4)
    opened = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(
        Path, "read_bytes", lambda self: opened.append(self.name) or read_bytes(self)
    )
    statuses, _ = status.collect(results)
    assert [s.run for s in statuses] == runs  # in seed order, not the folders' text order
    assert all(s.state == "done" and s.best_val == s.run.seed / 1e4 for s in statuses)
    assert opened == ["run.json"] * 2000  # a done run: its run.json, nothing else


def test_the_listing_orders_lengths_by_number():
    runs = [run_of(0, seq_len=n) for n in ("full", "60", "100", "10")]
    assert [r.seq_len for r in sorted(runs, key=status._order)] == ["10", "60", "100", "full"]


def test_logs_end_in_an_error_or_not(tmp_path):
    log = tmp_path / "train.log"
    assert not status.log_failed(log)  # none yet
    log.write_text("")
    assert not status.log_failed(log)
    log.write_text(
        "x" * 10_000 + "\nINFO epoch 4/10 train_loss=0.1 (error: none so far?)\nINFO ok\n"
    )
    assert not status.log_failed(log)
    log.write_text("x" * 10_000 + "\nmerflow train: error: out of memory\n\n")
    assert status.log_failed(log)


def test_history_rows_are_counted_without_a_trailing_newline_too(tmp_path):
    path = tmp_path / "history.csv"
    assert status.history_rows(path) is None
    path.write_text("epoch,train_loss\n")
    assert status.history_rows(path) == 0
    path.write_text("epoch,train_loss\n1,0.5\n2,0.4")
    assert status.history_rows(path) == 2


def test_a_missing_results_folder_is_one_line(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("merflow status: error:") and "nowhere" in err


def test_an_empty_results_folder_says_so(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out == "0 runs\n" and "no runs under" in err


def test_status_imports_neither_torch_nor_pandas(results):
    code = (
        "import sys; from pathlib import Path; from merflow import status; "
        "lines = status.table(status.collect(Path(sys.argv[1]))[0]); "
        "print(len(lines), sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(results)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split(maxsplit=1) == ["7", "[]\n"]
