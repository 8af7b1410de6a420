"""The benchmark's tables (bench/recipes.py): mean ± std, and the paired comparison with its
differences, wins and corrected t."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from workflow_utils import bench_module

bench = bench_module("recipes")


def _rows(model, recipe, kind, values, seq_len=None, metric="accuracy", seed=0):
    splits = [f"r{r}-f{f}" for r in range(2) for f in range(3)]
    return [
        {
            "dataset": "4q",
            "model": model,
            "recipe": recipe,
            "split": split,
            "kind": kind,
            "seed": seed,
            "seq_len": seq_len,
            metric: value,
        }
        for split, value in zip(splits, values, strict=True)
    ]


def _seeds(model, recipe, values):
    """One run per seed, each scoring ``values[seed]`` on every split."""
    return [
        row
        for seed, value in enumerate(values)
        for row in _rows(model, recipe, "single", np.full(6, value), seed=seed)
    ]


def _row_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def _cells(text: str, against: str, kind: str = "single", recipe: str = "merflow") -> list[str]:
    rows = [_row_cells(x) for x in text.splitlines() if "|" in x]
    return next(r for r in rows if (r[2], r[4], r[5]) == (recipe, kind, against))


def test_paired_table_pairs_by_split_and_corrects_t_for_shared_training_clips():
    paper = np.array([0.50, 0.52, 0.48, 0.55, 0.50, 0.45])
    gain = np.array([0.02, 0.04, 0.00, 0.06, 0.02, 0.04])
    logistic = np.array([0.60, 0.40, 0.50, 0.50, 0.50, 0.50])
    merflow = paper + gain
    results = pd.DataFrame(
        _rows("velankar_crnn", "paper", "single", paper)
        + _rows("velankar_crnn", "merflow", "single", merflow)
        # a second seed of merflow, 0.02 lower: each split's mean over seeds is merflow - 0.01
        + _rows("velankar_crnn", "merflow", "single", merflow - 0.02, seed=1)
        + _rows("logistic", "-", "single", logistic)
    )
    text = bench.paired_table(results)

    cells = _cells(text, "paper")
    delta = gain - 0.01
    assert cells[6] == "6" and cells[8] == "5/6"  # gains of 0.01 .. 0.05 and one of -0.01
    assert cells[7] == f"{delta.mean():+.3f} ± {delta.std():.3f}"
    assert cells[9] == f"{delta.mean() / paper.std():+.2f}"
    # 3 folds: test / training clips = 1/2, so the variance is widened by 1/6 + 1/2
    t = delta.mean() / np.sqrt((1 / 6 + 1 / 2) * delta.var(ddof=1))
    assert cells[10] == f"{t:+.2f}"
    assert _cells(text, "logistic")[8] == "3/6"


def test_paired_table_pairs_a_variant_with_the_same_variant_of_paper():
    paper = np.array([0.50, 0.52, 0.48, 0.55, 0.50, 0.45])
    logistic = np.full(6, 0.50)
    results = pd.DataFrame(
        _rows("velankar_crnn", "paper", "single", paper)
        + _rows("velankar_crnn", "paper+s4-7", "single", paper - 0.10)
        + _rows("velankar_crnn", "merflow+s4-7", "single", paper)
        + _rows("velankar_crnn", "merflow+ce1", "single", paper + 0.03)  # no paper+ce1
        + _rows("logistic", "-", "single", logistic)
    )
    text = bench.paired_table(results)
    fresh = _cells(text, "paper+s4-7", recipe="merflow+s4-7")
    assert fresh[7].startswith("+0.100") and fresh[8] == "6/6"
    assert _cells(text, "logistic", recipe="merflow+s4-7")[7].startswith("+0.000")
    assert _cells(text, "logistic", recipe="merflow+ce1")[7].startswith("+0.030")
    assert "| merflow+ce1 | - | single | paper" not in text
    assert "| merflow+s4-7 | - | single | paper |" not in text


def test_paired_table_pairs_a_learning_curve_point_with_the_same_share():
    def at_share(model, recipe, values, share="0.5"):
        rows = _rows(model, recipe, "single", values)
        return [{**row, "split": f"{row['split']}-train{share}"} for row in rows]

    paper = np.array([0.50, 0.52, 0.48, 0.55, 0.50, 0.45])
    gain = np.array([0.02, 0.04, 0.00, 0.06, 0.02, 0.04])
    results = pd.DataFrame(
        _rows("velankar_crnn", "paper", "single", paper + 0.30)  # all training clips
        + _rows("logistic", "-", "single", np.full(6, 0.90))
        + at_share("velankar_crnn", "paper-train0.5", paper)
        + at_share("velankar_crnn", "merflow-train0.5", paper + gain)
        + at_share("logistic", "train0.5", np.full(6, 0.50))
    )
    text = bench.paired_table(results)
    cells = _cells(text, "paper-train0.5", recipe="merflow-train0.5")
    assert cells[6] == "6" and cells[7] == f"{gain.mean():+.3f} ± {gain.std():.3f}"
    # half of each training part: test / training clips = 1 (3 folds), twice the full split's
    t = gain.mean() / np.sqrt((1 / 6 + 1) * gain.var(ddof=1))
    assert cells[10] == f"{t:+.2f}"
    against_logistic = _cells(text, "logistic", recipe="merflow-train0.5")
    assert against_logistic[7].startswith(f"{(paper + gain - 0.50).mean():+.3f}")


def test_paired_table_counts_lower_rmse_as_better():
    paper = np.array([0.30, 0.32, 0.28, 0.31, 0.29, 0.30])
    results = pd.DataFrame(
        _rows("malik_crnn", "paper", "single", paper, seq_len=10, metric="rmse")
        + _rows("malik_crnn", "merflow", "single", paper - 0.02, seq_len=10, metric="rmse")
        + _rows("ridge", "-", "single", paper + 0.01, metric="rmse")
    )
    text = bench.paired_table(results)
    assert _cells(text, "paper")[7].startswith("+0.020") and _cells(text, "paper")[8] == "6/6"
    assert _cells(text, "ridge")[7].startswith("+0.030")
    assert _cells(text, "ridge")[10] == "-"  # the same gain on every split: no spread to scale by


def test_paired_table_counts_a_split_level_when_seed_means_differ_by_rounding_alone():
    # four seeds each; both means are 0.58, but pandas sums the first to 0.5800000000000001
    merflow, paper = (0.58, 0.60, 0.56, 0.58), (0.57, 0.59, 0.59, 0.57)
    results = pd.DataFrame(
        _seeds("velankar_crnn", "merflow", merflow)
        + _seeds("velankar_crnn", "paper", paper)
        + _rows("logistic", "-", "single", np.full(6, 0.5))
    )
    results = results.sort_values("split", kind="stable")  # as the bench writes them
    assert _cells(bench.paired_table(results), "paper")[8] == "0/6"


def _read_twice(tmp_path, rows, rerun):
    """``rows`` in one result file and ``rerun`` (runs a second process reused) in another,
    read back as the bench reads them."""
    pd.DataFrame(rows).to_csv(tmp_path / "resultsA.csv", index=False)
    pd.DataFrame(rerun).to_csv(tmp_path / "resultsB.csv", index=False)
    return bench.read_results(tmp_path)


def test_paired_table_keeps_seeds_that_score_alike_and_drops_rows_read_twice(tmp_path):
    seeds = _seeds("velankar_crnn", "merflow", (0.50, 0.50, 0.62))
    rest = _rows("velankar_crnn", "paper", "single", np.full(6, 0.53))
    rest += _rows("logistic", "-", "single", np.full(6, 0.5))
    results = _read_twice(tmp_path, seeds + rest, [row for row in seeds if row["seed"] == 2])
    assert _cells(bench.paired_table(results), "paper")[7].startswith("+0.010")


def test_table_counts_a_run_read_from_two_result_files_once(tmp_path):
    seeds = [
        row | {"macro_f1": 0.4} for row in _seeds("velankar_crnn", "merflow", (0.50, 0.50, 0.62))
    ]
    rerun = [row for row in seeds if row["seed"] == 2]
    text = bench.table(_read_twice(tmp_path, seeds, rerun))
    row = next(x for x in text.splitlines() if x.startswith("| velankar_crnn | merflow |"))
    cells = _row_cells(row)
    assert cells[4] == "18"  # 3 seeds x 6 splits
    assert cells[5].startswith("0.540 ± ")


def test_results_without_seeds_are_refused_with_the_file_and_the_fix(tmp_path):
    rows = pd.DataFrame(_seeds("velankar_crnn", "merflow", (0.50, 0.62)))
    rows.to_csv(tmp_path / "resultsA.csv", index=False)
    rows.drop(columns="seed").to_csv(tmp_path / "resultsOld.csv", index=False)
    with pytest.raises(SystemExit, match=r"resultsOld\.csv: written before .* re-run"):
        bench.read_results(tmp_path)
    (tmp_path / "resultsOld.csv").unlink()
    assert len(bench.read_results(tmp_path)) == 12
