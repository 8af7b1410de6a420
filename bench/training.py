"""Benchmark: training speed of each architecture at the papers' data sizes, on dummy data.

For each network it writes dummy feature tables of the paper's size and runs
``merflow.learn.training.train`` for a few epochs: the real code path (batching, validation on
stitched songs, checkpoints, history). Within each epoch it also clocks the model's own work
(forward passes, backward, optimizer steps; see :class:`ModelClock`); the rest of the epoch is
the overhead, whose target is < 10 %. Epoch times exclude the one-off loading and z-scoring.

    .venv/bin/python bench/training.py [--epochs 3] [--threads 2] [--models malik_crnn ...]

Sizes: Malik et al. -- 431 training clips x 60 windows x 260 features (the MediaEval 2015
development set) plus 43 validation clips; Velankar et al. -- 138 clips x 128 mels x 640 frames
(all for training) plus 14 validation clips.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
import torch.nn.modules.module as module_hooks
import torch.optim.optimizer as optimizer_hooks

from merflow.io import write_table
from merflow.learn.recipes import TrainConfig
from merflow.learn.training import train

MALIK = {"n_train": 431, "n_val": 43, "n_windows": 60, "n_features": 260, "batch_size": 32}
VELANKAR = {"n_train": 138, "n_val": 14, "n_mels": 128, "n_frames": 640, "batch_size": 16}
CASES = {  # name -> (model, seq_len)
    "malik_crnn/len10": ("malik_crnn", 10),
    "malik_crnn/len60": ("malik_crnn", 60),
    "malik_crnn_nb/len10": ("malik_crnn_nb", 10),
    "velankar_crnn": ("velankar_crnn", None),
    "velankar_parallel": ("velankar_parallel", None),
}


def write_window_tables(root: Path, rng: np.random.Generator) -> dict[str, str]:
    s = MALIK
    n_clips, n = s["n_train"] + s["n_val"], s["n_windows"]
    ids = [f"clip{i:04d}" for i in range(n_clips)]
    names = [f"feature_{j:03d}" for j in range(s["n_features"])]
    t = np.tile(0.5 * np.arange(1, n + 1), n_clips)
    values = rng.normal(size=(n_clips * n, s["n_features"])).astype(np.float32)
    features = pd.DataFrame(values, columns=names)
    features.insert(0, "t", t)
    features.insert(0, "clip_id", np.repeat(ids, n))
    write_table(features, root / "windows.parquet", {"feature": "compare_500ms", "columns": names})
    targets = pd.DataFrame(
        {
            "clip_id": np.repeat(ids, n),
            "t": t,
            "arousal": rng.uniform(-1, 1, n_clips * n).astype(np.float32),
            "valence": rng.uniform(-1, 1, n_clips * n).astype(np.float32),
        }
    )
    write_table(targets, root / "targets.parquet")
    write_table(pd.DataFrame({"clip_id": ids, "label": [None] * n_clips}), root / "wclips.parquet")
    parts = ["train"] * s["n_train"] + ["val"] * s["n_val"]
    write_table(
        pd.DataFrame({"clip_id": ids, "group": ids, "split": parts}), root / "wsplit.parquet"
    )
    return {
        "features_path": str(root / "windows.parquet"),
        "targets_path": str(root / "targets.parquet"),
        "clips_path": str(root / "wclips.parquet"),
        "split_path": str(root / "wsplit.parquet"),
    }


def write_frame_tables(root: Path, rng: np.random.Generator) -> dict[str, str]:
    s = VELANKAR
    n_clips, size = s["n_train"] + s["n_val"], s["n_mels"] * s["n_frames"]
    ids = [f"clip{i:04d}" for i in range(n_clips)]
    flat = pa.array(rng.normal(-40, 10, n_clips * size).astype(np.float32))
    table = pa.table(
        {
            "clip_id": ids,
            "n_valid_frames": pa.array([s["n_frames"]] * n_clips, pa.int32()),
            "logmel": pa.FixedSizeListArray.from_arrays(flat, size),
        }
    )
    meta = {"feature": "logmel", "shape": [s["n_mels"], s["n_frames"]]}
    write_table(table, root / "frames.parquet", meta)
    classes = ["happy", "sad", "calm"]
    labels = [classes[i % 3] for i in range(n_clips)]
    write_table(
        pd.DataFrame({"clip_id": ids, "label": labels}),
        root / "fclips.parquet",
        {"classes": classes},
    )
    parts = ["train"] * s["n_train"] + ["val"] * s["n_val"]
    write_table(
        pd.DataFrame({"clip_id": ids, "group": ids, "split": parts}), root / "fsplit.parquet"
    )
    return {
        "features_path": str(root / "frames.parquet"),
        "clips_path": str(root / "fclips.parquet"),
        "split_path": str(root / "fsplit.parquet"),
    }


class ModelClock:
    """Seconds spent inside the model during training: forward passes of the top-level module
    (training and validation), ``backward()`` calls and optimizer steps.

    Installed process-wide for the benchmark (global module and optimizer hooks, a wrapped
    ``Tensor.backward``) so that the real training code runs unchanged; measuring in the same
    process and epoch as the total keeps the overhead share meaningful on a busy machine.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._started = 0.0

    def _enter(self, *_) -> None:
        if self._depth == 0:
            self._started = time.perf_counter()
        self._depth += 1

    def _leave(self, *_) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._started

    def install(self) -> None:
        module_hooks.register_module_forward_pre_hook(self._enter)
        module_hooks.register_module_forward_hook(self._leave)
        optimizer_hooks.register_optimizer_step_pre_hook(self._enter)
        optimizer_hooks.register_optimizer_step_post_hook(self._leave)
        backward = torch.Tensor.backward

        def timed_backward(tensor, *args, **kwargs):
            self._enter()
            try:
                return backward(tensor, *args, **kwargs)
            finally:
                self._leave()

        torch.Tensor.backward = timed_backward

    def lap(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def measure(run_dir: Path, config: TrainConfig, clock: ModelClock) -> tuple[float, float, float]:
    """Median epoch seconds and in-model seconds over the epochs after the first, and the
    seconds spent before the first epoch (reading, aligning and z-scoring the tables)."""
    inside: list[float] = []
    clock.lap()
    started = time.perf_counter()
    train(run_dir, config, on_epoch_end=lambda epoch, row: inside.append(clock.lap()))
    wall = time.perf_counter() - started
    total = pd.read_csv(run_dir / "history.csv")["seconds"].tolist()
    keep = slice(1, None) if len(total) > 1 else slice(None)
    return statistics.median(total[keep]), statistics.median(inside[keep]), wall - sum(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    clock = ModelClock()
    clock.install()
    rows = []
    with tempfile.TemporaryDirectory(prefix="merflow-bench-") as tmp:
        root = Path(tmp)
        window_paths = write_window_tables(root, rng)
        frame_paths = write_frame_tables(root, rng)
        for case in args.cases:
            model_name, seq_len = CASES[case]
            is_malik = model_name.startswith("malik")
            sizes = MALIK if is_malik else VELANKAR
            config = TrainConfig(
                model=model_name,
                **(window_paths if is_malik else frame_paths),
                seq_len=seq_len,
                epochs=args.epochs,
                patience=args.epochs,
                batch_size=sizes["batch_size"],
                use_gpu=False,
                threads=args.threads,
            )
            epoch, model_only, setup = measure(root / case.replace("/", "-"), config, clock)
            rows.append(
                {
                    "case": case,
                    "epoch_s": round(epoch, 3),
                    "clips_per_s": round(sizes["n_train"] / epoch, 1),
                    "model_s": round(model_only, 3),
                    "overhead_pct": round(100 * max(epoch - model_only, 0.0) / epoch, 1),
                    "setup_s": round(setup, 2),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(f"\nthreads={args.threads}, epochs={args.epochs} (median of epochs 2..n)\n")
    print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
