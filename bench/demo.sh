#!/usr/bin/env bash
# Benchmark: the demo (config.yaml: synthesized data, both papers, the embedding heads) from
# nothing to its report, timed as `make run` runs it. Prints the wall time against the target
# (8 min on 2 CPU cores) and the job-seconds of each rule, from Snakemake's benchmark files and
# the jobs' logs. Runs in a temporary folder (or in KEEP, kept for its tables); the repository's
# results/ is left alone.
#   [KEEP=folder] bench/demo.sh [CORES] [CONFIGFILE]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORES=${1:-2}
CONFIG=${2:-$REPO/config.yaml}
if [ -n "${KEEP:-}" ]; then
    WORK=$KEEP && mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/merflow-demo.XXXXXX") && trap 'rm -rf "$WORK"' EXIT
fi
GPUS=$("$REPO/.venv/bin/python" -c "import torch; print(torch.cuda.device_count())")
start=$(date +%s.%N)
"$REPO/.venv/bin/snakemake" -s "$REPO/Snakefile" -d "$WORK" --configfile "$CONFIG" \
    --cores "$CORES" --resources gpu="$GPUS" --quiet all >"$WORK/snakemake.log" 2>&1 ||
    { tail -30 "$WORK/snakemake.log"; exit 1; }
wall=$(echo "$(date +%s.%N) - $start" | bc)
"$REPO/.venv/bin/python" - "$WORK" "$wall" "$CORES" "$GPUS" <<'PY'
import sys
from pathlib import Path

import pandas as pd

work, wall, cores, gpus = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
from merflow.runs import Run

rows = []
for tsv in (work / "results").rglob("*.tsv"):
    seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
    if tsv.name == "train.benchmark.tsv":
        rows.append((f"train {Run.parse(tsv.parent).model}", seconds))
    elif "benchmarks" in tsv.parts:
        rows.append((f"features {tsv.parent.name}", seconds))
jobs = pd.DataFrame(rows, columns=["stage", "seconds"]).groupby("stage")["seconds"]
print(f"demo on {cores} cores, {gpus} GPU(s): {wall / 60:.1f} min wall "
      f"(target <= 8 min): {'met' if wall <= 480 else 'NOT met'}")
print(jobs.agg(["count", "sum"]).round(1).to_string())
PY
