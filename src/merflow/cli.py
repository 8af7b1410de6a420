"""``merflow``: every stage of the workflow as a subcommand, usable without Snakemake.

The Snakemake rules are thin calls of these subcommands; structured arguments (a dataset's spec,
a feature's parameters) travel as JSON strings. Heavy libraries are imported inside each command,
so ``merflow --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from merflow.errors import MerflowError

log = logging.getLogger("merflow")


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


# --- data ------------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> None:
    from merflow.datasets import synth

    given = {
        "n_clips": args.n_clips,
        "duration_s": args.duration,
        "sample_rate": args.sample_rate,
        "n_classes": args.n_classes,
        "clips_per_song": args.clips_per_song,
        "seed": args.seed,
    }
    synth.generate(args.out, **{k: v for k, v in given.items() if v is not None})
    log.info("synthesized the dataset in %s", args.out)


def cmd_index(args: argparse.Namespace) -> None:
    from merflow.datasets.index import build_index, write_shard_lists

    result = build_index(args.spec, args.out, on_bad_audio=args.on_bad_audio, n_shards=args.shards)
    write_shard_lists(args.out, args.shards)
    log.info("%s", result)


def cmd_features(args: argparse.Namespace) -> None:
    from merflow import features
    from merflow.io import write_table
    from merflow.tables import quarantine_table, read_frame

    params = features.resolve_params(args.feature, args.params)
    if features.registry.weights_needed(args.feature, params):
        from merflow.devices import use_gpu_for_features

        log.info("pretrained network on %s", use_gpu_for_features(args.gpu > 0))
    clips = read_frame(args.clips, "clips", needed=("clip_id", "path", "shard"))
    clips = clips[clips["shard"] == args.shard].reset_index(drop=True)
    table, quarantined = features.extract_shard(
        clips, args.feature, params, on_bad_audio=args.on_bad_audio, progress=args.progress
    )
    features.write_feature_table(table, args.out, args.feature, params)
    write_table(quarantine_table(quarantined), args.quarantine)
    log.info(
        "%s shard %d: %d clips, %d quarantined",
        args.feature,
        args.shard,
        len(clips),
        len(quarantined),
    )


def cmd_merge_features(args: argparse.Namespace) -> None:
    import pandas as pd

    from merflow import features
    from merflow.io import write_table
    from merflow.tables import quarantine_table, read_frame

    features.merge_shards(args.shards, args.out)
    frames = [read_frame(p, "quarantine") for p in args.quarantine_shards]
    rows = pd.concat(frames, ignore_index=True).to_dict("records")
    write_table(quarantine_table(rows), args.quarantine)


def cmd_provided_features(args: argparse.Namespace) -> None:
    from merflow.datasets.deam import read_provided_features
    from merflow.io import write_table
    from merflow.tables import quarantine_table, read_frame

    clips = read_frame(args.clips, "clips", ["clip_id"])
    table = read_provided_features(args.root, ids=list(clips["clip_id"]))
    columns = [c for c in table.columns if c not in ("clip_id", "t")]
    metadata = {
        "feature": "deam_opensmile",
        "params": {"source": "DEAM features/<song_id>.csv"},
        "columns": columns,
        "window_s": 0.5,  # MediaEval's annotation rate
        "sample_rate": None,
    }
    write_table(table, args.out, metadata=metadata, row_group_size=50 * 90)
    write_table(quarantine_table([]), args.quarantine)
    log.info("DEAM's own features: %d windows of %d clips", len(table), len(clips))


def cmd_import_embeddings(args: argparse.Namespace) -> None:
    from merflow.features import resolve_params
    from merflow.features.imported import import_embeddings

    params = resolve_params(args.feature, args.params)
    n = import_embeddings(args.feature, params, args.clips, args.out, args.quarantine)
    log.info("%s: embeddings of %d clips imported from %s", args.feature, n, params["path"])


def cmd_splits(args: argparse.Namespace) -> None:
    from merflow import splits
    from merflow.io import write_table
    from merflow.tables import read_frame

    clips = read_frame(args.clips, "clips", needed=("clip_id",))
    targets = read_frame(args.targets, "targets") if args.targets else None
    settings = dict(args.settings)
    made = splits.make_splits(clips, targets, **settings)
    if args.split_id not in made:
        raise MerflowError(
            f"split '{args.split_id}' is not among those the settings make: {', '.join(made)}"
        )
    split = made[args.split_id]
    write_table(split, args.out, metadata={"split_id": args.split_id, "settings": settings})
    log.info("%s\n%s", args.split_id, splits.describe(split, clips))


# --- models ----------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> None:
    from merflow.recipes import TrainConfig
    from merflow.training import train

    config = TrainConfig.from_dict(
        {
            **args.train,
            "model": args.model,
            "features_path": str(args.features),
            "clips_path": str(args.clips),
            "split_path": str(args.split),
            "targets_path": str(args.targets) if args.targets else None,
            "model_options": args.model_options,
            "seq_len": None if args.seq_len == "full" else int(args.seq_len),
            "seed": args.seed,
            "use_gpu": args.gpu > 0,
            "threads": args.threads,
        }
    )
    summary = train(args.run_dir, config)
    log.info("done: %s", summary)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from merflow.evaluation import evaluate

    paths = {
        "features_path": args.features,
        "clips_path": args.clips,
        "split_path": args.split,
        "targets_path": args.targets,
    }
    for part in args.parts:
        evaluate(args.run_dir, part=part, **paths)  # logs the headline of each part


# --- reports ---------------------------------------------------------------------------------


def cmd_aggregate(args: argparse.Namespace) -> None:
    from merflow.reporting import aggregate

    written = aggregate(
        args.experiment, args.spec, args.metrics, args.out, args.dataset, args.quarantine
    )
    log.info("wrote %d files into %s", len(written), args.out)


def cmd_report_index(args: argparse.Namespace) -> None:
    from merflow.reporting import report_index

    out = report_index(args.indexes, args.out)
    print(f"merflow: tables and figures are indexed in {out}")


# --- using a trained model ---------------------------------------------------------------------


def cmd_predict(args: argparse.Namespace) -> None:
    import torch

    from merflow.devices import select_device
    from merflow.predict import load_model, predict_files

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, select_device(args.gpu > 0))
    report = predict_files(model, args.inputs, args.out, fmt=args.format, plot=args.plot)
    print(f"merflow predict: {report.describe()}", file=sys.stderr)


def cmd_pretrained_fetch(args: argparse.Namespace) -> None:
    from merflow.pretrained.fetch import fetch_musicnn

    for path in fetch_musicnn(args.wheel, force=args.force):
        print(f"merflow pretrained: {path}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> None:
    from merflow.export import export

    print(f"merflow export: model written to {export(args.run_dir, args.out)}", file=sys.stderr)


# --- the parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="merflow", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate the synthetic demo dataset")
    p.add_argument("--out", type=Path, required=True)
    defaults = "default: the demo dataset's (config.yaml)"
    p.add_argument("--n-clips", type=int, help=f"clips to synthesize ({defaults})")
    p.add_argument("--duration", type=float, help=f"seconds per clip ({defaults})")
    p.add_argument("--sample-rate", type=int, help=f"Hz ({defaults})")
    p.add_argument("--n-classes", type=int, help=f"2, 3 or 4 classes ({defaults})")
    p.add_argument("--clips-per-song", type=int, help=f"clips sharing one song ({defaults})")
    p.add_argument("--seed", type=int, help=f"the same seed gives the same audio ({defaults})")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("index", help="read a dataset's native layout into clips/targets tables")
    p.add_argument("--spec", type=_json_arg, required=True, help="the dataset's spec as JSON")
    p.add_argument("--out", type=Path, required=True, help="folder for clips.parquet etc.")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--on-bad-audio", choices=["quarantine", "fail"], default="quarantine")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("features", help="extract one feature for one shard of a clips table")
    p.add_argument("--clips", type=Path, required=True)
    p.add_argument("--feature", required=True)
    p.add_argument("--params", type=_json_arg, default={})
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quarantine", type=Path, required=True)
    p.add_argument("--on-bad-audio", choices=["quarantine", "fail"], default="quarantine")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--gpu", type=int, default=0, help="1: pretrained networks infer on CUDA")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("merge-features", help="merge feature shards into one table")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quarantine", type=Path, required=True)
    p.add_argument("--shards", type=Path, nargs="+", required=True)
    p.add_argument("--quarantine-shards", type=Path, nargs="+", required=True)
    p.set_defaults(func=cmd_merge_features)

    p = sub.add_parser("provided-features", help="DEAM's own openSMILE CSVs as a feature table")
    p.add_argument("--clips", type=Path, required=True)
    p.add_argument("--root", type=Path, required=True, help="the DEAM folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quarantine", type=Path, required=True)
    p.set_defaults(func=cmd_provided_features)

    p = sub.add_parser("import-embeddings", help="your own embeddings as a feature table")
    p.add_argument("--clips", type=Path, required=True, help="the dataset's clips.parquet")
    p.add_argument("--feature", choices=["embeddings", "embeddings_500ms"], required=True)
    p.add_argument("--params", type=_json_arg, required=True, help='JSON: {"path": ...}')
    p.add_argument("--out", type=Path, required=True, help="the feature table to write")
    p.add_argument("--quarantine", type=Path, required=True, help="clips without an embedding")
    p.set_defaults(func=cmd_import_embeddings)

    p = sub.add_parser("splits", help="song-level, stratified train/val/test splits")
    p.add_argument("--clips", type=Path, required=True)
    p.add_argument("--targets", type=Path)
    p.add_argument("--settings", type=_json_arg, required=True, help="method, seed, fractions")
    p.add_argument("--split-id", required=True, help="which split to write, e.g. holdout-s0")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_splits)

    p = sub.add_parser("train", help="train one model (or fit one baseline) into a run folder")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--clips", type=Path, required=True)
    p.add_argument("--targets", type=Path)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--seq-len", default="full", help="windows per sequence, or 'full'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-options", type=_json_arg, default={})
    p.add_argument(
        "--train",
        type=_json_arg,
        default={},
        help="training settings as JSON: epochs, patience, batch_size, lr and the recipe keys "
        "of merflow.recipes (docs/recipes.md); unset keys keep the paper recipe",
    )
    p.add_argument("--gpu", type=int, default=1, help="0 forces the CPU")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="predict and score a trained run")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--features", type=Path)
    p.add_argument("--clips", type=Path)
    p.add_argument("--targets", type=Path)
    p.add_argument("--split", type=Path)
    parts = ["test", "train", "val"]
    p.add_argument("--parts", nargs="+", default=["test", "train"], choices=parts)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("aggregate", help="one experiment's runs into paper-style tables")
    p.add_argument("--experiment", required=True)
    p.add_argument("--spec", type=_json_arg, required=True, help="the experiment's config entry")
    p.add_argument("--dataset", type=_json_arg, required=True, help="the dataset's spec")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, nargs="+", required=True)
    p.add_argument("--quarantine", type=Path, nargs="*", default=[])
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("report-index", help="the page that links every experiment's report")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("indexes", type=Path, nargs="+")
    p.set_defaults(func=cmd_report_index)

    p = sub.add_parser("predict", help="tag new audio with a trained run or an exported model")
    p.add_argument("--model", type=Path, required=True, help="a run folder or an exported model")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="folder for the tables")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--plot", action="store_true", help="also a PNG per song")
    p.add_argument("--gpu", type=int, default=1, help="0 forces the CPU")
    p.add_argument("--threads", type=int)
    p.add_argument("inputs", type=Path, nargs="+", help="audio files or folders (searched deeply)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("pretrained", help="pretrained weights: fetch them into the cache")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser(
        "fetch",
        help="get the musicnn 0.1.0 wheel from PyPI (or --wheel), check it, convert its "
        "taggers to safetensors in $MERFLOW_CACHE (default ~/.cache/merflow)",
    )
    fetch.add_argument("family", choices=["musicnn"], help="the weights to fetch")
    fetch.add_argument("--wheel", type=Path, help="a musicnn-0.1.0 wheel you already have")
    fetch.add_argument("--force", action="store_true", help="convert again though cached")
    fetch.set_defaults(func=cmd_pretrained_fetch)

    p = sub.add_parser("export", help="a run as one self-contained model folder")
    p.add_argument("run_dir", type=Path, help="a finished run folder")
    p.add_argument("out", type=Path, help="the model folder to write")
    p.set_defaults(func=cmd_export)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        args.func(args)
    except MerflowError as exc:
        print(f"merflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        missing = exc.filename or exc  # pyarrow names the file in its message only
        print(
            f"merflow {args.command}: error: {missing}: no such file; check the path "
            "(inputs of the workflow's stages are made by the stage before)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
