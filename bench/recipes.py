"""Benchmark: the paper and merflow training recipes against the baselines, on real samples.

Not a test: it trains many runs. For each dataset it caches the index and the features once
(Parquet under ``--cache``, merflow's own index and feature code), writes repeated stratified
k-fold splits (each fold's non-test part gives a stratified validation share), and for every
(repeat, fold) trains each architecture with both recipes and each seed through
``merflow.training.train`` and scores the test fold with ``merflow.evaluation.evaluate``: the code
path of the workflow. Seed ensembles (mean of the seeds' predictions) and, for Malik, the
sequence-length ensemble are scored from the same prediction tables. A second table pairs the
merflow recipe with the paper recipe and with the linear baseline split by split.

    nice -n 10 .venv/bin/python bench/recipes.py --datasets 4q emotify vgmidi synth \\
        [--folds 5] [--repeats 1] [--seeds 0 1] [--out docs/recipes-table.md]

Datasets (read in place from ``--data``, ../shared/data): ``4q`` = 4q-dev + 4q-sample (300
clips, 4 classes), ``emotify`` = emotify-sample (30 clips, 3 classes), ``vgmidi`` =
vgmidi-sample (24 piano pieces, arousal/valence per bar -> 500 ms windows), ``synth`` =
merflow's synthetic data (48 clips of 30 s: 3 classes and time-continuous targets).
``4q-full`` = your own copy of the whole 4Q (900 clips), ``--fourq-root`` (the unpacked
MER_audio_taffc_dataset); its splits keep each artist on one side (merflow's splitter):

    nice -n 10 .venv/bin/python bench/recipes.py --datasets 4q-full \\
        --fourq-root /data/MER_audio_taffc_dataset --folds 3 --repeats 5 --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import time
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pandas as pd

from merflow.datasets.index import build_index
from merflow.datasets.synth import generate
from merflow.evaluation import evaluate
from merflow.features import extract_features, resolve_params, write_feature_table
from merflow.io import read_metadata, read_table, write_table
from merflow.recipes import TrainConfig, resolve
from merflow.training import train

log = logging.getLogger("bench.recipes")

REPO = Path(__file__).resolve().parents[1]
FRAMES_30S = 1292  # 30 s at 22.05 kHz, hop 512: whole 4Q clips
CLASSIFIERS = ("velankar_crnn", "velankar_parallel")
REGRESSORS = ("malik_crnn", "malik_crnn_nb")
BASELINES = {"classification": ("majority", "logistic"), "regression": ("mean", "ridge")}
SEQ_LENS = (10, 30)
DATASETS = ("4q", "emotify", "vgmidi", "synth", "4q-full")
TIE = 1e-9  # a split's means over seeds differ by rounding alone: level, not won


# --- data ----------------------------------------------------------------------------------------


def prepare(name: str, data: Path, cache: Path, fourq_root: Path | None = None) -> dict:
    """Index and features of one dataset in ``cache/name`` (made once); paths and task.
    ``fourq_root``: the folder of ``4q-full``."""
    out = cache / name
    done = out / "ready.json"
    source = _full_4q_source(fourq_root) if name == "4q-full" else None
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("source") != source:
            raise SystemExit(
                f"{out} holds {name} from {info.get('source')}, not {source}: "
                "pass another --cache, or delete that folder"
            )
        return info
    out.mkdir(parents=True, exist_ok=True)
    task = "regression" if name == "vgmidi" else "classification"
    split_by = "clip"
    if name == "4q-full":
        audio_dir = {"audio_dir": "audio"} if (fourq_root / "audio").is_dir() else {}
        build_index({"name": name, "adapter": "folder", "root": fourq_root, **audio_dir}, out)
        split_by = "group"
    elif name == "4q":
        parts = [
            _index(f"4q{i}", "folder", data / d, out / d, audio_dir="audio")
            for i, d in enumerate(("4q-dev", "4q-sample"))
        ]
        _concat_clips(parts, out)
    elif name == "emotify":
        build_index(
            {
                "name": name,
                "adapter": "manifest",
                "root": data / "emotify-sample",
                "csv": "labels_3class.csv",
            },
            out,
        )
    elif name == "synth":
        generate(out / "source", n_clips=48, duration_s=30.0, n_classes=3, seed=0)
        build_index({"name": name, "adapter": "synth", "root": out / "source"}, out)
        task = "both"
    elif name == "vgmidi":
        _vgmidi_tables(data / "vgmidi-sample", out)
    clips = read_table(out / "clips.parquet")
    wanted = {}
    if task in ("classification", "both"):
        wanted["logmel"] = {"n_frames": FRAMES_30S if name != "emotify" else 2 * FRAMES_30S}
    if task in ("regression", "both"):
        wanted["logmel_500ms"] = {}
    started = time.perf_counter()
    tables, quarantined = extract_features(clips, wanted)
    for feature, table in tables.items():
        params = resolve_params(feature, wanted[feature])
        write_feature_table(table, out / f"{feature}.parquet", feature, params)
    log.info(
        "%s: features of %d clips in %.0f s (%d quarantined)",
        name,
        len(clips),
        time.perf_counter() - started,
        len(quarantined),
    )
    info = {
        "name": name,
        "task": task,
        "dir": str(out),
        "features": sorted(tables),
        "split_by": split_by,
        "source": source,
    }
    done.write_text(json.dumps(info))
    return info


def _full_4q_source(fourq_root: Path | None) -> str:
    if fourq_root is None or not fourq_root.is_dir():
        raise SystemExit(
            f"--datasets 4q-full needs --fourq-root: the folder of your 4Q copy (the unpacked "
            f"MER_audio_taffc_dataset, with Q1/ ... Q4/), not {fourq_root}"
        )
    return str(fourq_root.resolve())


def _index(name, adapter, root, out, **extra):
    build_index({"name": name, "adapter": adapter, "root": root, **extra}, out)
    return out


def _concat_clips(parts: list[Path], out: Path) -> None:
    clips = pd.concat([read_table(p / "clips.parquet") for p in parts], ignore_index=True)
    classes = read_metadata(parts[0] / "clips.parquet")["classes"]
    write_table(clips, out / "clips.parquet", {"classes": classes})
    write_table(read_table(parts[0] / "targets.parquet").iloc[:0], out / "targets.parquet")


def _vgmidi_tables(root: Path, out: Path) -> None:
    """Clips and 500 ms targets of VGMIDI: each window takes the bar holding its centre."""
    pieces = pd.read_csv(root / "pieces.csv")
    bars = pd.read_csv(root / "dynamic_per_measure.csv")
    clips = pd.DataFrame(
        {
            "clip_id": pieces["piece_id"].astype(str),
            "path": [str((root / a).resolve()) for a in pieces["audio"]],
            "label": pd.Series([None] * len(pieces), dtype="string"),
            "group": pieces["piece_id"].astype(str),
        }
    )
    rows = []
    for piece, frame in bars.groupby("piece_id"):
        end = frame["t_end_s"].max()
        t = np.arange(1, int(end / 0.5) + 1) * 0.5
        centre = t - 0.25
        which = np.searchsorted(frame["t_end_s"].to_numpy(), centre, side="right")
        inside = which < len(frame)
        rows.append(
            pd.DataFrame(
                {
                    "clip_id": piece,
                    "t": t[inside],
                    "arousal": frame["arousal_mean"].to_numpy()[which[inside]].astype(np.float32),
                    "valence": frame["valence_mean"].to_numpy()[which[inside]].astype(np.float32),
                }
            )
        )
    write_table(clips, out / "clips.parquet", {"classes": None})
    write_table(pd.concat(rows, ignore_index=True), out / "targets.parquet")


# --- splits --------------------------------------------------------------------------------------


VAL_FRACTION = 0.15


def write_splits(
    info: dict,
    folds: int,
    repeats: int,
    out: Path,
    val_fraction: float = VAL_FRACTION,
    train_fraction: float = 1.0,
) -> list[Path]:
    """Repeated stratified k-fold (by label; regression: by clip) with a stratified
    ``val_fraction`` of each training part held out for validation (0: none, so training
    keeps its last epoch). ``train_fraction`` < 1 trains on a stratified share of what is left
    (the other clips sit out; validation and test stay as they are): a learning curve. Other
    fractions than the defaults get their own split names. Datasets prepared with
    ``split_by: group`` (4q-full: the artist) are split by merflow's own splitter, so that no
    group has clips on two sides; the others clip by clip."""
    from sklearn.model_selection import train_test_split

    clips = read_table(Path(info["dir"]) / "clips.parquet")
    ids = clips["clip_id"].astype(str).to_numpy()
    labels = clips["label"].astype(str).to_numpy() if clips["label"].notna().all() else None
    by_group = info.get("split_by") == "group"
    groups = pd.Series(clips["group"].astype(str).to_numpy() if by_group else ids, index=ids)
    paths = []
    for repeat in range(repeats):
        folds_of_repeat = (
            _group_folds(clips, folds, repeat, val_fraction)
            if by_group
            else _clip_folds(ids, labels, folds, repeat, val_fraction)
        )
        for fold, part in enumerate(folds_of_repeat):
            if train_fraction < 1:
                train_ids = part.index[part == "train"].to_numpy()
                _, left_out = train_test_split(
                    train_ids,
                    train_size=train_fraction,
                    random_state=repeat,
                    stratify=None if labels is None else pd.Series(labels, ids)[train_ids],
                )
                part = part.drop(left_out)
            frame = pd.DataFrame(
                {
                    "clip_id": part.index,
                    "group": groups[part.index].to_numpy(),
                    "split": part.to_numpy(),
                }
            )
            suffix = _split_suffix(val_fraction, train_fraction)
            path = out / f"r{repeat}-f{fold}{suffix}.parquet"
            write_table(frame.sort_values("clip_id"), path)
            paths.append(path)
    return paths


def _clip_folds(ids, labels, folds: int, repeat: int, val_fraction: float) -> list[pd.Series]:
    """Each fold's side of every clip (``train``/``val``/``test``), clip by clip."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    splitter = (StratifiedKFold if labels is not None else KFold)(
        folds, shuffle=True, random_state=repeat
    )
    parts = []
    for rest, test in splitter.split(ids, labels):
        val_ids = []
        if val_fraction > 0:
            _, val_ids = train_test_split(
                ids[rest],
                test_size=val_fraction,
                random_state=repeat,
                stratify=None if labels is None else labels[rest],
            )
        part = pd.Series("train", index=ids)
        part[ids[test]], part[val_ids] = "test", "val"
        parts.append(part)
    return parts


