"""Bad, odd and awkward audio through the real entry points (`merflow index`, `merflow features`).

Every case of :mod:`_fixtures_audio` ends one documented way under each policy:

* broken files: ``quarantine`` lists exactly them (with a reason) and goes on with the rest;
  ``fail`` exits non-zero with an error naming the file, the fault and the way out;
* silence, a 0.3 s clip, odd formats and odd names are audio: processed under both policies,
  short clips padded to one 500 ms window (docs/tables.md), odd formats giving the features of
  the same signal in a plain 16-bit mono file at 22.05 kHz.

The dataset folder's own name holds ``$(touch pwned)``, ``;`` and quotes, and the commands run in
a scratch folder: a name that reached a shell would leave a file ``pwned`` behind.
"""

from __future__ import annotations

import csv
import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _fixtures_audio import (
    AWKWARD_STEMS,
    HALF_LEVEL,
    PLAIN,
    AudioCase,
    all_cases,
    awkward_cases,
    broken_cases,
    case_path,
    intact,
    legitimate_cases,
    no_command_ran,
    real_mp3_cases,
    stem,
    with_broken_audio,
    write_folder_dataset,
)
from test_bad_labels import assert_fails_naming, assert_quarantines_exactly

from merflow.datasets.index import build_index
from merflow.features.logmel import DB_FLOOR
from merflow.io import read_table

MERFLOW = Path(sys.executable).with_name("merflow")
FEATURES = ("logmel", "logmel_500ms", "compare_500ms")
AWKWARD_ROOT = 'data $(touch pwned); it\'s "q"'


def merflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MERFLOW), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def index(spec: dict, out: Path, policy: str, cwd: Path) -> subprocess.CompletedProcess:
    return merflow(
        "index", "--spec", json.dumps(spec), "--out", str(out), "--on-bad-audio", policy, cwd=cwd
    )


def features(clips: Path, feature: str, out: Path, policy: str, cwd: Path):
    table, quarantine = out / f"{feature}.parquet", out / f"{feature}.quarantine.parquet"
    run = merflow(
        "features",
        *("--clips", str(clips), "--feature", feature, "--shard", "0"),
        *("--out", str(table), "--quarantine", str(quarantine), "--on-bad-audio", policy),
        cwd=cwd,
    )
    return run, table, quarantine


@functools.cache
def cases_by_name() -> dict[str, AudioCase]:
    return {case.name: case for case in all_cases()}


BROKEN_AT_INDEX = [c.name for c in broken_cases() if c.ending == "index"]
BROKEN_AT_FEATURES = [c.name for c in broken_cases() if c.ending == "features"]


# --- one dataset holding every case, indexed and featurized once (quarantine) ------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_audio")


@pytest.fixture(scope="module")
def dataset(workspace) -> tuple[Path, list[AudioCase], dict]:
    root = workspace / AWKWARD_ROOT
    cases = all_cases()
    return root, cases, write_folder_dataset(root, cases)


@pytest.fixture(scope="module")
def indexed(dataset, workspace) -> Path:
    out = workspace / "results"
    run = index(dataset[2], out, "quarantine", workspace)
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def featurized(indexed, workspace) -> dict[str, tuple[Path, Path]]:
    made = {}
    for feature in FEATURES:
        run, table, quarantine = features(
            indexed / "clips.parquet", feature, indexed / "features", "quarantine", workspace
        )
        assert run.returncode == 0, run.stderr
        made[feature] = (table, quarantine)
    return made


def test_index_quarantines_exactly_the_broken_files(dataset, indexed, workspace):
    root, cases, _ = dataset
    quarantine = read_table(indexed / "quarantine.parquet").set_index("clip_id")
    broken = {stem(cases_by_name()[name]): cases_by_name()[name] for name in BROKEN_AT_INDEX}
    assert sorted(quarantine.index) == sorted(broken)
    for clip_id, case in broken.items():
        assert case.reason in quarantine.loc[clip_id, "reason"], case.name
        assert quarantine.loc[clip_id, "path"] == str(case_path(root, cases, case))
    assert set(quarantine["stage"]) == {"index"}
    clips = read_table(indexed / "clips.parquet")
    others = [stem(c) for c in cases if c.ending != "index"]
    assert sorted(clips["clip_id"]) == sorted(others + [f"good_{k}" for k in range(4)])
    assert no_command_ran(workspace)


