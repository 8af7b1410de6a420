"""Benchmark: fused views on 4Q (musicnn, Essentia, openSMILE functionals) against the best view.

Not a test: it runs the workflow on the 300 4Q clips as bench/embeddings.py builds them
(bench/recipes.py's manifest), 5 song-level folds × 3 repeats (15 paired splits), every row on
the same splits. Rows: each view alone, and early and late fusions of musicnn with the
descriptor views. A feature takes one parameter set per config, so the two openSMILE sets run in
two folders: ``egemaps`` (musicnn, essentia, compare_functionals eGeMAPSv02) and ``compare``
(compare_functionals ComParE_2016, with folder ``egemaps``'s musicnn table imported as
``embeddings``: the same vectors, not computed twice). Prints the table of docs/embeddings.md
(also ``OUT/fusion.md``, runs in ``OUT/fusion.csv``):

    nice -n 10 .venv/bin/python bench/fusion.py [--models logistic svm] [--fusions early ...]
        [--folders egemaps compare] [--cores 2] [--out DIR]

Per row: macro-F1, the mean over the 3 repeats (each the mean of its 5 folds) ± the half-width
of the Student-t 95 % interval over repeats (merflow.reporting.protocol); Q3 and Q4 F1 (mean over
runs); Δ and won/lost: split by split against the best single-view row of the same model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import recipes as driver  # bench/recipes.py: the 4Q manifest, the runner

from merflow.config import experiment_runs
from merflow.features.views import SEPARATOR
from merflow.reporting.protocol import mean_interval, repeat_of
from merflow.reporting.runs import flat_values, load_runs
from merflow.splits import split_ids

MUSICNN = {"model": "MSD_musicnn", "layer": "max_pool"}  # the best single view so far
SPLIT = {"method": "kfold", "n_folds": 5, "repeats": 3, "seed": 0}
FUSIONS = {  # experiment suffix: fusion settings
    "early": {"method": "early"},
    "early_anova": {"method": "early", "select": "anova", "k": 256},
    "late": {"method": "late", "combine": "average"},
    "late_stack": {"method": "late", "combine": "stack"},
}
VIEWS = {  # folder: (its single views, its fused entries)
    "egemaps": (
        ["musicnn", "essentia", "compare_functionals"],
        [
            ["musicnn", "essentia"],
            ["musicnn", "compare_functionals"],
            ["musicnn", "essentia", "compare_functionals"],
        ],
    ),
    "compare": (["compare_functionals"], [["embeddings", "compare_functionals"]]),
}
NAMES = {  # how the table names a folder's features
    "egemaps": {"compare_functionals": "eGeMAPSv02"},
    "compare": {"compare_functionals": "ComParE_2016", "embeddings": "musicnn"},
}


def configs(args) -> dict[str, dict]:
    entry, _, _ = driver.dataset_entry("4q", args, args.out)
    common = {"dataset": "4q", "seeds": [0], "split": SPLIT, "models": list(args.models)}
    found = {}
    for folder in args.folders:
        singles, fused = VIEWS[folder]
        experiments = {"single": {**common, "features": singles}}
        for name in args.fusions:
            fusion = FUSIONS[name]
            experiments[name] = {**common, "features": fused, "fusion": fusion}
        features = {"shards": 4, "musicnn": MUSICNN}
        if folder == "egemaps":
            features["compare_functionals"] = {"feature_set": "eGeMAPSv02"}
        else:
            musicnn = args.out / "egemaps" / "results" / "4q" / "features" / "musicnn.parquet"
            features |= {"compare_functionals": {"feature_set": "ComParE_2016"}}
            features["embeddings"] = {"path": str(musicnn)}
        found[folder] = {"datasets": {"4q": entry}, "features": features}
        found[folder]["experiments"] = experiments
    return found


def results_of(folder: Path, config: dict, name: str) -> pd.DataFrame:
    rows = []
    for experiment in config["experiments"]:
        ids = split_ids(**{k: SPLIT[k] for k in ("method", "seed", "n_folds", "repeats")})
        dirs = [folder / "results" / run.path for run in experiment_runs(config, experiment, ids)]
        for run in load_runs(dirs):
            values = flat_values(run.metrics)
            feature = SEPARATOR.join(NAMES[name].get(v, v) for v in run.feature.split(SEPARATOR))
            fused = SEPARATOR in run.feature
            rows.append(
                {
                    "row": f"{feature} ({experiment})" if fused else feature,
                    "fused": fused,
                    "model": run.model,
                    "split": run.split,
                    "repeat": repeat_of(run)[0],
                    "macro_f1": values["macro_f1"],
                    "f1_Q3": values["Q3_f1"],
                    "f1_Q4": values["Q4_f1"],
                }
            )
    return pd.DataFrame(rows).drop_duplicates(["row", "model", "split"])


def table(results: pd.DataFrame) -> str:
    lines = []
    for model, rows in results.groupby("model", sort=False):
        per_row = rows.groupby("row", sort=False)
        means = per_row["macro_f1"].mean()
        singles = rows[~rows["fused"]]["row"].unique()
        best = means[singles].idxmax()
        reference = rows[rows["row"] == best].set_index("split")["macro_f1"]
        lines += [f"\n### {model}: best single view {best}\n"]
        lines += [
            "| view(s) | macro-F1 ± 95 % CI | Q3 F1 | Q4 F1 | Δ vs best single | won/lost |",
            "|---|---|---|---|---|---|",
        ]
        for row, group in per_row:
            repeats = group.groupby("repeat")["macro_f1"].mean().tolist()
            mean, half = mean_interval(repeats)
            paired = group.set_index("split")["macro_f1"] - reference
            won, lost = int((paired > 0).sum()), int((paired < 0).sum())
            interval = f"{mean:.3f} ± {half:.3f}" if half is not None else f"{mean:.3f}"
            lines.append(
                f"| {row} | {interval} | {group['f1_Q3'].mean():.3f} | "
                f"{group['f1_Q4'].mean():.3f} | {np.mean(paired):+.3f} | {won}/{lost} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["logistic"], choices=["logistic", "svm"])
    parser.add_argument("--fusions", nargs="+", default=list(FUSIONS), choices=FUSIONS)
    parser.add_argument("--folders", nargs="+", default=list(VIEWS), choices=VIEWS)
    driver.add_run_arguments(parser, "merflow-fusion", gpus=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    frames = []
    for name, config in configs(args).items():  # egemaps first: compare imports its musicnn
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        if not args.table_only:
            driver.run_workflow(folder, config, args.cores, args.gpus)
        frames.append(results_of(folder, config, name))
    driver.save_results(frames, args.out, "fusion.csv", "fusion.md", table)


if __name__ == "__main__":
    main()