def _group_folds(clips, folds: int, repeat: int, val_fraction: float) -> list[pd.Series]:
    """Each fold's side of every clip, whole groups at a time (merflow.splits, seed = repeat)."""
    from merflow.splits import make_splits

    splits = make_splits(
        clips, None, method="kfold", seed=repeat, n_folds=folds, val_fraction=val_fraction
    )
    return [
        pd.Series(frame["split"].to_numpy(), index=frame["clip_id"].astype(str).to_numpy())
        for frame in splits.values()
    ]


def _split_suffix(val_fraction: float, train_fraction: float = 1.0) -> str:
    suffix = "" if val_fraction == VAL_FRACTION else f"-val{val_fraction:g}"
    return suffix + ("" if train_fraction == 1 else f"-train{train_fraction:g}")


# --- runs ----------------------------------------------------------------------------------------


def run_one(
    run_dir: Path,
    info: dict,
    model: str,
    feature: str,
    split: Path,
    seed: int,
    recipe: str | None,
    seq_len: int | None,
    overrides: dict,
) -> dict:
    """Train and evaluate one run, unless a finished run of the same settings is cached; its
    test metrics."""
    root = Path(info["dir"])
    task = "regression" if model in REGRESSORS + BASELINES["regression"] else "classification"
    settings = {} if recipe is None else resolve(recipe, task, overrides)
    config = TrainConfig.from_dict(
        {
            **settings,
            "model": model,
            "features_path": str(root / f"{feature}.parquet"),
            "clips_path": str(root / "clips.parquet"),
            "split_path": str(split),
            "targets_path": str(root / "targets.parquet"),
            "seq_len": seq_len,
            "seed": seed,
            "use_gpu": False,
            "threads": 1,
        }
    )
    if not _cached(run_dir, config):
        (run_dir / "metrics.json").unlink(missing_ok=True)
        train(run_dir, config)
        evaluate(run_dir)
    return json.loads((run_dir / "metrics.json").read_text())


