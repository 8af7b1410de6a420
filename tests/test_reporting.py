"""The aggregate stage on fake run directories whose numbers we know.

Runs are written in the documented layout: ``metrics.json`` / ``metrics_train.json`` from random
predictions through :mod:`merflow.learn.evaluation`'s own metric functions (the producer of the
schema), ``predictions.parquet``, ``history.csv`` and ``run.json``. Every expected value below is
recomputed here with numpy or scikit-learn, independently of :mod:`merflow.reporting`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from merflow.errors import DatasetError
from merflow.io import write_json, write_table
from merflow.learn.evaluation import classification_metrics, regression_metrics
from merflow.reporting import aggregate, malik, report_index, velankar
from merflow.reporting.context import ReportContext
from merflow.reporting.render import Column, Table, to_latex, to_markdown
from merflow.reporting.runs import group_runs, load_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEEDS = (0, 1)
SEQ_LENS = ("10", "30")
CLASSES = ["calm", "happy", "sad"]
SYNTH = {"name": "synth", "adapter": "synth"}
DEAM_2015 = {"name": "deam", "adapter": "deam", "split_year": 2015}


def run_dir(root: Path, feature: str, model: str, seq_len: str, seed: int) -> Path:
    return root / "runs" / feature / model / f"len{seq_len}" / "holdout-s0" / f"seed{seed}"


def regression_predictions(rng: np.random.Generator, n_songs: int, noise: float) -> pd.DataFrame:
    rows = []
    for song in range(n_songs):
        t = np.arange(1, 21) * 0.5
        truth = rng.uniform(-0.8, 0.8, size=(len(t), 2))
        pred = truth + rng.normal(0, noise, size=truth.shape)
        rows.append(
            pd.DataFrame(
                {
                    "clip_id": f"song{song:02d}",
                    "t": t,
                    "arousal_pred": pred[:, 0].astype(np.float32),
                    "valence_pred": pred[:, 1].astype(np.float32),
                    "arousal": truth[:, 0].astype(np.float32),
                    "valence": truth[:, 1].astype(np.float32),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def classification_predictions(rng: np.random.Generator, n_clips: int) -> pd.DataFrame:
    labels = rng.choice(CLASSES, size=n_clips)
    predicted = np.where(rng.random(n_clips) < 0.6, labels, rng.choice(CLASSES, size=n_clips))
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), size=n_clips).astype(np.float32)
    frame = pd.DataFrame({"clip_id": [f"clip{i:03d}" for i in range(n_clips)]})
    frame["label"], frame["predicted"] = labels, predicted
    for j, name in enumerate(CLASSES):
        frame[f"p_{name}"] = probabilities[:, j]
    return frame


def history(rng: np.random.Generator, n_epochs: int) -> pd.DataFrame:
    epochs = np.arange(1, n_epochs + 1)
    decay = 1.0 / np.sqrt(epochs)
    return pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": decay + rng.uniform(0, 0.05, n_epochs),
            "val_loss": decay + 0.1 + rng.uniform(0, 0.05, n_epochs),
            "train_metric": 1 - decay / 2,
            "val_metric": 1 - decay / 2 - 0.1,
            "seconds": 0.5,
        }
    )


def write_run(
    directory: Path,
    *,
    task: str,
    feature: str,
    model: str,
    seq_len: str,
    seed: int,
    rng: np.random.Generator,
    baseline: bool,
    split: str = "holdout-s0",
) -> None:
    run = {
        "model": model,
        "feature": feature,
        "seq_len": int(seq_len) if seq_len.isdigit() else None,
        "seed": seed,
        "split": split,
    }
    common = {"task": task, "run": run, "excluded": []}
    if task == "regression":
        test = regression_predictions(rng, 6, noise=0.1 + 0.05 * rng.random())
        train = regression_predictions(rng, 8, noise=0.05)
        metrics = {**common, "part": "test", **regression_metrics(test)}
        metrics_train = {**common, "part": "train", **regression_metrics(train)}
        write_json(metrics_train, directory / "metrics_train.json")
    else:
        test = classification_predictions(rng, 30)
        metrics = {**common, "part": "test", **classification_metrics(test, CLASSES)}
    if model == "malik_crnn" and seed == 1 and seq_len == "10":
        metrics["excluded"] = [{"clip_id": "song99", "reason": "no aligned targets"}]
    write_json(metrics, directory / "metrics.json")
    write_table(test, directory / "predictions.parquet")
    history(rng, 1 if baseline else 6 + seed).to_csv(directory / "history.csv", index=False)
    write_json(
        {
            "config": {"model": model, "seed": seed},
            "resolved": {"task": task, "feature": feature},
            "n_parameters": 1234 + len(model),
            "result": {"best_val_loss": float(rng.uniform(0.1, 0.3))},
        },
        directory / "run.json",
    )


def make_runs(root: Path, task: str) -> list[Path]:
    """2 seeds × 2 seq_lens × 2 models (+ the baselines, fitted once)."""
    rng = np.random.default_rng(7)
    if task == "regression":
        feature, networks, baselines = "compare_500ms", ("malik_crnn", "malik_crnn_nb"), ("mean",)
        lengths = SEQ_LENS
    else:
        feature, networks, baselines = (
            "logmel",
            ("velankar_crnn", "velankar_parallel"),
            ("majority",),
        )
        lengths = ("full",)
    dirs = []
    for model in networks:
        for seq_len in lengths:
            for seed in SEEDS:
                d = run_dir(root, feature, model, seq_len, seed)
                kw = {"task": task, "feature": feature, "model": model, "seq_len": seq_len}
                write_run(d, **kw, seed=seed, rng=rng, baseline=False)
                dirs.append(d)
    for model in baselines:
        d = run_dir(root, feature, model, "full", 0)
        kw = {"task": task, "feature": feature, "model": model, "seq_len": "full"}
        write_run(d, **kw, seed=0, rng=rng, baseline=True)
        dirs.append(d)
    return dirs


def quarantine_file(root: Path) -> Path:
    frame = pd.DataFrame(
        {
            "clip_id": ["bad1", "bad2"],
            "path": ["/x/bad1.mp3", None],
            "stage": ["index", "features"],
            "reason": ["cannot decode the file", "shorter than one frame"],
        }
    ).astype("string")
    return write_table(frame, root / "quarantine.parquet")


def read_json_metrics(directory: Path, name: str = "metrics.json") -> dict:
    import json

    return json.loads((directory / name).read_text())


@pytest.fixture(scope="module")
def regression_report(tmp_path_factory) -> tuple[Path, list[Path], list[Path]]:
    root = tmp_path_factory.mktemp("malik")
    dirs = make_runs(root, "regression")
    spec = {"paper": "malik2017", "dataset": "synth", "split": {"method": "holdout"}}
    written = aggregate("malik", spec, dirs, root / "report", SYNTH, [quarantine_file(root)])
    return root / "report", dirs, written


@pytest.fixture(scope="module")
def classification_report(tmp_path_factory) -> tuple[Path, list[Path], list[Path]]:
    root = tmp_path_factory.mktemp("velankar")
    dirs = make_runs(root, "classification")
    spec = {"paper": "velankar", "dataset": "synth"}
    written = aggregate("velankar", spec, dirs, root / "report", SYNTH, [])
    return root / "report", dirs, written


def test_summary_mean_std_equal_hand_computation(regression_report):
    out, dirs, _ = regression_report
    root = dirs[0].parents[5]
    summary = pd.read_csv(out / "summary.csv", dtype={"seq_len": str})
    for model in ("malik_crnn", "malik_crnn_nb"):
        for seq_len in SEQ_LENS:
            runs = [run_dir(root, "compare_500ms", model, seq_len, s) for s in SEEDS]
            values = [read_json_metrics(d)["valence"]["rmse"]["song_mean"] for d in runs]
            row = summary.query(
                "model == @model and seq_len == @seq_len and part == 'test' "
                "and metric == 'valence_rmse_song'"
            ).iloc[0]
            assert row["mean"] == pytest.approx(np.mean(values), abs=1e-9)
            assert row["std"] == pytest.approx(np.std(values), abs=1e-9)
            assert (row["n_runs"], row["n_seeds"], row["n_splits"]) == (2, 2, 1)
    baseline = summary.query("model == 'mean' and metric == 'average_rmse_song' and part == 'test'")
    assert baseline["n_runs"].tolist() == [1] and baseline["std"].isna().all()


def test_table1_rows_in_paper_order_with_seed_statistics(regression_report):
    out, dirs, _ = regression_report
    root = dirs[0].parents[5]
    table = pd.read_csv(out / "malik_table1a_compare_500ms.csv", dtype={"seq_len": str})
    assert table["seq_len"].tolist() == ["30", "10"]  # descending, as the paper's 60, 30, 20, 10
    assert set(table["source"]) == {"merflow"}  # synth: no published rows
    for _, row in table.iterrows():
        runs = [run_dir(root, "compare_500ms", "malik_crnn", row["seq_len"], s) for s in SEEDS]
        for column, name, dim in (
            ("evaluation_arousal", "metrics.json", "arousal"),
            ("development_average", "metrics_train.json", "average"),
        ):
            values = [read_json_metrics(d, name)[dim]["rmse"]["song_mean"] for d in runs]
            assert row[f"{column}_mean"] == pytest.approx(np.mean(values), abs=1e-9)
            assert row[f"{column}_std"] == pytest.approx(np.std(values), abs=1e-9)
    shown = (out / "malik_table1a_compare_500ms.md").read_text()
    first = row_of(shown, "30")
    mean, std = table.loc[0, "evaluation_valence_mean"], table.loc[0, "evaluation_valence_std"]
    assert f"{mean:.3f} ± {std:.3f}" in first


def row_of(markdown: str, seq_len: str) -> str:
    return next(
        line for line in markdown.splitlines() if re.match(rf"\| \S+ \| {seq_len} \|", line)
    )


def test_table2_has_parameters_r_and_baselines(regression_report):
    out, dirs, _ = regression_report
    table = pd.read_csv(out / "malik_table2_compare_500ms.csv", dtype={"seq_len": str})
    assert table["method"].str.contains("CRNN_NB").tolist()[:2] == [True, True]
    assert table["method"].iloc[-1].startswith("training mean")
    assert table["n_parameters"].iloc[0] == 1234 + len("malik_crnn_nb")
    mean_row = table.iloc[-1]
    metrics = read_json_metrics(dirs[-1])
    assert mean_row["rmse_average_mean"] == pytest.approx(metrics["average"]["rmse"]["song_mean"])
    assert np.isnan(mean_row["rmse_average_std"])  # fitted once: no spread
    assert (
        "not the paper's data: not comparable"
        in (out / "malik_table2_compare_500ms.md").read_text()
    )


def lin_ccc(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    covariance = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def table2_line(markdown: str, method: str, seq_len: str) -> str:
    return next(
        line
        for line in markdown.splitlines()
        if line.startswith(f"| {method} |") and f"| {seq_len} |" in line
    )


def test_table2_has_pooled_r2_and_ccc(regression_report):
    from sklearn.metrics import r2_score

    out, dirs, _ = regression_report
    root = dirs[0].parents[5]
    markdown = (out / "malik_table2_compare_500ms.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Method |"))
    assert (
        "| Pearson r: Valence | Pearson r: Arousal | R²: Valence | R²: Arousal "
        "| CCC: Valence | CCC: Arousal | Parameters |" in header
    )
    assert "R\\textsuperscript{2}" in (out / "malik_table2_compare_500ms.tex").read_text()
    table = pd.read_csv(out / "malik_table2_compare_500ms.csv", dtype={"seq_len": str})
    label = "CRNN [malik_crnn]"
    row = table[(table["method"] == label) & (table["seq_len"] == "10")].iloc[0]
    runs = [run_dir(root, "compare_500ms", "malik_crnn", "10", s) for s in SEEDS]
    shown = table2_line(markdown, label, "10")
    for metric in ("r2", "ccc"):
        for dim in ("valence", "arousal"):
            values = [read_json_metrics(d)[dim][metric]["pooled"] for d in runs]
            assert row[f"{metric}_{dim}_mean"] == pytest.approx(np.mean(values), abs=1e-9)
            assert row[f"{metric}_{dim}_std"] == pytest.approx(np.std(values), abs=1e-9)
            assert f"{np.mean(values):.3f} ± {np.std(values):.3f}" in shown
    values = [read_json_metrics(d)["valence"]["pearson_r"]["song_mean"] for d in runs]
    assert row["r_valence_mean"] == pytest.approx(np.mean(values), abs=1e-9)
    # a run's pooled values recomputed from its predictions, every frame at once
    predictions = pd.read_parquet(runs[0] / "predictions.parquet")
    by_hand = lin_ccc(predictions["valence_pred"], predictions["valence"])
    assert read_json_metrics(runs[0])["valence"]["ccc"]["pooled"] == pytest.approx(by_hand)
    by_hand = r2_score(predictions["arousal"], predictions["arousal_pred"])
    assert read_json_metrics(runs[0])["arousal"]["r2"]["pooled"] == pytest.approx(by_hand)
    # the seed ensemble scores the mean of the seeds' predictions
    ensemble = table[table["method"] == f"{label} (seed ensemble)"]
    ensemble = ensemble[ensemble["seq_len"] == "10"].iloc[0]
    tables = [
        pd.read_parquet(d / "predictions.parquet").sort_values(["clip_id", "t"], ignore_index=True)
        for d in runs
    ]
    mean = tables[0].assign(
        valence_pred=np.mean([t["valence_pred"].to_numpy() for t in tables], axis=0),
        arousal_pred=np.mean([t["arousal_pred"].to_numpy() for t in tables], axis=0),
    )
    expected_ccc = lin_ccc(mean["arousal_pred"], mean["arousal"])
    expected_r2 = r2_score(mean["valence"], mean["valence_pred"])
    assert ensemble["ccc_arousal_mean"] == pytest.approx(expected_ccc, abs=1e-6)
    assert ensemble["r2_valence_mean"] == pytest.approx(expected_r2, abs=1e-6)
    length_ensemble = table[table["method"].str.contains("sequence-length × seed ensemble")]
    assert length_ensemble[["r2_valence_mean", "ccc_arousal_mean"]].notna().all().all()


def test_summary_has_r2_and_ccc_rows(regression_report):
    out, dirs, _ = regression_report
    root = dirs[0].parents[5]
    summary = pd.read_csv(out / "summary.csv", dtype={"seq_len": str})
    expected = {
        f"{dim}_{metric}_{kind}"
        for dim in ("valence", "arousal", "average")
        for metric in ("rmse", "r", "r2", "ccc")
        for kind in ("song", "pooled")
    }
    assert set(summary["metric"]) == expected
    runs = [run_dir(root, "compare_500ms", "malik_crnn_nb", "30", s) for s in SEEDS]
    for metric, dim, field, part, name in (
        ("r2", "average", "song_mean", "test", "metrics.json"),
        ("ccc", "valence", "pooled", "test", "metrics.json"),
        ("ccc", "arousal", "song_mean", "train", "metrics_train.json"),
    ):
        values = [read_json_metrics(d, name)[dim][metric][field] for d in runs]
        flat = f"{dim}_{metric}_{'song' if field == 'song_mean' else 'pooled'}"
        row = summary[
            (summary["model"] == "malik_crnn_nb")
            & (summary["seq_len"] == "30")
            & (summary["part"] == part)
            & (summary["metric"] == flat)
        ].iloc[0]
        assert row["mean"] == pytest.approx(np.mean(values), abs=1e-9)
        assert row["std"] == pytest.approx(np.std(values), abs=1e-9)


def test_published_rows_only_on_the_papers_dataset(regression_report, tmp_path):
    _, dirs, _ = regression_report
    spec = {"paper": "malik2017", "dataset": "deam", "split": {"method": "fixed"}}
    ctx = ReportContext("malik", spec, DEAM_2015, tmp_path)
    runs = load_runs(dirs)
    table1 = malik.table1(ctx, "compare_500ms", runs).numbers()
    published = table1[table1["source"] != "merflow"]
    assert published["seq_len"].tolist() == ["60", "30", "20", "10"]
    paper_60 = published.iloc[0]
    assert (paper_60["evaluation_valence_mean"], paper_60["evaluation_valence_std"]) == (
        0.275,
        0.004,
    )
    assert paper_60["development_average_mean"] == 0.060
    # ours beside the paper's, in the paper's order
    assert table1["seq_len"].tolist() == ["60", "30", "30", "20", "10", "10"]
    table2 = to_markdown(malik.table2(ctx, "compare_500ms", runs))
    assert "| 0.285 | 0.225 | 0.255 |" in table2 and "0.279 ± 0.004" in table2
    assert "≈17 k" in table2 and "not comparable" not in table2
    # the paper reports neither r nor R² nor CCC: its rows show — there
    li = next(line for line in table2.splitlines() if line.startswith("| Li et al."))
    assert "| 0.285 | 0.225 | 0.255 | — | — | — | — | — | — | ≈12 M |" in li
    synth_table2 = pd.read_csv(regression_report[0] / "malik_table2_compare_500ms.csv")
    assert not synth_table2["source"].str.contains("published").any()


def test_kfold_runs_are_pooled_over_folds_and_seeds(tmp_path):
    rng = np.random.default_rng(3)
    dirs = []
    for fold in range(3):
        d = (
            tmp_path
            / "runs"
            / "logmel_500ms"
            / "malik_crnn"
            / "len10"
            / f"kfold3-s0-f{fold}"
            / "seed0"
        )
        kw = {"task": "regression", "feature": "logmel_500ms", "model": "malik_crnn"}
        write_run(d, **kw, seq_len="10", seed=0, rng=rng, baseline=False, split=d.parent.name)
        dirs.append(d)
    runs = load_runs(dirs)
    table = malik.table1(ReportContext("k", {}, SYNTH, tmp_path), "logmel_500ms", runs)
    values = [read_json_metrics(d)["average"]["rmse"]["song_mean"] for d in dirs]
    row = table.numbers().iloc[0]
    assert row["evaluation_average_mean"] == pytest.approx(np.mean(values))
    assert row["evaluation_average_std"] == pytest.approx(np.std(values))
    assert row["n_runs"] == 3 and table.name == "malik_table1b_logmel_500ms"
    assert "all folds × seeds pooled" in table.caption


def test_every_table_in_three_formats_and_index_links_everything(regression_report):
    out, _, written = regression_report
    for csv in out.glob("malik_table*.csv"):
        assert csv.with_suffix(".md").is_file() and csv.with_suffix(".tex").is_file()
        assert "\\begin{tabular}" in csv.with_suffix(".tex").read_text()
    index = (out / "index.md").read_text()
    links = set(re.findall(r"\]\(([^)]+)\)", index))
    for path in written:
        if path.name != "index.md":
            assert path.name in links, f"{path.name} not linked from index.md"
            assert path.is_file()
    assert {p.name for p in out.iterdir()} - {"index.md"} <= links
    assert "2 clip(s) quarantined" in index and "cannot decode the file" in index
    assert "song99" in index  # left out of one run's evaluation
    assert "Recipe: paper" in index


def test_figures_are_valid_pngs(regression_report, classification_report):
    for out in (regression_report[0], classification_report[0]):
        pngs = sorted(out.glob("*.png"))
        assert pngs
        for png in pngs:
            data = png.read_bytes()
            assert data[:8] == PNG_SIGNATURE and len(data) > 5000
            assert b"tEXt" not in data  # no metadata: no version, no timestamp
    names = {p.name for p in regression_report[0].glob("*.png")}
    assert {"malik_best_run_songs.png", "malik_best_run_va_scatter.png"} <= names
    assert "malik_crnn_compare_500ms_len10_curves.png" in names


def test_classification_report_matches_sklearn_on_pooled_predictions(classification_report):
    from sklearn.metrics import classification_report as sk_report

    out, dirs, _ = classification_report
    crnn = [d for d in dirs if "/velankar_crnn/" in d.as_posix()]
    pooled = pd.concat([pd.read_parquet(d / "predictions.parquet") for d in crnn])
    expected = sk_report(pooled["label"], pooled["predicted"], labels=CLASSES, output_dict=True)
    table = pd.read_csv(out / "velankar_crnn_logmel_report_pooled.csv").set_index("row")
    for name in [*CLASSES, "macro avg", "weighted avg"]:
        for ours, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert table.loc[name, ours] == pytest.approx(expected[name][theirs])
        assert table.loc[name, "support"] == expected[name]["support"]
    assert table.loc["accuracy", "f1"] == pytest.approx(expected["accuracy"])


def test_classification_report_mean_std_over_seeds(classification_report):
    out, dirs, _ = classification_report
    crnn = [d for d in dirs if "/velankar_crnn/" in d.as_posix()]
    metrics = [read_json_metrics(d) for d in crnn]
    table = pd.read_csv(out / "velankar_crnn_logmel_report.csv").set_index("row")
    recall = [m["per_class"]["sad"]["recall"] for m in metrics]
    assert table.loc["sad", "recall_mean"] == pytest.approx(np.mean(recall))
    assert table.loc["sad", "recall_std"] == pytest.approx(np.std(recall))
    accuracy = [m["accuracy"] for m in metrics]
    assert table.loc["accuracy", "f1_mean"] == pytest.approx(np.mean(accuracy))
    overview = pd.read_csv(out / "velankar_models.csv")
    assert overview["model"].str.contains("majority").iloc[-1]
    assert "paper_accuracy" not in overview.columns  # synth is not Velankar et al.'s dataset


def test_velankar_overview_has_balanced_accuracy(classification_report):
    from sklearn.metrics import balanced_accuracy_score

    out, dirs, _ = classification_report
    crnn = [d for d in dirs if "/velankar_crnn/" in d.as_posix()]
    markdown = (out / "velankar_models.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Model |"))
    assert "| Accuracy | Balanced accuracy | Macro F1 |" in header
    overview = pd.read_csv(out / "velankar_models.csv").set_index("model")
    values = []
    for d in crnn:
        predictions = pd.read_parquet(d / "predictions.parquet")
        values.append(balanced_accuracy_score(predictions["label"], predictions["predicted"]))
        assert read_json_metrics(d)["balanced_accuracy"] == pytest.approx(values[-1])
    row = overview.loc["CRNN [velankar_crnn]"]
    assert row["balanced_accuracy_mean"] == pytest.approx(np.mean(values))
    assert row["balanced_accuracy_std"] == pytest.approx(np.std(values))
    shown = next(line for line in markdown.splitlines() if line.startswith("| CRNN [velankar"))
    assert f"{np.mean(values):.3f} ± {np.std(values):.3f}" in shown
    # the seed ensemble: the argmax of the seeds' mean class probabilities
    tables = [pd.read_parquet(d / "predictions.parquet") for d in crnn]
    columns = [f"p_{c}" for c in CLASSES]
    mean = sum(t[columns].to_numpy() for t in tables) / len(tables)
    predicted = np.asarray(CLASSES)[mean.argmax(1)]
    expected = balanced_accuracy_score(tables[0]["label"], predicted)
    ensemble = overview.loc["CRNN: seed ensemble"]
    assert ensemble["balanced_accuracy_mean"] == pytest.approx(expected)
    summary = pd.read_csv(out / "summary.csv")
    assert "balanced_accuracy" in set(summary["metric"])
    row = summary.query("model == 'velankar_crnn' and metric == 'balanced_accuracy'").iloc[0]
    assert row["mean"] == pytest.approx(np.mean(values))


def test_confusion_matrix_sums_over_seeds(classification_report):
    out, dirs, _ = classification_report
    parallel = [d for d in dirs if "/velankar_parallel/" in d.as_posix()]
    expected = sum(np.asarray(read_json_metrics(d)["confusion_matrix"]["matrix"]) for d in parallel)
    table = pd.read_csv(out / "velankar_parallel_logmel_confusion.csv")
    matrix = table[[f"predicted_{j}" for j in range(len(CLASSES))]].to_numpy()
    np.testing.assert_array_equal(matrix, expected)
    assert table["total"].sum() == 30 * len(SEEDS)
    assert (out / "velankar_parallel_logmel_confusion.png").is_file()


def test_paper_columns_when_the_dataset_is_velankars(classification_report, tmp_path):
    _, dirs, _ = classification_report
    dataset = {"name": "hindi", "adapter": "folder", "paper_dataset": True}
    ctx = ReportContext("velankar", {"paper": "velankar"}, dataset, tmp_path)
    groups = group_runs(load_runs(dirs))
    overview = velankar.overview_table(ctx, groups).numbers()
    crnn = overview["model"].str.contains("velankar_crnn")
    assert overview.loc[crnn, "paper_accuracy"].item() == 0.54
    key = ("logmel", "velankar_crnn", "full")
    report = to_markdown(velankar.report_table(ctx, key, groups[key]))
    assert "0.65 | 0.69 | 0.67 | 16 |" in next(
        line for line in report.splitlines() if "| sad |" in line
    )


def test_two_runs_of_aggregate_are_byte_identical(
    regression_report, classification_report, tmp_path
):
    for report, (out, dirs, _) in (
        ("malik", regression_report),
        ("velankar", classification_report),
    ):
        again = tmp_path / report
        root = dirs[0].parents[5]
        quarantine = [root / "quarantine.parquet"] if report == "malik" else []
        spec = {"paper": "malik2017", "dataset": "synth", "split": {"method": "holdout"}}
        if report == "velankar":
            spec = {"paper": "velankar", "dataset": "synth"}
        # given as the metrics files the workflow depends on, in another order: same bytes
        metrics_files = [d / "metrics.json" for d in reversed(dirs)]
        aggregate(report, spec, metrics_files, again, SYNTH, quarantine)
        first = {p.name: digest(p) for p in out.iterdir()}
        second = {p.name: digest(p) for p in again.iterdir()}
        assert first == second


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_index_links_every_experiment(regression_report, classification_report, tmp_path):
    top = tmp_path / "report" / "index.md"
    report_index([regression_report[0] / "index.md", classification_report[0] / "index.md"], top)
    text = top.read_text()
    assert "Experiment malik (Malik et al. 2017) on synth" in text
    assert "Experiment velankar (Velankar et al.) on synth" in text
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (top.parent / link).resolve().is_file()


def test_the_index_ranks_no_row_of_a_task_without_test_scores(tmp_path):
    experiment = tmp_path / "synth" / "velankar" / "report"
    experiment.mkdir(parents=True)
    (experiment / "index.md").write_text("# Experiment velankar\n")
    row = "logmel,velankar_crnn,full,test,macro_f1,,,0,0,0\n"
    (experiment / "summary.csv").write_text(
        "feature,model,seq_len,part,metric,mean,std,n_runs,n_seeds,n_splits\n" + row
    )
    text = report_index([experiment / "index.md"], tmp_path / "index.md").read_text()
    assert "Experiment velankar" in text and "- synth, classification" not in text


def test_damaged_predictions_name_the_file_and_the_stage_to_rerun(tmp_path):
    dirs = make_runs(tmp_path, "regression")
    for run in dirs:  # the seed ensembles read them
        (run / "predictions.parquet").write_bytes(b"cut short")
    with pytest.raises(DatasetError, match=r"predictions.parquet: not a readable Parquet"):
        aggregate("malik", {"paper": "malik2017"}, dirs, tmp_path / "report", SYNTH)


def test_missing_metrics_names_the_run_and_the_fix(tmp_path):
    empty = tmp_path / "runs" / "logmel" / "velankar_crnn" / "lenfull" / "holdout-s0" / "seed0"
    empty.mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"metrics\.json does not exist.*merflow evaluate"):
        aggregate("x", {}, [empty], tmp_path / "out", SYNTH)


def test_latex_and_markdown_render_groups_and_escapes():
    table = Table(
        "t",
        "A_title",
        "50% done",
        [
            Column("Seq.", "seq"),
            Column("V", "v", "pm", group="Eval"),
            Column("A", "a", "pm", group="Eval"),
        ],
        [{"seq": "10", "v_mean": 0.1, "v_std": 0.01, "a_mean": None, "a_std": None}],
    )
    latex = to_latex(table)
    assert r"\multicolumn{2}{c}{Eval}" in latex and r"\cmidrule(lr){2-3}" in latex
    assert r"0.100 $\pm$ 0.010 & --- \\" in latex and r"A\_title. 50\% done" in latex
    assert "| 10 | 0.100 ± 0.010 | — |" in to_markdown(table)
