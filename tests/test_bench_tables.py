"""The benchmark's results and tables (bench/recipes.py): rows read from the workflow's run
folders (single runs, seed and sequence-length ensembles from the predictions), mean ± std, the
paired comparison with its differences, wins and corrected t, and one run of the driver."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from workflow_utils import REPO, bench_module

from merflow.config import experiment_runs
from merflow.io import write_table
from merflow.learn.evaluation import classification_metrics, regression_metrics
from merflow.splits import split_ids

bench = bench_module("recipes")

# --- rows from run folders -----------------------------------------------------------------------

LABELS = ["a", "a", "b", "b"]
# p(a) of the four test clips by seed: each seed gets some wrong, their mean gets all right
P_A = {0: [0.9, 0.45, 0.2, 0.6], 1: [0.4, 0.9, 0.1, 0.3]}
TRUTH = np.array([0.1, 0.3, -0.2, 0.4])


def _regression_predictions(seed: int, seq_len: str) -> pd.DataFrame:
    offset = 0.1 * (seed + 1) * (1 if seq_len == "10" else -1)
    return pd.DataFrame(
        {
            "clip_id": "c1",
            "t": [0.5, 1.0, 1.5, 2.0],
            "arousal_pred": TRUTH + offset,
            "valence_pred": TRUTH - offset,
            "arousal": TRUTH,
            "valence": TRUTH,
        }
    )


def _write_run(run_dir, run, task):
    if task == "classification":
        p_a = np.asarray(P_A[run.seed])
        table = pd.DataFrame({"clip_id": ["c1", "c2", "c3", "c4"], "label": LABELS})
        table["predicted"] = np.where(p_a > 0.5, "a", "b")
        table["p_a"], table["p_b"] = p_a, 1 - p_a
        metrics = classification_metrics(table, ["a", "b"])
    else:
        table = _regression_predictions(run.seed, run.seq_len)
        metrics = regression_metrics(table)
    run_dir.mkdir(parents=True)
    write_table(table, run_dir / "predictions.parquet")
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, "task": task}))


@pytest.fixture(scope="module")
def fake_results(tmp_path_factory):
    """results_of on run folders laid out as the workflow writes them for the synth config."""
    out = tmp_path_factory.mktemp("bench")
    options = ["--out", str(out), "--folds", "2", "--repeats", "2", "--seeds", "0", "1"]
    args = bench.parse_args([*options, "--models", "velankar_crnn", "malik_crnn"])
    config = bench.bench_config("synth", args, out / "synth")
    for name in config["experiments"]:
        task = "regression" if "malik" in name else "classification"
        for run in experiment_runs(config, name, split_ids("kfold", 0, 2, 2)):
            _write_run(out / "synth" / "results" / run.path, run, task)
    return bench.results_of(out / "synth", config)


def _select(results, **where):
    mask = np.ones(len(results), dtype=bool)
    for column, value in where.items():
        mask &= results[column] == value
    return results[mask]


def test_baselines_count_once_and_networks_once_per_recipe_split_and_seed(fake_results):
    assert set(fake_results["dataset"]) == {"synth"}
    for baseline in ("majority", "logistic", "mean", "ridge"):
        rows = _select(fake_results, model=baseline)
        assert set(rows["recipe"]) == {"-"} and set(rows["kind"]) == {"single"}
        assert len(rows) == 4 and set(rows["seed"]) == {0}  # 2 folds x 2 repeats, one fit each
    assert set(fake_results["split"]) == {f"kfold2-s0-r{r}-f{f}" for r in (0, 1) for f in (0, 1)}
    crnn = _select(fake_results, model="velankar_crnn", kind="single")
    assert crnn.groupby("recipe").size().to_dict() == {"merflow": 8, "paper": 8}
    assert set(crnn["seq_len"]) == {"-"}
    assert crnn.groupby("seed")["accuracy"].first().to_dict() == {0: 0.5, 1: 0.75}


def test_seed_ensembles_average_the_predicted_probabilities(fake_results):
    ensembles = _select(fake_results, model="velankar_crnn", kind="seed ensemble")
    assert len(ensembles) == 8  # a split and recipe each
    assert (ensembles["accuracy"] == 1.0).all() and (ensembles["macro_f1"] == 1.0).all()


def test_malik_gets_seed_and_sequence_length_ensembles_of_the_windows(fake_results):
    malik = _select(fake_results, model="malik_crnn", recipe="merflow")
    counts = malik.groupby(["kind", "seq_len"]).size().to_dict()
    assert counts == {
        ("single", "10"): 8,
        ("single", "30"): 8,
        ("seed ensemble", "10"): 4,
        ("seed ensemble", "30"): 4,
        ("seq_len + seed ensemble", "all"): 4,
    }
    # seeds 0 and 1 of len 10 are off by +0.1 and +0.2 (valence the opposite): the mean by 0.15
    seed_mean = _select(malik, kind="seed ensemble", seq_len="10")
    assert np.allclose(seed_mean["rmse"], 0.15) and np.allclose(seed_mean["r"], 1.0)
    # lengths 10 and 30 are off in opposite directions: their mean is exact
    assert np.allclose(_select(malik, kind="seq_len + seed ensemble")["rmse"], 0.0)
    single = _select(malik, kind="single", seq_len="30", seed=1)
    assert np.allclose(single["rmse"], 0.2)


def test_the_tables_of_run_folders_have_a_row_per_configuration(fake_results):
    text = bench.table(fake_results)
    assert "### synth (classification)" in text and "### synth (regression)" in text
    rows = {tuple(_row_cells(x)[:5]) for x in text.splitlines() if x.startswith("| ")}
    assert ("majority", "-", "-", "single", "4") in rows
    assert ("velankar_crnn", "paper", "-", "seed ensemble", "4") in rows
    assert ("malik_crnn", "merflow", "all", "seq_len + seed ensemble", "4") in rows
    assert ("ridge", "-", "-", "single", "4") in rows
    paired = bench.paired_table(fake_results)
    assert "| synth | malik_crnn | merflow | 10 | single | paper | 4 |" in paired
    assert "| synth | velankar_crnn | merflow | - | seed ensemble | logistic | 4 |" in paired


# --- the tables ----------------------------------------------------------------------------------


def _rows(model, recipe, kind, values, seq_len="-", metric="accuracy", seed=0):
    splits = [f"kfold3-s0-r{r}-f{f}" for r in range(2) for f in range(3)]
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


def test_paired_table_counts_lower_rmse_as_better():
    paper = np.array([0.30, 0.32, 0.28, 0.31, 0.29, 0.30])
    results = pd.DataFrame(
        _rows("malik_crnn", "paper", "single", paper, seq_len="10", metric="rmse")
        + _rows("malik_crnn", "merflow", "single", paper - 0.02, seq_len="10", metric="rmse")
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
    results = results.sort_values("split", kind="stable")
    assert _cells(bench.paired_table(results), "paper")[8] == "0/6"


def test_table_gives_mean_and_population_std_over_splits_and_seeds_baselines_first():
    results = pd.DataFrame(
        [r | {"macro_f1": 0.4} for r in _seeds("velankar_crnn", "merflow", (0.50, 0.50, 0.62))]
        + [r | {"macro_f1": 0.2} for r in _rows("majority", "-", "single", np.full(6, 0.25))]
    )
    lines = [x for x in bench.table(results).splitlines() if x.startswith("| ")]
    assert _row_cells(lines[1])[:5] == ["majority", "-", "-", "single", "6"]
    cells = _row_cells(lines[2])
    assert cells[4] == "18"  # 3 seeds x 6 splits
    values = np.repeat([0.50, 0.50, 0.62], 6)
    assert cells[5] == f"{values.mean():.3f} ± {values.std():.3f}"


# --- the driver, end to end ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_driver_runs_the_workflow_and_prints_both_tables(tmp_path):
    """Tiny synthetic data, 2 folds, one seed, 2 epochs, one network and the baselines."""
    options = ["--datasets", "synth", "--synth-clips", "18", "--synth-seconds", "8"]
    options += ["--folds", "2", "--repeats", "1", "--seeds", "0", "--epochs", "2"]
    options += ["--models", "velankar_crnn", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "recipes.py"), *options],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = {tuple(_row_cells(x)[:5]) for x in done.stdout.splitlines() if x.startswith("| ")}
    for model, recipe in [("majority", "-"), ("logistic", "-")]:
        assert (model, recipe, "-", "single", "2") in rows
    for recipe in ("paper", "merflow"):
        assert ("velankar_crnn", recipe, "-", "single", "2") in rows
    assert not any(row[3].endswith("ensemble") for row in rows)  # one seed: no ensemble
    assert "| synth | velankar_crnn | merflow | - | single | paper | 2 |" in done.stdout
    assert "| synth | velankar_crnn | merflow | - | single | logistic | 2 |" in done.stdout
    assert (tmp_path / "tables.md").read_text() in done.stdout
    runs = tmp_path / "synth" / "results" / "synth" / "synth-velankar-merflow" / "runs"
    assert (runs / "logmel/velankar_crnn/lenfull/kfold2-s0-f1/seed0/metrics.json").is_file()
    assert (tmp_path / "synth" / "results" / "report" / "index.md").is_file()