def _cached(run_dir: Path, config: TrainConfig) -> bool:
    """Whether ``run_dir`` holds a finished run trained with exactly ``config``. A setting the
    run's record lacks was added to merflow after it ran: the run had its default (off)."""
    if not (run_dir / "metrics.json").is_file():
        return False
    recorded = json.loads((run_dir / "run.json").read_text())["config"]
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    missing = {k: v for k, v in defaults.items() if k not in recorded}
    return (missing | recorded) == config.to_dict()


def headline(metrics: dict) -> dict:
    if metrics["task"] == "classification":
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_avg"]["f1"]}
    return {
        "rmse": metrics["average"]["rmse"]["pooled"],
        "r": metrics["average"]["pearson_r"]["pooled"],
    }


def ensemble_scores(run_dirs: list[Path], task: str) -> dict:
    """Scores of the mean of several runs' test predictions."""
    tables = [read_table(d / "predictions.parquet") for d in run_dirs]
    if task == "classification":
        columns = [c for c in tables[0].columns if c.startswith("p_")]
        mean = sum(t[columns].to_numpy() for t in tables) / len(tables)
        predicted = np.asarray([c.removeprefix("p_") for c in columns])[mean.argmax(1)]
        truth = tables[0]["label"].astype(str).to_numpy()
        from sklearn.metrics import f1_score

        return {
            "accuracy": float((predicted == truth).mean()),
            "macro_f1": float(f1_score(truth, predicted, average="macro")),
        }
    keys = ["clip_id", "t"]
    tables = [t.sort_values(keys, ignore_index=True) for t in tables]
    pred = sum(t[["arousal_pred", "valence_pred"]].to_numpy() for t in tables) / len(tables)
    true = tables[0][["arousal", "valence"]].to_numpy()
    rmse = float(np.sqrt(((pred - true) ** 2).mean(0)).mean())
    r = float(np.mean([np.corrcoef(pred[:, j], true[:, j])[0, 1] for j in range(2)]))
    return {"rmse": rmse, "r": r}


