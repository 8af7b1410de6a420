"""The arguments of every ``merflow`` subcommand, with help on each (``merflow COMMAND --help``).

Kept apart from the commands (:mod:`merflow.cli`) so that the help reads as one page; nothing
heavy is imported here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

from merflow import __version__

DESCRIPTION = (
    "Music emotion recognition from raw audio to the result tables of two papers. Every stage "
    "of the Snakemake workflow is a subcommand here (the rules call them); predict and export "
    "tag new music with a trained model. Run `merflow COMMAND --help` for a command's options."
)
ON_BAD_AUDIO = ["quarantine", "fail"]
BAD_AUDIO_HELP = "a bad clip is listed in the quarantine table and left out, or stops the stage"


class _Help(argparse.HelpFormatter):
    """Plain text; a default shown where there is one to show (argparse lists the choices)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        empty = action.default is None or action.default is False
        shown = not empty and action.default != argparse.SUPPRESS and "default" not in text
        return f"{text} (default: %(default)s)" if shown and action.option_strings else text


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


class _Version(argparse.Action):
    """``--version``, computed only when asked for (it runs git)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


def version() -> str:
    from merflow.provenance import git_revision  # pandas, via io: only --version needs it

    git = git_revision() or {}
    revision = git.get("commit", "")[:12] + (" with local changes" if git.get("dirty") else "")
    return f"merflow {__version__}" + (f" (git {revision})" if revision else "")


def build_parser(commands: ModuleType) -> argparse.ArgumentParser:
    """The parser; ``commands`` holds the ``cmd_*`` functions the subcommands run."""
    parser = argparse.ArgumentParser(prog="merflow", description=DESCRIPTION, formatter_class=_Help)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action=_Version, help="version and git revision")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, func: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
        p.set_defaults(func=getattr(commands, func))
        return p

    _data_commands(command)
    _model_commands(command)
    _tagging_commands(command)
    return parser


def _data_commands(command) -> None:
    p = command("synth", "generate the synthetic demo dataset", "cmd_synth")
    p.add_argument("--out", type=Path, required=True, help="folder to write the dataset into")
    defaults = "default: the demo dataset's, in config.yaml"
    p.add_argument("--n-clips", type=int, help=f"clips to synthesize ({defaults})")
    p.add_argument("--duration", type=float, help=f"seconds per clip ({defaults})")
    p.add_argument("--sample-rate", type=int, help=f"Hz ({defaults})")
    p.add_argument("--n-classes", type=int, choices=[2, 3, 4], help=f"classes ({defaults})")
    p.add_argument("--clips-per-song", type=int, help=f"clips sharing one song ({defaults})")
    p.add_argument("--seed", type=int, help=f"the same seed gives the same audio ({defaults})")

    p = command("index", "read a dataset's native layout into the clips table", "cmd_index")
    p.add_argument("--spec", type=json_object, required=True, help="the dataset's spec (JSON)")
    p.add_argument("--out", type=Path, required=True, help="folder for clips.parquet and co.")
    p.add_argument("--shards", type=int, default=1, help="feature jobs the clips are dealt to")
    _on_bad_audio(p)

    p = command("features", "compute one feature for one shard of a clips table", "cmd_features")
    p.add_argument("--clips", type=Path, required=True, help="a clips table (or a shard's list)")
    p.add_argument("--feature", required=True, help="a feature merflow computes, e.g. logmel")
    p.add_argument("--params", type=json_object, default={}, help="the feature's parameters (JSON)")
    p.add_argument("--shard", type=int, required=True, help="which shard of the clips table")
    p.add_argument("--out", type=Path, required=True, help="the feature table to write")
    p.add_argument("--quarantine", type=Path, required=True, help="its quarantine table")
    _on_bad_audio(p)
    p.add_argument("--progress", action="store_true", help="a progress bar on stderr")
    p.add_argument("--gpu", type=int, default=0, help="1: pretrained networks infer on CUDA")

    p = command("merge-features", "merge a feature's shards into one table", "cmd_merge_features")
    p.add_argument("--out", type=Path, required=True, help="the merged feature table")
    p.add_argument("--quarantine", type=Path, required=True, help="the merged quarantine table")
    p.add_argument("--shards", type=Path, nargs="+", required=True, help="the shards' tables")
    p.add_argument(
        "--quarantine-shards", type=Path, nargs="+", required=True, help="their quarantines"
    )

    p = command(
        "provided-features", "DEAM's own openSMILE CSVs as a feature table", "cmd_provided_features"
    )
    p.add_argument("--clips", type=Path, required=True, help="the dataset's clips.parquet")
    p.add_argument("--root", type=Path, required=True, help="the DEAM folder")
    p.add_argument("--out", type=Path, required=True, help="the feature table to write")
    p.add_argument("--quarantine", type=Path, required=True, help="its quarantine table")

    p = command("fuse-features", "join clip-level views into one table", "cmd_fuse_features")
    p.add_argument("--views", type=Path, nargs="+", required=True,
                   help="the views' clip-level feature tables, in the order to fuse")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="the fused table to write")

    p = command(
        "import-embeddings", "your own embeddings as a feature table", "cmd_import_embeddings"
    )
    p.add_argument("--clips", type=Path, required=True, help="the dataset's clips.parquet")
    # the registry's imported features, spelt out: importing it would cost every command 0.3 s
    p.add_argument("--feature", choices=["embeddings", "embeddings_500ms"], required=True,
                   help="one vector a clip, or one per 500 ms window")  # fmt: skip
    p.add_argument("--params", type=json_object, required=True, help='JSON: {"path": ...}')
    p.add_argument("--out", type=Path, required=True, help="the feature table to write")
    p.add_argument("--quarantine", type=Path, required=True, help="clips without an embedding")

    p = command("splits", "song-level, stratified train/val/test splits", "cmd_splits")
    p.add_argument("--clips", type=Path, required=True, help="the dataset's clips.parquet")
    p.add_argument("--targets", type=Path, help="its targets.parquet (quadrant stratification)")
    p.add_argument("--settings", type=json_object, required=True,
                   help="the experiment's split: settings (JSON)")  # fmt: skip
    p.add_argument("--split-id", required=True, help="which split to write, e.g. holdout-s0")
    p.add_argument("--out", type=Path, required=True, help="the split table to write")


def _on_bad_audio(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--on-bad-audio", choices=ON_BAD_AUDIO, default="quarantine", help=BAD_AUDIO_HELP
    )


def _model_commands(command) -> None:
    p = command("train", "train one model (or fit one baseline) into a run folder", "cmd_train")
    p.add_argument("--run-dir", type=Path, required=True, help="the run folder to write")
    p.add_argument("--model", required=True, help="a model of the registry, e.g. malik_crnn")
    p.add_argument("--features", type=Path, required=True, help="the feature table")
    p.add_argument("--clips", type=Path, required=True, help="the dataset's clips.parquet")
    p.add_argument("--targets", type=Path, help="its targets.parquet (regression)")
    p.add_argument("--split", type=Path, required=True, help="the split table")
    p.add_argument("--seq-len", default="full", help="windows per training sequence, or full")
    p.add_argument("--seed", type=int, default=0, help="seeds everything the run draws")
    p.add_argument("--model-options", type=json_object, default={},
                   help="the model's options (JSON), over its defaults")  # fmt: skip
    p.add_argument("--train", type=json_object, default={},
                   help="training settings (JSON): epochs, lr and the recipe keys; unset keys "
                   "keep the paper recipe")  # fmt: skip
    p.add_argument("--fusion", type=json_object, default={},
                   help="fused views: the experiment's fusion settings (JSON)")  # fmt: skip
    p.add_argument("--gpu", type=int, default=1, help="0 forces the CPU")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")

    p = command("evaluate", "predict and score a trained run", "cmd_evaluate")
    p.add_argument("--run-dir", type=Path, required=True, help="a finished run folder")
    for name, what in (("features", "feature table"), ("clips", "clips table")):
        p.add_argument(f"--{name}", type=Path, help=f"the {what} (default: the run's)")
    p.add_argument("--targets", type=Path, help="the targets table (default: the run's)")
    p.add_argument("--split", type=Path, help="the split table (default: the run's)")
    parts = ["test", "train", "val"]
    p.add_argument("--parts", nargs="+", default=parts[:2], choices=parts, help="parts to score")

    p = command("aggregate", "one experiment's runs into paper-style tables", "cmd_aggregate")
    p.add_argument("--experiment", required=True, help="the experiment's name")
    p.add_argument("--spec", type=json_object, required=True, help="its config entry (JSON)")
    p.add_argument("--dataset", type=json_object, required=True, help="its dataset's spec (JSON)")
    p.add_argument("--out", type=Path, required=True, help="the report folder to write")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="the runs' metrics.json")
    p.add_argument("--quarantine", type=Path, nargs="*", default=[], help="quarantine tables")

    p = command("report-index", "the page that links every experiment's report", "cmd_report_index")
    p.add_argument("--out", type=Path, required=True, help="the index page to write")
    p.add_argument("indexes", type=Path, nargs="+", help="the experiments' index.md")

    p = command("status", "where every run stands: done, training, failed, queued", "cmd_status")
    p.add_argument("results", type=Path, nargs="?",
                   help="the results folder (default: the config's results_dir with --config, "
                   "else results)")  # fmt: skip
    p.add_argument("--config", type=Path,
                   help="a workflow config: also list the runs it plans that have no folder "
                   "yet, as queued")  # fmt: skip


def _tagging_commands(command) -> None:
    p = command("predict", "tag new audio with a trained run or an exported model", "cmd_predict")
    p.add_argument("--model", type=Path, required=True, help="a run folder or an exported model")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="folder for the tables")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv", help="table format")
    p.add_argument("--plot", action="store_true", help="also a PNG per song")
    p.add_argument("--gpu", type=int, default=1, help="0 forces the CPU")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    p.add_argument("inputs", type=Path, nargs="+", help="audio files or folders (searched deeply)")

    p = command("export", "a run as one self-contained model folder", "cmd_export")
    p.add_argument("run_dir", type=Path, help="a finished run folder")
    p.add_argument("out", type=Path, help="the model folder to write")

    p = command(
        "pretrained", "pretrained weights: fetch them into the cache", "cmd_pretrained_fetch"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser(
        "fetch",
        help="get the musicnn 0.1.0 wheel from PyPI (or --wheel), check its sha256 and convert "
        "its taggers to safetensors in $MERFLOW_CACHE (default ~/.cache/merflow)",
        formatter_class=_Help,
    )
    fetch.add_argument("family", choices=["musicnn"], help="the weights to fetch")
    fetch.add_argument("--wheel", type=Path, help="a musicnn-0.1.0 wheel you already have")
    fetch.add_argument("--force", action="store_true", help="convert again though cached")
