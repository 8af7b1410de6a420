"""Re-score finished merflow runs with their best epoch alone: the ``merflow+ce1`` rows of
``bench/recipes.py`` without training again.

A merflow classification run predicts with the mean of its ``checkpoint_ensemble`` best epochs,
and its ``best.pt`` holds them best first. Early stopping watches the single epochs, so training
with ``checkpoint_ensemble: 1`` runs the same epochs and predicts with member 0 alone. For every
merflow run of ``--model`` in the bench cache this writes member 0 as a one-network run beside it
(``<recipe>+ce1-rescored/``), scores its test fold with ``merflow.evaluation.evaluate`` and adds
the rows to ``results<tag>.csv`` as ``merflow+ce1``. Splits that already have trained
``merflow+ce1`` runs are not added twice; on them the script checks that the re-scored runs
predict the same class for every clip, and stops if one does not.

    nice -n 10 .venv/bin/python bench/best_epoch.py --model velankar_parallel --tag E10pce1
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import pandas as pd
import torch
from recipes import ensemble_scores, headline

from merflow.evaluation import evaluate
from merflow.io import atomic_path, read_json, read_table, write_json
from merflow.runs import BEST_FILE, NORM_FILE, RUN_FILE, load_checkpoint

log = logging.getLogger("bench.best_epoch")


def best_epoch_run(run_dir: Path, out: Path) -> dict:
    """Write member 0 of ``run_dir``'s checkpoint ensemble as a run in ``out``; its metrics."""
    checkpoint = load_checkpoint(run_dir / BEST_FILE, torch.device("cpu"))
    members = checkpoint["build"].get("members", 1)
    if members < 2:
        raise SystemExit(f"{run_dir}: best.pt holds one network, not a checkpoint ensemble")
    prefix = "members.0."
    single = {
        "model": {
            k.removeprefix(prefix): v
            for k, v in checkpoint["model"].items()
            if k.startswith(prefix)
        },
        "build": {k: v for k, v in checkpoint["build"].items() if k != "members"},
        "epoch": checkpoint["epochs"][0],
    }
    with atomic_path(out / BEST_FILE) as tmp:
        torch.save(single, tmp)
    with atomic_path(out / NORM_FILE) as tmp:
        shutil.copy2(run_dir / NORM_FILE, tmp)
    record = read_json(run_dir / RUN_FILE)
    record["config"]["checkpoint_ensemble"] = 1
    record["rescored_from"] = str(run_dir)
    write_json(record, out / RUN_FILE)
    return evaluate(out)


def same_classes(a: Path, b: Path) -> bool:
    x, y = (read_table(d / "predictions.parquet").sort_values("clip_id") for d in (a, b))
    return list(x["clip_id"]) == list(y["clip_id"]) and list(x["predicted"]) == list(y["predicted"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/merflow-bench"))
    parser.add_argument("--dataset", default="4q")
    parser.add_argument("--model", default="velankar_parallel")
    parser.add_argument("--recipe", default="merflow")
    parser.add_argument("--tag", required=True, help="results<tag>.csv in --cache")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("merflow.evaluation").setLevel(logging.WARNING)
    runs = args.cache / args.dataset / "runs" / args.model
    trained = runs / f"{args.recipe}+ce1" / "lenNone"
    rows, checked = [], 0
    for split in sorted((runs / args.recipe / "lenNone").glob("r*-f*")):
        dirs = []
        for run_dir in sorted(split.glob("seed*")):
            out = runs / f"{args.recipe}+ce1-rescored" / "lenNone" / split.name / run_dir.name
            metrics = best_epoch_run(run_dir, out)
            dirs.append(out)
            if (trained / split.name / run_dir.name / "predictions.parquet").is_file():
                if not same_classes(out, trained / split.name / run_dir.name):
                    raise SystemExit(f"{out}: member 0 does not predict what the trained run does")
                checked += 1
            log.info("%s %s: %s", split.name, run_dir.name, headline(metrics))
        if (trained / split.name).is_dir():
            continue
        row = {"dataset": args.dataset, "model": args.model, "recipe": f"{args.recipe}+ce1"}
        row |= {"split": split.name, "seq_len": None}
        rows += [
            {**row, "kind": "single", "seed": int(d.name.removeprefix("seed"))}
            | headline(read_json(d / "metrics.json"))
            for d in dirs
        ]
        rows.append({**row, "kind": "seed ensemble", **ensemble_scores(dirs, "classification")})
    if rows:  # none when every split has trained +ce1 runs: then the script only checks
        pd.DataFrame(rows).to_csv(args.cache / f"results{args.tag}.csv", index=False)
    log.info(
        "%d rows written; %d re-scored runs matched their trained +ce1 run", len(rows), checked
    )


if __name__ == "__main__":
    main()