def bench_dataset(info: dict, args, results: list[dict]) -> None:
    splits = write_splits(
        info,
        args.folds,
        args.repeats,
        Path(info["dir"]) / "splits",
        args.val_fraction,
        args.train_fraction,
    )
    if args.max_splits:
        splits = splits[: args.max_splits]
    runs = Path(info["dir"]) / "runs"
    design = _split_suffix(args.val_fraction, args.train_fraction)
    tasks = ["classification", "regression"] if info["task"] == "both" else [info["task"]]
    for task, split in itertools.product(tasks, splits):
        feature = "logmel" if task == "classification" else "logmel_500ms"
        for model in BASELINES[task]:
            m = run_one(runs / model / split.stem, info, model, feature, split, 0, None, None, {})
            results.append(
                {
                    "dataset": info["name"],
                    "model": model,
                    "recipe": design.removeprefix("-") or "-",
                    "split": split.stem,
                    "kind": "single",
                    **headline(m),
                }
            )
        networks = CLASSIFIERS if task == "classification" else REGRESSORS
        for model, recipe in itertools.product(networks, args.recipes):
            if model in args.skip_models:
                continue
            if model == "velankar_parallel" and split not in splits[: args.parallel_splits]:
                continue
            lengths = SEQ_LENS if model in REGRESSORS else (None,)
            overrides = json.loads(args.overrides).get(recipe, {})

            run = {
                "dataset": info["name"],
                "model": model,
                "recipe": f"{recipe}{args.variant}{design}",
                "split": split.stem,
            }
            by_len = {}
            for seq_len in lengths:
                dirs = []
                for seed in args.seeds:
                    d = (
                        runs
                        / model
                        / f"{recipe}{args.variant}"
                        / f"len{seq_len}"
                        / split.stem
                        / f"seed{seed}"
                    )
                    started = time.perf_counter()
                    m = run_one(d, info, model, feature, split, seed, recipe, seq_len, overrides)
                    log.info(
                        "%s %s %s len%s %s seed%d: %s (%.0f s)",
                        info["name"],
                        model,
                        recipe,
                        seq_len,
                        split.stem,
                        seed,
                        headline(m),
                        time.perf_counter() - started,
                    )
                    results.append(
                        {**run, "seq_len": seq_len, "kind": "single", "seed": seed, **headline(m)}
                    )
                    dirs.append(d)
                by_len[seq_len] = dirs
                if len(dirs) > 1:
                    results.append(
                        {
                            **run,
                            "seq_len": seq_len,
                            "kind": "seed ensemble",
                            **ensemble_scores(dirs, task),
                        }
                    )
            if len(lengths) > 1:
                all_dirs = [d for dirs in by_len.values() for d in dirs]
                results.append(
                    {
                        **run,
                        "seq_len": "all",
                        "kind": "seq_len + seed ensemble",
                        **ensemble_scores(all_dirs, task),
                    }
                )
        pd.DataFrame(results).to_csv(args.cache / f"results{args.tag}.csv", index=False)