@pytest.mark.parametrize("name", BROKEN_AT_INDEX)
def test_index_fail_stops_at_a_broken_file_and_names_it(name, tmp_path):
    case = cases_by_name()[name]
    spec = write_folder_dataset(tmp_path / AWKWARD_ROOT, [case])
    run = index(spec, tmp_path / "out", "fail", tmp_path)
    assert run.returncode == 2
    for fragment in (case.file_name, case.reason, "on_bad_audio: quarantine"):
        assert fragment in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out" / "clips.parquet").exists()


def test_legitimate_audio_is_no_error_even_under_fail(tmp_path):
    cases = legitimate_cases() + awkward_cases()
    spec = write_folder_dataset(tmp_path / AWKWARD_ROOT, cases)
    run = index(spec, tmp_path / "out", "fail", tmp_path)
    assert run.returncode == 0, run.stderr
    clips = read_table(tmp_path / "out" / "clips.parquet").set_index("clip_id")
    assert set(map(stem, cases)) <= set(clips.index)
    assert clips.loc["short", "duration_s"] == pytest.approx(0.3)
    assert clips.loc["six_channels", "channels"] == 6
    assert clips.loc["rate_96k", "sample_rate"] == 96000
    run, table, quarantine = features(
        tmp_path / "out" / "clips.parquet", "logmel_500ms", tmp_path / "f", "fail", tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert set(read_table(table)["clip_id"]) == set(clips.index) and read_table(quarantine).empty
    assert no_command_ran(tmp_path)


def test_features_quarantine_only_what_they_cannot_decode(featurized, indexed):
    clips = read_table(indexed / "clips.parquet")["clip_id"]
    corrupt = {stem(cases_by_name()[name]): cases_by_name()[name] for name in BROKEN_AT_FEATURES}
    for feature, (table, quarantine) in featurized.items():
        left_out = read_table(quarantine).set_index("clip_id")
        assert sorted(left_out.index) == sorted(corrupt), feature
        for clip_id, case in corrupt.items():
            assert case.reason in left_out.loc[clip_id, "reason"]
        assert set(left_out["stage"]) == {"features"}
        assert set(read_table(table)["clip_id"]) == set(clips) - set(corrupt), feature


def test_features_fail_names_the_file_and_writes_nothing(indexed, workspace, tmp_path):
    case = cases_by_name()[BROKEN_AT_FEATURES[0]]
    run, table, quarantine = features(
        indexed / "clips.parquet", "logmel_500ms", tmp_path, "fail", workspace
    )
    assert run.returncode == 2
    for fragment in (case.file_name, case.reason, "on_bad_audio: quarantine"):
        assert fragment in run.stderr
    assert "Traceback" not in run.stderr
    assert not table.exists() and not quarantine.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_files_broken_after_indexing_are_caught_by_the_feature_stage(tmp_path):
    """Good files indexed, then replaced by broken ones (a re-download gone wrong)."""
    cases = [cases_by_name()[name] for name in BROKEN_AT_INDEX]
    spec = write_folder_dataset(tmp_path / "data", [intact(c) for c in cases], n_good=2)
    assert index(spec, tmp_path / "out", "fail", tmp_path).returncode == 0
    for case in cases:
        case.write(case_path(Path(spec["root"]), cases, case))
    clips = tmp_path / "out" / "clips.parquet"

    run, table, quarantine = features(clips, "logmel_500ms", tmp_path / "q", "quarantine", tmp_path)
    assert run.returncode == 0, run.stderr
    left_out = read_table(quarantine).set_index("clip_id")
    assert sorted(left_out.index) == sorted(map(stem, cases))
    assert "the file was cut or replaced since" in left_out.loc["cut_half", "reason"]
    assert set(left_out["stage"]) == {"features"}
    assert sorted(set(read_table(table)["clip_id"])) == ["good_0", "good_1"]

    run, table, _ = features(clips, "logmel_500ms", tmp_path / "f", "fail", tmp_path)
    assert run.returncode == 2 and "on_bad_audio: quarantine" in run.stderr
    assert any(c.file_name in run.stderr for c in cases) and not table.exists()


# --- legitimate audio: processed by the documented policy ---------------------------------------


def windows(featurized, feature: str, clip_id: str) -> pd.DataFrame:
    table = read_table(featurized[feature][0])
    return table[table["clip_id"] == clip_id].drop(columns="clip_id").reset_index(drop=True)


def frames(featurized, clip_id: str) -> tuple[np.ndarray, int]:
    table = read_table(featurized["logmel"][0]).set_index("clip_id")
    matrix = np.asarray(table.loc[clip_id, "logmel"], dtype=np.float32).reshape(128, -1)
    return matrix, int(table.loc[clip_id, "n_valid_frames"])


def test_digital_silence_is_processed_at_the_silence_floor(featurized):
    matrix, valid = frames(featurized, "silence")
    assert valid == 130 and np.allclose(matrix, DB_FLOOR, atol=1e-4)
    mel = windows(featurized, "logmel_500ms", "silence")
    assert list(mel["t"]) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert np.allclose(mel.drop(columns="t"), DB_FLOOR, atol=1e-4)
    compare = windows(featurized, "compare_500ms", "silence")
    assert len(compare) == 6 and np.isfinite(compare.to_numpy()).all()


def test_a_clip_shorter_than_one_window_is_padded_to_one_window(featurized):
    for feature in ("logmel_500ms", "compare_500ms"):
        short = windows(featurized, feature, "short")
        assert list(short["t"]) == [0.5] and np.isfinite(short.to_numpy()).all(), feature
    mel = windows(featurized, "logmel_500ms", "short").drop(columns="t").to_numpy()
    assert mel.max() > DB_FLOOR + 40  # the tone is there, not only padding
    matrix, valid = frames(featurized, "short")
    assert valid == 1 + 6615 // 512  # centred STFT frames of 0.3 s at 22.05 kHz
    assert (matrix[:, valid:] == DB_FLOOR).all() and matrix[:, : valid - 2].max() > 0


# --- odd formats: the features of the same signal in a plain file ------------------------------

# (dynamic range compared in dB below the reference's peak, tolerance in dB). 8-bit samples carry
# quantization noise ~48 dB below full scale, which fills every band more than ~30 dB down.
FORMATS = {
    "8-bit WAV": (30.0, 0.5),
    "24-bit WAV": (60.0, 0.1),
    "32-bit float WAV": (60.0, 0.1),
    "6-channel WAV": (60.0, 0.1),
    "8 kHz": (60.0, 0.1),
    "96 kHz": (60.0, 0.1),
}
COMPARE_TOLERANCE = 0.1  # of each column's largest magnitude in the reference


def db_mismatch(reference: np.ndarray, other: np.ndarray, dynamic_range: float) -> float:
    """Largest difference in dB, both sides clamped at the reference's peak minus the range."""
    floor = reference.max() - dynamic_range
    return float(np.abs(np.maximum(reference, floor) - np.maximum(other, floor)).max())


def compare_mismatch(reference: np.ndarray, other: np.ndarray) -> float:
    scale = np.abs(reference).max(axis=0) + 1e-6
    return float((np.abs(reference - other) / scale).max())


def mismatches(featurized, clip_id: str, dynamic_range: float) -> dict[str, float]:
    plain = stem(cases_by_name()[PLAIN])
    (ref, n), (other, m) = frames(featurized, plain), frames(featurized, clip_id)
    assert n == m
    # the outer two frames hold the resamplers' edge transients (the file starts abruptly)
    found = {"logmel": db_mismatch(ref[:, 2 : n - 2], other[:, 2 : n - 2], dynamic_range)}
    mel = [windows(featurized, "logmel_500ms", c).to_numpy() for c in (plain, clip_id)]
    found["logmel_500ms"] = db_mismatch(*mel, dynamic_range)
    compare = [windows(featurized, "compare_500ms", c).to_numpy() for c in (plain, clip_id)]
    found["compare_500ms"] = compare_mismatch(*compare)
    return found


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_odd_formats_give_the_features_of_the_plain_file(name, featurized):
    dynamic_range, tolerance = FORMATS[name]
    found = mismatches(featurized, stem(cases_by_name()[name]), dynamic_range)
    assert found["logmel"] <= tolerance and found["logmel_500ms"] <= tolerance, found
    if name != "8-bit WAV":  # openSMILE's jitter, shimmer and HNR measure the 8-bit noise itself
        assert found["compare_500ms"] <= COMPARE_TOLERANCE, found


def test_the_format_comparison_tells_another_signal_apart(featurized):
    found = mismatches(featurized, stem(cases_by_name()[HALF_LEVEL]), 30.0)
    assert found["logmel"] == pytest.approx(6.02, abs=0.05)  # 20 log10(2)
    assert found["logmel_500ms"] == pytest.approx(6.02, abs=0.05)
    assert found["compare_500ms"] > 3 * COMPARE_TOLERANCE


def test_awkward_names_are_indexed_and_featurized_and_never_run(featurized, indexed, workspace):
    ids = set(read_table(featurized["logmel_500ms"][0])["clip_id"])
    assert set(AWKWARD_STEMS) <= ids
    paths = read_table(indexed / "clips.parquet").set_index("clip_id")["path"]
    assert all(Path(paths[s]).is_file() and AWKWARD_ROOT in paths[s] for s in AWKWARD_STEMS)
    assert no_command_ran(workspace)


# --- the index stage on a manifest (Python API): a real encoder's MP3, and odd names ------------


@pytest.fixture(scope="module")
def real_cuts(shared_data) -> dict[str, AudioCase]:
    cases = real_mp3_cases(shared_data / "emomusic-sample" / "clips_45seconds" / "2.mp3")
    return {case.name: case for case in cases}


@pytest.mark.parametrize("name", ["real MP3 cut to 400 bytes", "real MP3 cut to 3000 bytes"])
def test_a_real_mp3_cut_short_fails(name, real_cuts, tmp_path):
    assert_fails_naming(with_broken_audio(tmp_path / "data", real_cuts[name]), tmp_path / "out")


@pytest.mark.parametrize("name", ["real MP3 cut to 400 bytes", "real MP3 cut to 3000 bytes"])
def test_a_real_mp3_cut_short_is_quarantined(name, real_cuts, tmp_path):
    case = with_broken_audio(tmp_path / "data", real_cuts[name])
    assert_quarantines_exactly(case, tmp_path / "out")


def test_awkward_file_names_index_fine_in_a_manifest(tmp_path):
    root = tmp_path / "data"
    rows = []
    for k, case in enumerate(awkward_cases()):
        (root / "audio").mkdir(parents=True, exist_ok=True)
        case.write(root / "audio" / case.file_name)
        rows.append([f"audio/{case.file_name}", "happy" if k % 2 else "sad"])
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "label"], *rows])
    spec = {"name": "awkward", "adapter": "manifest", "root": root}
    build_index(spec, tmp_path / "out", on_bad_audio="fail")
    clips = read_table(tmp_path / "out" / "clips.parquet")
    assert sorted(clips["clip_id"]) == sorted(f"audio/{s}" for s in AWKWARD_STEMS)
    assert no_command_ran(tmp_path)
