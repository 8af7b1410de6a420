"""Benchmark: the paper and merflow training recipes against the baselines, through the workflow.

Not a test: it trains many runs. Per dataset it writes ``OUT/<dataset>/config.yaml`` (an
experiment per recipe and model family, the baselines in the first; repeated song-level k-fold
``split: {method: kfold, n_folds, repeats, seed: 0}``), runs the repository's Snakefile on it in
``OUT/<dataset>`` (a re-run resumes), reads the runs with ``merflow.reporting.runs`` and prints
two tables (also ``OUT/tables.md``; rows in ``OUT/results.csv``): mean ± std over folds and
seeds, with seed (and Malik's sequence-length) ensembles scored from the runs' predictions; and
the merflow recipe paired with the paper's and with the linear baseline, split by split.

    nice -n 10 .venv/bin/python bench/recipes.py --datasets 4q emotify vgmidi synth \\
        [--folds 3] [--repeats 5] [--seeds 0 1 2 3] [--cores 2] [--out DIR]

Datasets, read in place from ``--data`` (../shared/data): ``4q`` = 4q-dev + 4q-sample (300
clips; a manifest of both folders' files, artists from 4q-sample's metadata), ``emotify`` =
emotify-sample (its labels_3class.csv), ``vgmidi`` = vgmidi-sample (the vgmidi adapter),
``synth`` = ``--synth-clips`` synthetic clips of ``--synth-seconds`` s (both tasks). Your whole
4Q: run the fourq preset on it with ``split: {method: kfold, n_folds: 3, repeats: 5}`` and an
experiment per ``recipe:``; its splits keep each artist on one side.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from merflow.config import experiment_runs
from merflow.datasets import folder as folder_adapter
from merflow.reporting.runs import ensemble_values, flat_values, load_runs
from merflow.runs import NO_SEQ_LEN
from merflow.splits import split_ids

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DATASETS = ("4q", "emotify", "vgmidi", "synth")
CLASSIFIERS = ("velankar_crnn", "velankar_parallel")
REGRESSORS = ("malik_crnn", "malik_crnn_nb")
BASELINES = {"classification": ("majority", "logistic"), "regression": ("mean", "ridge")}
FAMILIES = {  # task: (experiment name part, feature, networks)
    "classification": ("velankar", "logmel", CLASSIFIERS),
    "regression": ("malik", "logmel_500ms", REGRESSORS),
}
SEQ_LENS = (10, 30)
FRAMES_30S = 1292  # 30 s at 22.05 kHz, hop 512: whole 4Q clips
HEADLINE = {"accuracy": "accuracy", "macro_f1": "macro_f1"}
HEADLINE |= {"rmse": "average_rmse_pooled", "r": "average_r_pooled"}
TIE = 1e-9  # a split's means over seeds differ by rounding alone: level, not won


# --- the configs ---------------------------------------------------------------------------------


def dataset_entry(name: str, args, folder: Path) -> tuple[dict, dict, tuple[str, ...]]:
    """One benchmark dataset's config entry, its feature settings and its tasks."""
    data = args.data.resolve()
    if name == "4q":
        source = write_4q_manifest(data, folder / "source")
        entry = {"adapter": "manifest", "root": str(source), "csv": "manifest.csv"}
        entry |= {"id_column": "clip_id", "group_column": "group", "allow_outside_root": True}
        return entry, {"logmel": {"n_frames": FRAMES_30S}}, ("classification",)
    if name == "emotify":
        entry = {"adapter": "manifest", "root": str(data / "emotify-sample")}
        entry["csv"] = "labels_3class.csv"
        return entry, {"logmel": {"n_frames": 2 * FRAMES_30S}}, ("classification",)
    if name == "vgmidi":
        return {"adapter": "vgmidi", "root": str(data / "vgmidi-sample")}, {}, ("regression",)
    entry = {"adapter": "synth", "n_clips": args.synth_clips, "duration_s": args.synth_seconds}
    entry |= {"n_classes": 3, "seed": 0}
    frames = max(640, int(args.synth_seconds * 22050) // 512 + 1)  # whole clips, >= 640
    return entry, {"logmel": {"n_frames": frames}}, ("classification", "regression")


def write_4q_manifest(data: Path, source: Path) -> Path:
    """``source/manifest.csv``: the files of 4q-dev and 4q-sample (absolute paths), their
    quadrants and artists, as merflow's folder adapter reads each folder."""
    frames = []
    for part in ("4q-dev", "4q-sample"):
        spec = {"name": part, "adapter": "folder", "root": data / part, "audio_dir": "audio"}
        raw = folder_adapter.read(spec)
        for entry in raw.quarantine:
            print(f"4q: left out of the manifest: {entry['reason']}", file=sys.stderr)
        frames.append(raw.clips[["clip_id", "path", "label", "group"]])
    text = pd.concat(frames).sort_values("clip_id").to_csv(index=False)
    source.mkdir(parents=True, exist_ok=True)
    manifest = source / "manifest.csv"
    if not manifest.is_file() or manifest.read_text() != text:  # unchanged: no re-index
        manifest.write_text(text)
    return source


def bench_config(name: str, args, folder: Path) -> dict:
    """The Snakemake config of one dataset: an experiment per model family and recipe; the
    baselines (recipe-free fits) in the first recipe's experiment only."""
    entry, features, tasks = dataset_entry(name, args, folder)
    split = {"method": "kfold", "n_folds": args.folds, "repeats": args.repeats, "seed": 0}
    experiments = {}
    for task, recipe in itertools.product(tasks, args.recipes):
        family, feature, networks = FAMILIES[task]
        models = [m for m in networks if m in args.models]
        if not models:
            continue
        if recipe == args.recipes[0]:
            models += BASELINES[task]
        experiment = {"dataset": name, "recipe": recipe, "features": [feature], "models": models}
        experiment |= {"seeds": list(args.seeds), "split": dict(split)}
        if family == "malik":
            experiment["seq_len"] = list(SEQ_LENS)
        if args.epochs:
            experiment["train"] = {"epochs": args.epochs}
        experiments[f"{name}-{family}-{recipe}"] = experiment
    return {"datasets": {name: entry}, "features": features, "experiments": experiments}


def run_workflow(folder: Path, config: dict, cores: int, gpus: int) -> None:
    """``snakemake`` on the repository's workflow in ``folder``, with merflow's CLI on the PATH."""
    configfile = folder / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PATH=f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [SNAKEMAKE, "-s", REPO / "Snakefile", "-d", folder, "--configfile", configfile]
    cmd += ["--cores", cores, "--resources", f"gpu={gpus}", "--keep-going", "--rerun-incomplete"]
    done = subprocess.run(list(map(str, cmd)), env=env, stdout=sys.stderr, check=False)
    if done.returncode:
        raise SystemExit(f"snakemake failed in {folder}: see the job logs under its results/")


# --- the runs ------------------------------------------------------------------------------------


def results_of(folder: Path, config: dict) -> pd.DataFrame:
    """One row a run (test scores), a seed ensemble or a sequence-length ensemble."""
    rows = []
    for name, experiment in config["experiments"].items():
        s = experiment["split"]
        ids = split_ids(s["method"], s["seed"], s["n_folds"], s["repeats"])
        dirs = [folder / "results" / run.path for run in experiment_runs(config, name, ids)]
        for run in load_runs(dirs):
            row = {"dataset": experiment["dataset"], "model": run.model, "split": run.split}
            row["recipe"] = "-" if run.is_baseline else experiment["recipe"]
            row["seq_len"] = "-" if run.seq_len == NO_SEQ_LEN else run.seq_len
            row |= {"kind": "single", "seed": run.seed, "_run": run}
            rows.append(row | headline(flat_values(run.metrics)))
    keys = ["dataset", "model", "recipe", "split"]
    for key, group in pd.DataFrame(rows).groupby(keys, sort=False):
        members = {"seed ensemble": group.groupby("seq_len", sort=False)}
        if group["seq_len"].nunique() > 1:
            members["seq_len + seed ensemble"] = [("all", group)]
        for kind, parts in members.items():
            for seq_len, part in parts:
                if len(part) > 1:  # one run is no ensemble
                    scores = headline(ensemble_values(list(part["_run"]))[0])
                    row = dict(zip(keys, key, strict=True)) | {"kind": kind, "seq_len": seq_len}
                    rows.append(row | scores)
    return pd.DataFrame(rows).drop(columns="_run")


def headline(values: dict) -> dict:
    return {short: values[name] for short, name in HEADLINE.items() if name in values}


# --- the tables ----------------------------------------------------------------------------------


def _for_tables(results: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by dataset in the CLI's order (stable: runs keep their order)."""
    order = {name: i for i, name in enumerate(DATASETS)}
    return results.sort_values("dataset", key=lambda d: d.map(order), kind="stable")


def table(results: pd.DataFrame) -> str:
    """Mean ± std over (repeat, fold) splits and seeds, one row per dataset/model/recipe/kind."""
    baseline = results["model"].isin(BASELINES["classification"] + BASELINES["regression"])
    results = pd.concat([results[baseline], results[~baseline]])  # baselines head each table
    regression = results["model"].isin(REGRESSORS + BASELINES["regression"])
    results["task"] = np.where(regression, "regression", "classification")
    results = _for_tables(results)
    lines = []
    for (dataset, task), frame in results.groupby(["dataset", "task"], sort=False):
        metrics = ("rmse", "r") if task == "regression" else ("accuracy", "macro_f1")
        lines += [
            f"\n### {dataset} ({task})\n",
            f"| model | recipe | seq_len | kind | n | {metrics[0]} | {metrics[1]} |",
            "|---|---|---|---|---|---|---|",
        ]
        keys = ["model", "recipe", "seq_len", "kind"]
        for key, group in frame.groupby(keys, sort=False):
            cells = [
                f"{group[m].mean():.3f} ± {group[m].std(ddof=0):.3f}"
                if group[m].notna().any()
                else "-"  # undefined: Pearson r of a constant prediction
                for m in metrics
            ]
            lines.append(
                "| " + " | ".join(map(str, key)) + f" | {len(group)} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def paired_table(results: pd.DataFrame) -> str:
    """merflow against the paper recipe and the linear baseline, paired by split (a split's
    mean over seeds for single runs): mean difference ± std over splits, splits won, the
    difference in units of the reference's std in the main table (issue 8's yardstick) and the
    corrected resampled t of Nadeau and Bengio (2003): the variance widened by n_test / n_train,
    as the splits of repeated k-fold share their training clips."""
    lines = [
        "\n### merflow against the paper recipe and the linear baseline, paired by split\n",
        "| dataset | model | recipe | seq_len | kind | against | splits | Δ (better > 0) | won "
        "| Δ / std of the reference | corrected t |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = _for_tables(results)
    for dataset, full in results.groupby("dataset", sort=False):
        folds = full["split"].str.extract(r"-f(\d+)$")[0].astype(int).max() + 1
        merflow = full[full["recipe"] == "merflow"]
        for (model, recipe, seq_len, kind), mine in merflow.groupby(
            ["model", "recipe", "seq_len", "kind"], sort=False
        ):
            regression = model in REGRESSORS
            metric, sign = ("rmse", -1.0) if regression else ("accuracy", 1.0)
            linear = BASELINES["regression" if regression else "classification"][1]
            same = (full["model"] == model) & (full["seq_len"] == seq_len) & (full["kind"] == kind)
            others = {"paper": full[same & (full["recipe"] == "paper")]}
            others[linear] = full[full["model"] == linear]
            ours = mine.groupby("split")[metric].mean()
            for against, theirs in others.items():
                reference = theirs.groupby("split")[metric].mean()
                common = ours.index.intersection(reference.index)
                if len(common) < 2:
                    continue
                delta = sign * (ours[common] - reference[common])
                ratio = 1.0 / (folds - 1)  # test / training clips
                spread = np.sqrt((1 / len(common) + ratio) * delta.var(ddof=1))
                yardstick = theirs[theirs["split"].isin(common)][metric].std(ddof=0)
                in_stds = f"{delta.mean() / yardstick:+.2f}" if yardstick > 0 else "-"
                t = f"{delta.mean() / spread:+.2f}" if spread > 1e-9 else "-"
                lines.append(
                    f"| {dataset} | {model} | {recipe} | {seq_len} | {kind} | {against} "
                    f"| {len(common)} | {delta.mean():+.3f} ± {delta.std(ddof=0):.3f} "
                    f"| {int((delta > TIE).sum())}/{len(common)} | {in_stds} | {t} |"
                )
    return "\n".join(lines) + "\n"


def add_run_arguments(parser: argparse.ArgumentParser, out: str, gpus: int) -> None:
    """The flags every workflow-driving bench script shares: data, output, resources."""
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / out)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--gpus", type=int, default=gpus, help="Snakemake's gpu resource")
    parser.add_argument("--table-only", action="store_true", help="read finished runs only")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    add_run_arguments(parser, "merflow-recipes", gpus=1)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--recipes", nargs="+", default=["paper", "merflow"])
    networks = [*CLASSIFIERS, *REGRESSORS]
    parser.add_argument("--models", nargs="+", default=networks, choices=networks)
    parser.add_argument("--epochs", type=int, help="cap both recipes' epochs: a quick look only")
    parser.add_argument("--synth-clips", type=int, default=48)
    parser.add_argument("--synth-seconds", type=float, default=30.0)
    return parser.parse_args(argv)


def save_results(frames: list[pd.DataFrame], out: Path, csv: str, markdown: str, render) -> None:
    """Every folder's runs in ``out/csv``; ``render(runs)`` printed and in ``out/markdown``."""
    results = pd.concat(frames, ignore_index=True)
    results.to_csv(out / csv, index=False)
    text = render(results)
    (out / markdown).write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    frames, walls = [], []
    for name in args.datasets:
        folder = (args.out / name).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        config = bench_config(name, args, folder)
        if not args.table_only:
            started = time.perf_counter()
            run_workflow(folder, config, args.cores, args.gpus)
            walls.append(f"{name}: {time.perf_counter() - started:.0f} s")
        frames.append(results_of(folder, config))
    save_results(frames, args.out, "results.csv", "tables.md", lambda r: table(r) + paired_table(r))
    if walls:
        print(f"workflow wall time on {args.cores} cores: {', '.join(walls)}")


if __name__ == "__main__":
    main()
