"""The jobs of tests/slurm/Snakefile: a stand-in for merflow's workflow on a test Slurm cluster.

Each step does a little real, seeded work (numpy features, a torch fit) and writes, beside its
output, a record of where it ran: the Slurm job id, partition, the GPU Slurm granted and what
torch saw. `check_run.py` reads these records to prove that every job went through Slurm and that
a job granted a GPU without CUDA falls back to the CPU with the same results as a local run.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

N_FEATURES = 8
ROWS_PER_SHARD = 32
SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_JOB_PARTITION",
    "SLURM_CPUS_PER_TASK",
    "SLURM_JOB_GPUS",
    "SLURM_GPUS",
    "CUDA_VISIBLE_DEVICES",
)


def write_record(path: Path, **facts: object) -> None:
    """Where this job ran: the Slurm variables of its environment plus `facts`."""
    record = {name: os.environ.get(name) for name in SLURM_VARIABLES} | facts
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def extract_features(shard: int, out: Path, record: Path) -> None:
    """A shard of features whose target is a fixed linear function of them (plus noise)."""
    rng = np.random.default_rng(shard)
    x = rng.standard_normal((ROWS_PER_SHARD, N_FEATURES)).astype(np.float32)
    weights = np.linspace(-1.0, 1.0, N_FEATURES, dtype=np.float32)
    y = x @ weights + 0.1 * rng.standard_normal(ROWS_PER_SHARD).astype(np.float32)
    np.savez(out, x=x, y=y)
    write_record(record, shard=shard)


def merge_features(shards: list[Path], out: Path, record: Path) -> None:
    parts = [np.load(p) for p in shards]
    np.savez(
        out, x=np.concatenate([p["x"] for p in parts]), y=np.concatenate([p["y"] for p in parts])
    )
    write_record(record, n_shards=len(shards))


def train(features: Path, gpu: int, threads: int, seed: int, out: Path, record: Path) -> None:
    """Fit a linear model by Adam on the device merflow would choose; write its loss."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    cuda_available = torch.cuda.is_available()
    device = torch.device("cuda" if gpu > 0 and cuda_available else "cpu")
    data = np.load(features)
    x = torch.from_numpy(data["x"]).to(device)
    y = torch.from_numpy(data["y"]).to(device)
    model = torch.nn.Linear(N_FEATURES, 1).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
        loss.backward()
        optimiser.step()
    # The exact float, so that a local and a Slurm run compare equal only if they computed alike.
    metrics = {"seed": seed, "final_loss": float(loss.detach().cpu())}
    out.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    write_record(record, gpu_requested=gpu, cuda_available=cuda_available, device=str(device))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("features")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--record", type=Path, required=True)
    p = steps.add_parser("merge")
    p.add_argument("--shards", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--record", type=Path, required=True)
    p = steps.add_parser("train")
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--gpu", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--record", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.step == "features":
        extract_features(args.shard, args.out, args.record)
    elif args.step == "merge":
        merge_features(args.shards, args.out, args.record)
    else:
        train(args.features, args.gpu, args.threads, args.seed, args.out, args.record)


if __name__ == "__main__":
    main()
