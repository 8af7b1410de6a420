"""Benchmark: heads on pretrained musicnn embeddings against log-mel and the papers' networks.

Not a test: it extracts embeddings and trains runs through the workflow, as bench/recipes.py
does (it reuses that driver's datasets and runner). Each feature variant (the log-mel baseline;
musicnn MSD or MTT, penultimate or max-pool layer) runs in its own folder, on the same
song-level k-fold splits (same clips and seeds: the splits are identical), so every row is
paired with the log-mel logistic baseline split by split. Prints the tables of
docs/embeddings.md (also ``OUT/embeddings.md``, rows in ``OUT/embeddings.csv``).

    nice -n 10 .venv/bin/python bench/embeddings.py --datasets 4q emotify vgmidi emomusic \\
        [--folds 5] [--seeds 0 1 2] [--cores 2] [--out DIR]

Classification (4q, emotify): logistic on log-mel statistics, merflow's Velankar networks on
log-mel (4q; ``--networks`` adds them elsewhere), and logistic / svm / mlp on each musicnn
variant; macro-F1. Regression (vgmidi, emomusic): ridge on log-mel windows, ridge and
malik_crnn (seq_len 10) on musicnn_500ms; RMSE of arousal and valence per song.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import recipes as driver  # bench/recipes.py: datasets, runner

from merflow.config import experiment_runs
from merflow.reporting.runs import flat_values, load_runs
from merflow.splits import split_ids

CLASSIFICATION = ("4q", "emotify")
REGRESSION = ("vgmidi", "emomusic")
VARIANTS = {  # name: musicnn parameters
    "msd_penultimate": {"model": "MSD_musicnn", "layer": "penultimate"},
    "msd_max_pool": {"model": "MSD_musicnn", "layer": "max_pool"},
    "mtt_penultimate": {"model": "MTT_musicnn", "layer": "penultimate"},
    "mtt_max_pool": {"model": "MTT_musicnn", "layer": "max_pool"},
}
HEADS = ["logistic", "svm", "mlp"]
SCORES = {"classification": ["macro_f1", "accuracy"], "regression": ["arousal", "valence"]}


def dataset_entry(name: str, args, folder: Path) -> tuple[dict, dict]:
    if name == "emomusic":
        root = args.data.resolve() / "emomusic-sample"
        return {"adapter": "deam", "root": str(root), "split_year": 2013}, {}
    entry, features, _ = driver.dataset_entry(name, args, folder)
    return entry, features


def configs(name: str, args, folder: Path) -> dict[str, dict]:
    """The Snakemake config of each feature variant of dataset ``name``."""
    entry, features = dataset_entry(name, args, folder)
    split = {"method": "kfold", "n_folds": args.folds, "seed": 0}
    common = {"dataset": name, "seeds": list(args.seeds), "split": split, "recipe": "merflow"}
    classify = name in CLASSIFICATION
    base = {"logmel": ["logistic"] if classify else ["ridge"]}
    if classify and (name == "4q" or args.networks):
        base["logmel"] += ["velankar_crnn", "velankar_parallel"]
    found = {"logmel": (features, "logmel" if classify else "logmel_500ms", base["logmel"])}
    for variant, params in VARIANTS.items():
        if classify:
            found[variant] = ({"musicnn": params}, "musicnn", HEADS)
        elif variant == "msd_penultimate":  # windows: one variant, the networks cost more
            found[variant] = ({"musicnn_500ms": params}, "musicnn_500ms", ["ridge", "malik_crnn"])
    result = {}
    for variant, (feature_params, feature, models) in found.items():
        experiment = {**common, "features": [feature], "models": models}
        if "malik_crnn" in models:
            experiment["seq_len"] = [10]
        if args.epochs:
            experiment["train"] = {"epochs": args.epochs}
        features_section = {"shards": 4, **feature_params}
        config = {"datasets": {name: entry}, "features": features_section}
        result[variant] = config | {"experiments": {f"{name}-{variant}": experiment}}
    return result


def results_of(folder: Path, config: dict, variant: str) -> pd.DataFrame:
    rows = []
    for name, experiment in config["experiments"].items():
        s = experiment["split"]
        ids = split_ids(s["method"], s["seed"], s["n_folds"])
        dirs = [folder / "results" / run.path for run in experiment_runs(config, name, ids)]
        for run in load_runs(dirs):
            values = flat_values(run.metrics)
            row = {"dataset": experiment["dataset"], "variant": variant, "model": run.model}
            row |= {"split": run.split, "seed": run.seed}
            if run.task == "classification":
                row |= {"macro_f1": values["macro_f1"], "accuracy": values["accuracy"]}
            else:
                row |= {d: values[f"{d}_rmse_song"] for d in ("arousal", "valence")}
            rows.append(row)
    return pd.DataFrame(rows)


def table(results: pd.DataFrame) -> str:
    """Per dataset and row: mean ± std over splits (seeds averaged per split), and the paired
    difference from the log-mel linear baseline: mean ± std over splits, splits won."""
    lines = []
    for dataset, rows in results.groupby("dataset", sort=False):
        task = "classification" if dataset in CLASSIFICATION else "regression"
        scores = SCORES[task]
        linear = "logistic" if task == "classification" else "ridge"
        per_split = rows.groupby(["variant", "model", "split"], sort=False)[scores].mean()
        reference = per_split.loc[("logmel", linear)]
        lines += [f"\n### {dataset} ({task}; {len(reference)} splits)\n"]
        head = " | ".join(f"{s} | Δ {s} vs log-mel {linear}" for s in scores)
        lines += [f"| feature | model | {head} | won |", "|---" * (3 + 2 * len(scores)) + "|"]
        for (variant, model), group in per_split.groupby(level=[0, 1], sort=False):
            group = group.droplevel([0, 1])
            cells, won = [], None
            for score in scores:
                values = group[score]
                delta = (values - reference[score].reindex(values.index)).dropna()
                sign = 1 if task == "classification" else -1  # RMSE: lower is better
                cells += [_mean_std(values), _mean_std(delta, signed=True)]
                won = won if won is not None else int(((sign * delta) > 0).sum())
            lines.append(f"| {variant} | {model} | {' | '.join(cells)} | {won}/{len(group)} |")
    return "\n".join(lines) + "\n"


def _mean_std(values: pd.Series, signed: bool = False) -> str:
    mean, std = float(np.mean(values)), float(np.std(values))
    return f"{mean:+.3f} ± {std:.3f}" if signed else f"{mean:.3f} ± {std:.3f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=[*CLASSIFICATION, *REGRESSION])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="cap the networks' epochs (a quick look)")
    parser.add_argument(
        "--networks", action="store_true", help="the Velankar networks on every set"
    )
    driver.add_run_arguments(parser, "merflow-emb", gpus=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    frames = []
    for name in args.datasets:
        for variant, config in configs(name, args, args.out / name).items():
            folder = args.out / name / variant
            folder.mkdir(parents=True, exist_ok=True)
            if not args.table_only:
                driver.run_workflow(folder, config, args.cores, args.gpus)
            frames.append(results_of(folder, config, variant))
    driver.save_results(frames, args.out, "embeddings.csv", "embeddings.md", table)


if __name__ == "__main__":
    main()
