"""merflow: every stage of the workflow as a subcommand, usable without Snakemake.

The Snakemake rules are thin calls of these subcommands; structured arguments (a dataset's spec,
a feature's parameters) travel as JSON strings. Heavy libraries are imported inside each command,
so ``merflow --help`` is instant. The arguments are in :mod:`merflow.cli_parser`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from merflow.errors import MerflowError

log = logging.getLogger("merflow")


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
    from merflow.features.windows import WINDOW_S
    from merflow.io import write_table
    from merflow.tables import quarantine_table, read_frame

    clips = read_frame(args.clips, "clips", ["clip_id"])
    table = read_provided_features(args.root, ids=list(clips["clip_id"]))
    columns = [c for c in table.columns if c not in ("clip_id", "t")]
    metadata = {
        "feature": "deam_opensmile",
        "params": {"source": "DEAM features/<song_id>.csv"},
        "columns": columns,
        "window_s": WINDOW_S,  # MediaEval's annotation rate
        "sample_rate": None,
    }
    write_table(table, args.out, metadata=metadata, row_group_size=50 * 90)
    write_table(quarantine_table([]), args.quarantine)
    log.info("DEAM's own features: %d windows of %d clips", len(table), len(clips))


def cmd_fuse_features(args: argparse.Namespace) -> None:
    from merflow.features.views import join

    n = join(args.views, args.out)
    log.info("%d clips with every view of %s", n, args.out.stem)


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
    from merflow.learn.recipes import TrainConfig
    from merflow.learn.training import train

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
            "fusion": args.fusion,
            "use_gpu": args.gpu > 0,
            "threads": args.threads,
        }
    )
    summary = train(args.run_dir, config)
    log.info("done: %s", summary)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from merflow.learn.evaluation import evaluate

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


def cmd_status(args: argparse.Namespace) -> None:
    from merflow.status import collect, repairs, summary, table

    statuses, results = collect(args.results, args.config)
    if statuses:
        print("\n".join(table(statuses)))
    else:
        print(f"merflow status: no runs under {results}", file=sys.stderr)
    print(summary(statuses))
    for line in repairs(statuses, results):
        print(f"merflow status: {line}", file=sys.stderr)


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


def main(argv: list[str] | None = None) -> int:
    from merflow.cli_parser import build_parser

    args = build_parser(sys.modules[__name__]).parse_args(argv)
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
