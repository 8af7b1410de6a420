"""Benchmark of the feature stage: throughput, overhead over the bare libraries, process scaling.

On the same clips (by default ../shared/data/4q-sample, beside the repository) it measures
seconds of audio processed per wall-clock second for

* decoding alone (``merflow.audio.load``: soundfile + soxr to the configured rate);
* the bare library calls on the decoded signals: librosa mel + dB (128 bands), and openSMILE
  ComParE_2016 LLD + deltas (one ``process_signal`` per clip) -- openSMILE is the bottleneck;
* the stage, decoding included: ``extract_shard`` for ``compare_500ms`` alone, and
  ``extract_features`` for all three features from one decode;
* the stage over shards in 1 and in N worker processes (what ``snakemake --cores N`` does);
* the pretrained embeddings, decoding included, on torch's 2 threads: ``musicnn`` (3 s patches
  one after the other) and ``musicnn_500ms`` (a 3 s patch every 0.5 s), if their weights are
  cached (goals: 50x and 10x real time);
* the clip descriptors on one core, decoding included: ``compare_functionals`` (ComParE_2016
  and eGeMAPSv02; goal 30x real time) and ``essentia`` at 44.1 kHz, if installed (goal 10x);
  also per CPU second, which other jobs on the machine do not lower;
* a feature job's start-up: a fresh interpreter importing merflow and computing one second of
  silence (what each Snakemake job pays before its first clip), and whether it loaded torch.

The single-process measurements are interleaved clip by clip and repeated, and the least time of
each is kept: on a machine shared with other jobs, load then hits every method alike instead of
whichever ran during a busy minute. Library initialisation is warmed up before timing.
Targets: stage overhead over bare openSMILE <= 5 %; 2 processes >= 1.8x one process.

    .venv/bin/python bench/features.py --clips ../shared/data/4q-sample --n-clips 16
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from merflow import audio
from merflow.features import compute_clip, extract_features, extract_shard
from merflow.features.compare import smile

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "4q-sample"


def find_clips(folder: Path, limit: int) -> pd.DataFrame:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in audio.SUPPORTED_SUFFIXES)
    if not paths:
        raise SystemExit(f"no audio files under {folder}")
    paths = paths[:limit]
    return pd.DataFrame({"clip_id": [p.stem for p in paths], "path": [str(p) for p in paths]})


CLASSIC = ("logmel", "logmel_500ms", "compare_500ms")  # the papers' features, one decode
EMBEDDINGS = ("musicnn", "musicnn_500ms")  # at musicnn's own 16 kHz


def warm_up(sample_rate: int) -> None:
    signal = np.random.default_rng(0).normal(scale=0.1, size=sample_rate).astype(np.float32)
    for name in CLASSIC:
        compute_clip(name, signal, {"sample_rate": sample_rate})


def single_process_steps(sample_rate: int) -> dict[str, Callable[[pd.DataFrame, np.ndarray], None]]:
    """Each step processes one clip (a one-row clips table and its decoded signal)."""
    import librosa

    params = {name: {"sample_rate": sample_rate} for name in CLASSIC}

    def bare_librosa(_, y):
        mel = librosa.feature.melspectrogram(y=y, sr=sample_rate, n_fft=2048, hop_length=512)
        librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)

    return {
        "decode (soundfile + soxr)": lambda clip, _: audio.load(clip.path.iloc[0], sample_rate),
        "bare librosa mel + dB (128 bands)": bare_librosa,
        "bare openSMILE LLD + deltas": lambda _, y: smile().process_signal(y, sample_rate),
        "stage: compare_500ms (incl. decode)": lambda clip, _: extract_shard(
            clip, "compare_500ms", params["compare_500ms"]
        ),
        "stage: all 3 features (incl. decode)": lambda clip, _: extract_features(clip, params),
    }


def interleaved(clips: pd.DataFrame, sample_rate: int, repeat: int) -> dict[str, float]:
    """Least total wall time of each step over ``repeat`` passes, steps interleaved per clip."""
    steps = single_process_steps(sample_rate)
    signals = [audio.load(p, sample_rate) for p in clips.path]
    best = dict.fromkeys(steps, np.inf)
    for _ in range(repeat):
        totals = dict.fromkeys(steps, 0.0)
        for i, signal in enumerate(signals):
            clip = clips.iloc[[i]]
            for label, step in steps.items():
                start = time.perf_counter()
                step(clip, signal)
                totals[label] += time.perf_counter() - start
        best = {label: min(best[label], totals[label]) for label in steps}
    return best


def _extract_shard_job(job: tuple[pd.DataFrame, dict]) -> int:
    clips, params = job
    tables, _ = extract_features(clips, params)
    return sum(t.num_rows for t in tables.values())


def in_processes(clips: pd.DataFrame, sample_rate: int, processes: int, n_shards: int) -> float:
    """Wall time of the stage (all features) over ``n_shards`` shards on ``processes`` workers."""
    params = {name: {"sample_rate": sample_rate} for name in CLASSIC}
    shards = [clips.iloc[i::n_shards] for i in range(n_shards)]
    context = multiprocessing.get_context("fork")  # children inherit the warmed-up libraries
    start = time.perf_counter()
    with context.Pool(processes) as pool:
        list(pool.imap_unordered(_extract_shard_job, [(s, params) for s in shards]))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="folder of audio files")
    parser.add_argument("--n-clips", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--repeat", type=int, default=3, help="keep the least time of each step")
    args = parser.parse_args()

    clips, sr = find_clips(args.clips, args.n_clips), args.sample_rate
    seconds = sum(audio.probe(p).duration_s for p in clips.path)
    warm_up(sr)
    load_before = os.getloadavg()[0]
    walls = interleaved(clips, sr, args.repeat)
    n_shards = 2 * args.processes
    for processes in sorted({1, args.processes}):
        label = f"stage: all 3, {n_shards} shards, {processes} process(es)"
        walls[label] = min(in_processes(clips, sr, processes, n_shards) for _ in range(args.repeat))

    print(f"\n{len(clips)} clips, {seconds:.0f} s of audio from {args.clips}, at {sr} Hz;")
    print(f"least of {args.repeat} runs; load average {load_before:.2f} before, ", end="")
    print(f"{os.getloadavg()[0]:.2f} after (on {os.cpu_count()} CPUs)\n")
    print(f"| {'step':<42} | wall s | audio s / wall s |")
    print(f"|{'-' * 44}|-------:|-----------------:|")
    for label, wall in walls.items():
        print(f"| {label:<42} | {wall:6.2f} | {seconds / wall:16.0f} |")
    bare = walls["bare openSMILE LLD + deltas"]
    print()
    for label in ("stage: compare_500ms (incl. decode)", "stage: all 3 features (incl. decode)"):
        overhead = 100 * (walls[label] / bare - 1)
        print(f"{label[7:]}: {overhead:+.1f} % over bare openSMILE (target <= 5 %)")
    if args.processes > 1:
        one = walls[f"stage: all 3, {n_shards} shards, 1 process(es)"]
        many = walls[f"stage: all 3, {n_shards} shards, {args.processes} process(es)"]
        print(f"{args.processes} processes vs 1: {one / many:.2f}x (target >= 1.8x)")
    embeddings(clips, seconds)
    descriptors(clips, seconds)
    start_up()


def embeddings(clips: pd.DataFrame, seconds: float) -> None:
    """Throughput of the musicnn features on 2 torch threads, decoding (to 16 kHz) included."""
    import torch

    from merflow.pretrained.cache import is_cached

    if not is_cached("MSD_musicnn"):
        print("\nmusicnn: weights not cached (merflow pretrained fetch musicnn): not measured")
        return
    torch.set_num_threads(2)
    extract_shard(clips.iloc[:1], "musicnn", {})  # loads the network once
    print()
    for name, goal in zip(EMBEDDINGS, (50, 10), strict=True):
        start = time.perf_counter()
        extract_shard(clips, name, {})
        speed = seconds / (time.perf_counter() - start)
        print(f"{name}: {speed:.0f}x real time on 2 threads, decoding included (goal >= {goal}x)")


DESCRIPTORS = {  # label: (feature, params, goal in x real time)
    "compare_functionals (ComParE_2016)": ("compare_functionals", {}, 30),
    "compare_functionals (eGeMAPSv02)": ("compare_functionals", {"feature_set": "eGeMAPSv02"}, 30),
    "essentia": ("essentia", {}, 10),
}


def descriptors(clips: pd.DataFrame, seconds: float) -> None:
    """Throughput of the clip descriptor features on one core, decoding included."""
    from merflow.features.registry import FEATURES

    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})  # one core, as one feature job
    print()
    for label, (name, params, goal) in DESCRIPTORS.items():
        if FEATURES[name].needs and importlib.util.find_spec(FEATURES[name].needs) is None:
            print(f"{label}: not installed (pip install 'merflow[{FEATURES[name].needs}]')")
            continue
        extract_shard(clips.iloc[:1], name, params)  # builds the extractors once
        start, cpu = time.perf_counter(), time.process_time()
        extract_shard(clips, name, params)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(
            f"{label}: {seconds / wall:.0f}x real time on one core, decoding included "
            f"({seconds / cpu:.0f}x per CPU second; goal >= {goal}x)"
        )
    os.sched_setaffinity(0, cores)


START_UP = """
import sys, time
start = time.perf_counter()
import numpy as np
from merflow.features import compute_clip
rate = 16000 if sys.argv[1].startswith("musicnn") else 22050  # musicnn's rate is fixed
compute_clip(sys.argv[1], np.zeros(rate, np.float32), {"sample_rate": rate})
print(f"{time.perf_counter() - start:.2f} {'torch' in sys.modules}")
"""


def start_up() -> None:
    """Each feature job's start-up in a fresh interpreter, least of 3."""
    from merflow.pretrained.cache import is_cached

    names = CLASSIC + (("musicnn",) if is_cached("MSD_musicnn") else ())
    print()
    for name in names:
        runs = [
            subprocess.run(
                [sys.executable, "-c", START_UP, name], capture_output=True, text=True, check=True
            ).stdout.split()
            for _ in range(3)
        ]
        seconds, torch_loaded = min(runs, key=lambda r: float(r[0]))
        loads = "loads torch" if torch_loaded == "True" else "no torch"
        print(f"job start-up, {name}: {float(seconds):.2f} s (imports + 1 s of silence; {loads})")


if __name__ == "__main__":
    main()
