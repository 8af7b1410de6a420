"""A trained run as one self-contained model folder, which ``merflow predict`` loads on its own.

A run directory leans on the results tree around it: the feature parameters live in the metadata
of the feature table it was trained on, the class names in the clips table. :func:`export` copies
all of it into one folder (docs/tagging.md)::

    model.json           what predict needs (:func:`run_spec`), plus the run's provenance
                         (run.json as ``training``) and its metrics (``metrics``: part -> metrics)
    weights.safetensors  networks: the weights of best.pt: the best epoch, or the checkpoint
                         ensemble of the best epochs (safetensors: no pickle)
    baseline.npz         baselines: their weights (plain arrays, ``allow_pickle=False``)
    norm.npz             z-score statistics of the training split
    MODEL_CARD.md        for people: task, input feature, training data, metrics, seed, versions

:func:`run_spec` is also how predict reads a run directory, so the two sources give one model.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from merflow import models
from merflow.errors import DatasetError
from merflow.features.windows import WINDOW_S
from merflow.io import atomic_dir, write_json
from merflow.learn import fitted
from merflow.learn.data import TARGET_NAMES, ZScore, read_split
from merflow.learn.inference import PREDICTION_BATCH_FACTOR, network_from_checkpoint
from merflow.learn.recipes import TrainConfig
from merflow.provenance import package_versions
from merflow.runs import (
    BASELINE_FILE,
    BEST_FILE,
    NORM_FILE,
    RUN_FILE,
    damaged,
    metrics_file,
    read_json_file,
    read_record,
)
from merflow.tables import FEATURE_KINDS, metadata_of

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "MODEL_CARD.md"
FORMAT = "merflow-model"
FORMAT_VERSION = 1


# --- reading a run -------------------------------------------------------------------------------


def run_spec(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What predicting with a finished run needs, gathered from the run and the tables it names.

    Keys: ``model``, ``task``, ``baseline``, ``feature``, ``feature_params``, ``feature_columns``,
    ``outputs`` (arousal/valence, or the class names in label order), ``seq_len``, ``batch_size``,
    ``prediction`` (the keyword options of :class:`~merflow.learn.inference.NetworkPredictor`).
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    config = TrainConfig.from_dict(record["config"])
    kind = models.spec(config.model)
    features = recorded_path(config.features_path, run_dir, "feature table")
    feature_meta = metadata_of(features, FEATURE_KINDS)
    if "params" not in feature_meta:
        raise DatasetError(
            f"{features}: its metadata holds no feature parameters; re-run the features stage"
        )
    if kind.task == "regression":
        outputs = list(TARGET_NAMES)
    else:
        outputs = _classes(recorded_path(config.clips_path, run_dir, "clips table"))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": config.model,
        "task": kind.task,
        "baseline": kind.baseline,
        "feature": record.get("resolved", {}).get("feature") or feature_meta.get("feature"),
        "feature_params": feature_meta["params"],
        "feature_columns": feature_meta.get("columns"),
        "outputs": outputs,
        "seq_len": config.seq_len,
        "batch_size": config.batch_size * PREDICTION_BATCH_FACTOR,
        # How the recipe predicts (multi-crop mean, smoothing): an export must predict the same.
        "prediction": {
            "input_frames": config.input_frames,
            "crop_hop": config.eval_crop_hop,
            "smooth_windows": config.smooth_windows,
        },
    }


def recorded_path(recorded: str, run_dir: Path, what: str) -> Path:
    """A path run.json recorded: as written (absolute, or relative to the working directory),
    else relative to a folder above the run (the workflow's folder, when it wrote a relative
    ``results/...`` path)."""
    path = Path(recorded)
    if path.is_file():
        return path
    if not path.is_absolute():
        for folder in run_dir.resolve().parents:
            if (folder / path).is_file():
                return folder / path
    raise DatasetError(
        f"{run_dir / RUN_FILE} names the {what} {recorded}, which is not found (from the working "
        "directory or any folder above the run). Run from the workflow's folder, or use a model "
        "exported with `merflow export` while the results were in place"
    )


def _classes(clips_path: Path) -> list[str]:
    classes = metadata_of(clips_path, "clips", ("clip_id", "label")).get("classes")
    if not classes:
        raise DatasetError(f"{clips_path}: metadata has no 'classes' for the classifier's outputs")
    return list(classes)


# --- export --------------------------------------------------------------------------------------


def export(run_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the model folder of a finished run (module docstring) and return its path.

    The folder is assembled beside ``out_dir`` and moved into place when complete
    (:func:`~merflow.io.atomic_dir`); an earlier export at ``out_dir`` is replaced, any other
    non-empty folder is left alone (an error).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_target(out_dir)
    spec = run_spec(run_dir)
    record = read_record(run_dir)
    with atomic_dir(out_dir) as staging:
        if spec["baseline"]:
            fitted.load(run_dir / BASELINE_FILE)  # whole and plain, as predict reads it
            _copy(run_dir / BASELINE_FILE, staging / BASELINE_FILE)
        else:
            spec["build"] = _write_weights(run_dir / BEST_FILE, staging / WEIGHTS_FILE)
        ZScore.load(run_dir / NORM_FILE)  # whole and plain, before it is copied
        _copy(run_dir / NORM_FILE, staging / NORM_FILE)
        spec |= {
            "training": record,
            "metrics": _metrics(run_dir),
            "exported_from": str(run_dir.resolve()),
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "exported_with": package_versions(("merflow", "torch", "numpy", "librosa")),
        }
        write_json(spec, staging / MODEL_FILE)
        (staging / CARD_FILE).write_text(model_card(spec, _data_summary(run_dir, record)))
    return out_dir


def _check_target(out_dir: Path) -> None:
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MODEL_FILE).is_file():
        raise DatasetError(
            f"{out_dir} is a non-empty folder that holds no exported model; export into a new "
            "folder (an earlier export is replaced, anything else is left alone)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"{out_dir} is a file; give a folder to export the model into")


def _copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise DatasetError(f"{source} is missing; the run did not finish: train it again")
    shutil.copyfile(source, target)


def _write_weights(checkpoint_path: Path, target: Path) -> dict:
    """The weights of ``best.pt`` as safetensors; returns the arguments that rebuild the model."""
    import torch
    from safetensors.torch import save_file

    _, checkpoint = network_from_checkpoint(checkpoint_path, torch.device("cpu"))  # they fit
    # safetensors refuses tensors that share memory: give each its own copy
    tensors = {k: v.detach().clone().contiguous() for k, v in checkpoint["model"].items()}
    save_file(tensors, str(target), metadata={"format": FORMAT})
    return checkpoint["build"]


def _metrics(run_dir: Path) -> dict[str, Any]:
    found = {}
    for part in ("test", "val", "train"):
        path = run_dir / metrics_file(part)
        if path.is_file():
            fix = _reevaluate(run_dir, part)
            found[part] = read_json_file(path, fix)
            try:
                _metric_lines({part: found[part]})  # what the model card reads of it
            except (KeyError, TypeError, ValueError) as exc:
                raise damaged(path, exc, fix) from None
    return found


def _reevaluate(run_dir: Path, part: str) -> str:
    """What to do about a damaged metrics file of ``part``."""
    return (
        f"evaluate the run again (merflow evaluate --run-dir {run_dir} --parts {part}), or delete "
        "the file to export without those metrics"
    )


def _data_summary(run_dir: Path, record: dict) -> dict[str, Any]:
    """Dataset name and clips per split part, as far as the results tree still holds them."""
    config = record["config"]
    summary: dict[str, Any] = {"dataset": None, "adapter": None, "parts": None}
    try:
        clips = recorded_path(config["clips_path"], run_dir, "clips table")
        meta = metadata_of(clips, "clips", ("clip_id",))
        summary["dataset"], summary["adapter"] = meta.get("dataset"), meta.get("adapter")
        parts = read_split(recorded_path(config["split_path"], run_dir, "split table"))
        summary["parts"] = {name: len(ids) for name, ids in parts.items()}
    except DatasetError:
        pass  # the card says "unknown"; the rest of the export does not need these
    return summary


# --- the model card ------------------------------------------------------------------------------


def model_card(spec: dict[str, Any], data: dict[str, Any]) -> str:
    """MODEL_CARD.md: what the model does, what it was trained on, how well it did."""
    record = spec["training"]
    config, result = record["config"], record.get("result", {})
    split = record.get("split", {})
    parts = data["parts"]
    lines = [
        f"# {spec['model']} on {spec['feature']}",
        "",
        _task_line(spec),
        "",
        "## Input",
        "",
        f"Feature `{spec['feature']}`, computed from the decoded audio with these parameters, "
        "then z-scored with the training split's statistics (`norm.npz`):",
        "",
        *(f"- `{k}`: `{v}`" for k, v in sorted(spec["feature_params"].items())),
        "",
        "## Training",
        "",
        f"- data: dataset `{data['dataset'] or 'unknown'}` (adapter `{data['adapter'] or '?'}`), "
        f"split `{split.get('id')}` (sha256 `{str(split.get('sha256'))[:12]}…`)"
        + (
            f": {parts.get('train', 0)} train / {parts.get('val', 0)} val / "
            f"{parts.get('test', 0)} test clips"
            if parts
            else ""
        ),
        f"- seed {record.get('seed')}; sequence length {config.get('seq_len') or 'whole clips'}; "
        f"epochs {config.get('epochs')} (ran {result.get('epochs_run')}, best "
        f"{result.get('best_epoch')}), batch {config.get('batch_size')}, lr {config.get('lr')}",
        f"- model options: `{record.get('resolved', {}).get('model_options')}`",
        f"- {record.get('n_parameters')} parameters; trained on {record.get('device')} in "
        f"{record.get('wall_time_s')} s",
        "",
        "## Metrics",
        "",
        *_metric_lines(spec["metrics"]),
        "",
        "## Provenance",
        "",
        f"- exported {spec['exported_at']} from `{spec['exported_from']}`",
        f"- trained with {_versions(record.get('versions', {}))}",
        f"- code: {_git(record.get('git'))}",
        "",
        "## Use",
        "",
        "```",
        "merflow predict --model <this folder> --out tags/ songs/",
        "```",
        "",
    ]
    return "\n".join(lines)


def _task_line(spec: dict) -> str:
    if spec["task"] == "regression":
        window = spec["feature_params"].get("window_s", WINDOW_S)
        return f"Regression: arousal and valence in [-1, 1] every {window:g} s of a song."
    classes = ", ".join(f"`{c}`" for c in spec["outputs"])
    return f"Classification into {len(spec['outputs'])} emotion classes: {classes}."


def _metric_lines(metrics: dict[str, dict]) -> list[str]:
    if not metrics:
        return ["Not evaluated (the run folder held no metrics.json)."]
    lines = []
    for part, m in metrics.items():
        if m.get("task") == "classification":
            lines.append(
                f"- {part} ({m['n_clips']} clips): accuracy {m['accuracy']:.3f}, "
                f"macro F1 {m['macro_avg']['f1']:.3f}"
            )
            continue
        dims = []
        for dim in (*TARGET_NAMES, "average"):
            rmse, r = m[dim]["rmse"]["song_mean"], m[dim]["pearson_r"]["song_mean"]
            dims.append(f"{dim} RMSE {_number(rmse)}, r {_number(r)}")
        lines.append(f"- {part} ({m['n_clips']} songs, per-song means): " + "; ".join(dims))
    return lines


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _versions(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "unknown versions"


def _git(git: dict | None) -> str:
    if not git:
        return "not in a git checkout"
    return f"commit `{git['commit'][:12]}`" + (
        " (with uncommitted changes)" if git["dirty"] else ""
    )
