"""Benchmark of the index stage: how fast the folder adapter probes real audio files.

Probing reads each file's header and decodes only its last second (and walks an MP3's frame
headers), so thousands of files index in seconds. Target: >= 50 files a second on one core
(252 files of ../shared/data/4q-dev in under 5 s), least of ``--repeat`` runs.

    .venv/bin/python bench/index.py [--root ../shared/data/4q-dev] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from merflow.datasets.index import build_index

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "4q-dev"
TARGET_FILES_PER_S = 50


def index_seconds(root: Path) -> tuple[int, float]:
    spec = {"name": "bench", "adapter": "folder", "root": root, "audio_dir": "audio"}
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = build_index(spec, Path(out))
        return result.n_clips, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="a folder-per-class root")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [index_seconds(args.root) for _ in range(args.repeat)]
    n_clips, seconds = min(runs, key=lambda run: run[1])
    rate = n_clips / seconds
    verdict = "met" if rate >= TARGET_FILES_PER_S else "NOT met"
    print(
        f"index of {n_clips} files under {args.root}: {seconds:.2f} s, {rate:.0f} files/s "
        f"(least of {args.repeat}; load average {os.getloadavg()[0]:.2f}; "
        f"target >= {TARGET_FILES_PER_S}/s: {verdict})"
    )


if __name__ == "__main__":
    main()