# --- the table -----------------------------------------------------------------------------------


def read_results(cache: Path) -> pd.DataFrame:
    """Every ``results*.csv`` under ``cache``, as one frame in which a run counts once, however
    many files hold it (every bench process scores the baselines; a re-run that extends a
    design repeats the cached runs). That needs each run's seed: two seeds that score alike on
    a split are otherwise one row."""
    frames = []
    for path in sorted(cache.glob("results*.csv")):
        frame = pd.read_csv(path)
        if "seed" not in frame.columns:
            raise SystemExit(
                f"{path}: written before result rows carried the seed; re-run the bench command "
                "of its tag (cached runs are reused, so it only re-writes the file)"
            )
        frames.append(frame)
    return pd.concat(frames).drop_duplicates()


def _for_tables(results: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by dataset in the CLI's order, whatever the order of the result files, with
    ``seq_len`` as text ("-" for the models without one)."""
    order = {name: i for i, name in enumerate(DATASETS)}
    results = results.assign(seq_len=results["seq_len"].astype(object).fillna("-").astype(str))
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
            cells = [f"{group[m].mean():.3f} ± {group[m].std(ddof=0):.3f}" for m in metrics]
            lines.append(
                "| " + " | ".join(map(str, key)) + f" | {len(group)} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def paired_table(results: pd.DataFrame) -> str:
    """The merflow recipe against the paper recipe and against the linear baseline, paired by
    split (each split's mean over seeds for single runs; a learning-curve point with the same
    share of paper and of the baseline). A variant of merflow (``merflow+s4-7``)
    is paired with the same variant of paper (``paper+s4-7``) where there is one, and always with
    the linear baseline. Each row gives the mean difference ± std over splits,
    splits won, the difference in units of the reference's std in the main table (over splits
    and seeds for single runs, over splits for ensembles and baselines: issue 8's yardstick)
    and the corrected resampled t of Nadeau and Bengio (2003), which widens the variance by
    ``n_test / n_train`` because the splits of repeated k-fold share their training clips."""
    lines = [
        "\n### merflow against the paper recipe and the linear baseline, paired by split\n",
        "| dataset | model | recipe | seq_len | kind | against | splits | Δ (better > 0) | won "
        "| Δ / std of the reference | corrected t |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = _for_tables(results)
    for dataset, full in results.groupby("dataset", sort=False):
        folds = full["split"].str.extract(r"-f(\d+)")[0].astype(int).max() + 1
        merflow = full[full["recipe"].str.startswith("merflow")]
        for (model, recipe, seq_len, kind), mine in merflow.groupby(
            ["model", "recipe", "seq_len", "kind"], sort=False
        ):
            regression = model in REGRESSORS
            metric, sign = ("rmse", -1.0) if regression else ("accuracy", 1.0)
            linear = BASELINES["regression" if regression else "classification"][1]
            paper = "paper" + recipe.removeprefix("merflow")
            others = {
                paper: full[
                    (full["model"] == model)
                    & (full["recipe"] == paper)
                    & (full["seq_len"] == seq_len)
                    & (full["kind"] == kind)
                ],
                linear: full[full["model"] == linear],
            }
            ours = mine.groupby("split")[metric].mean()
            for against, theirs in others.items():
                reference = theirs.groupby("split")[metric].mean()
                common = ours.index.intersection(reference.index)
                if len(common) < 2:
                    continue
                delta = sign * (ours[common] - reference[common])
                ratio = 1.0 / ((folds - 1) * _train_share(recipe))  # test / training clips
                spread = np.sqrt((1 / len(common) + ratio) * delta.var(ddof=1))
                yardstick = theirs[theirs["split"].isin(common)][metric].std(ddof=0)
                in_stds = f"{delta.mean() / yardstick:+.2f}" if yardstick > 0 else "-"
                t = f"{delta.mean() / spread:+.2f}" if spread > 1e-9 else "-"
                lines.append(
                    f"| {dataset} | {model} | {recipe} | {seq_len} | {kind} | {against} "
                    f"| {len(common)} "
                    f"| {delta.mean():+.3f} ± {delta.std(ddof=0):.3f} "
                    f"| {int((delta > TIE).sum())}/{len(common)} "
                    f"| {in_stds} "
                    f"| {t} |"
                )
    return "\n".join(lines) + "\n"


def _train_share(recipe: str) -> float:
    """The share of each training part a row trained on (``merflow-train0.5``: a learning-curve
    point; the split names carry the same suffix, so rows pair within one share)."""
    share = re.search(r"-train([\d.]+)", recipe)
    return float(share.group(1)) if share else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS[:4]), choices=DATASETS)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--fourq-root", type=Path, help="your whole 4Q, for --datasets 4q-full")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/merflow-bench"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-splits", type=int, default=0, help="only the first N splits")
    parser.add_argument(
        "--parallel-splits",
        type=int,
        default=2,
        help="splits velankar_parallel is trained on (it is ~7x slower)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=VAL_FRACTION,
        help="of each training part, held out for early stopping (0: train on all of it)",
    )
    parser.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="of each training part (after validation), trained on: a learning-curve point",
    )
    parser.add_argument("--recipes", nargs="+", default=["paper", "merflow"])
    parser.add_argument("--skip-models", nargs="*", default=[])
    parser.add_argument("--overrides", default="{}", help='JSON {"merflow": {"epochs": 20}}')
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument(
        "--variant", default="", help="suffix of the recipe's name: an ablation with --overrides"
    )
    parser.add_argument("--tag", default="", help="results<tag>.csv: one file per bench process")
    args = parser.parse_args()
    if not 0 < args.train_fraction <= 1:
        parser.error(f"--train-fraction {args.train_fraction}: must be in (0, 1]")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("merflow.training", "merflow.evaluation", "merflow.datasets.index"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    results: list[dict] = []
    if not args.table_only:
        for name in args.datasets:
            bench_dataset(prepare(name, args.data, args.cache, args.fourq_root), args, results)
    frame = read_results(args.cache)
    text = table(frame) + paired_table(frame)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
