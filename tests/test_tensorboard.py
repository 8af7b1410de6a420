"""TensorBoard event files of a training run: the history's numbers, each epoch once (also after
a resume), and no trace of them without the tensorboard package."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_training import regression_config, write_regression_tables

from merflow.learn.tracking import TENSORBOARD_TAGS
from merflow.learn.training import train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    return write_regression_tables(tmp_path_factory.mktemp("regression"))


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def assert_history_logged(run: Path, epochs: int) -> None:
    history = pd.read_csv(run / "history.csv")
    logged = scalars(run / "tensorboard")
    assert set(logged) == set(TENSORBOARD_TAGS.values())
    for column in ("train_loss", "val_loss", "train_metric", "val_metric"):
        steps, values = zip(*logged[TENSORBOARD_TAGS[column]], strict=True)
        assert list(steps) == list(range(1, epochs + 1)) == history["epoch"].tolist()
        np.testing.assert_allclose(values, history[column], rtol=1e-6)
    assert [step for step, _ in logged["lr"]] == list(range(1, epochs + 1))


def test_training_logs_each_epochs_history_row(tables, tmp_path):
    train(tmp_path / "run", regression_config(tables, epochs=3, lr=0.01))
    assert_history_logged(tmp_path / "run", 3)
    assert all(
        value == pytest.approx(0.01) for _, value in scalars(tmp_path / "run/tensorboard")["lr"]
    )


def test_a_resumed_run_appends_and_a_restarted_one_logs_each_epoch_once(tables, tmp_path):
    run = tmp_path / "run"
    train(run, regression_config(tables, epochs=2))
    train(run, regression_config(tables, epochs=4))  # resumes after epoch 2
    assert_history_logged(run, 4)
    train(run, regression_config(tables, epochs=3, lr=0.02))  # other settings: from epoch 1
    assert_history_logged(run, 3)


def test_without_the_package_nothing_is_written_and_training_works(tables, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    result = train(tmp_path / "run", regression_config(tables, epochs=2))
    assert result["epochs_run"] == 2 and (tmp_path / "run" / "run.json").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists()
