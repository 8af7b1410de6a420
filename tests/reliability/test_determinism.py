"""On the CPU, the same seed gives the same features, splits, metrics and tables (Snakemake).

Two runs of the tiny workflow, each in its own folder: every output that holds no clock and no
path is byte-identical (Parquet tables, metrics JSON, predictions, report tables); the rest is
compared by value (clips tables up to their folder, checkpoints tensor by tensor, training
histories without their seconds, run records without wall times).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _compare import (
    byte_comparable,
    clips_without_folder,
    differing_bytes,
    file_names,
    files,
    history_without_clock,
    run_result,
    same_weights,
)
from _snakemake import MALIK_RUN, run_tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def second_run(tmp_path_factory) -> Path:
    return run_tiny(tmp_path_factory.mktemp("second_run"))


def test_every_table_without_clock_or_path_is_byte_identical(reference_run, second_run):
    first, second = reference_run / "results", second_run / "results"
    compared = [name for name in files(first) if byte_comparable(name)]
    kinds = {
        "features": [n for n in compared if "/features/" in n and n.endswith(".parquet")],
        "splits": [n for n in compared if "/splits/" in n],
        "metrics": [n for n in compared if n.endswith("metrics.json")],
        "predictions": [n for n in compared if "predictions" in n],
        "report tables": [n for n in compared if "/report/" in n and n.endswith((".csv", ".tex"))],
    }
    assert all(kinds.values()), kinds  # each kind is really among the compared files
    assert differing_bytes(first, second) == []
    assert file_names(first) == file_names(second)


def test_clips_are_identical_up_to_the_results_folder(reference_run, second_run):
    pd.testing.assert_frame_equal(
        clips_without_folder(reference_run / "results"),
        clips_without_folder(second_run / "results"),
    )


def test_training_histories_checkpoints_and_results_are_identical(reference_run, second_run):
    first, second = reference_run / "results" / MALIK_RUN, second_run / "results" / MALIK_RUN
    pd.testing.assert_frame_equal(history_without_clock(first), history_without_clock(second))
    assert same_weights(first / "best.pt", second / "best.pt")
    assert same_weights(first / "last.pt", second / "last.pt")
    assert run_result(first) == run_result(second)
