"""Bad labels and bad audio at index time, under both policies.

``fail``: the run stops with a DatasetError naming the file or row and the fix, and writes nothing.
``quarantine``: exactly the bad clip is listed (with a reason), every other clip is indexed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from _fixtures_labels import (
    GOOD_IDS,
    LABEL_FAULTS,
    Case,
    audio_faults,
    labelled,
    with_broken_audio,
    write_wav,
)

from merflow.datasets.index import build_index
from merflow.errors import DatasetError
from merflow.io import read_table


def assert_fails_naming(case: Case, out: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        build_index(case.spec, out, on_bad_audio="fail")
    message = str(caught.value)
    for fragment in [case.reason, *case.names, "on_bad_audio: quarantine"]:
        assert fragment in message
    assert not out.exists(), "a failed index must not leave tables behind"


def assert_quarantines_exactly(case: Case, out: Path) -> None:
    result = build_index(case.spec, out, on_bad_audio="quarantine")
    quarantine = read_table(out / "quarantine.parquet")
    clips = read_table(out / "clips.parquet")
    assert sorted(quarantine["clip_id"]) == sorted(case.bad_ids)
    assert all(case.reason in reason for reason in quarantine["reason"])
    assert set(quarantine["stage"]) == {"index"}
    assert not set(case.bad_ids) & set(clips["clip_id"])
    assert len(clips) == result.n_clips >= 2  # the good clips went on
    assert result.n_quarantined == len(case.bad_ids)


@pytest.mark.parametrize("fault", sorted(LABEL_FAULTS))
def test_label_fault_fails_with_a_message_naming_file_and_fix(fault, tmp_path):
    assert_fails_naming(LABEL_FAULTS[fault](tmp_path / "data"), tmp_path / "out")


@pytest.mark.parametrize("fault", sorted(LABEL_FAULTS))
def test_label_fault_quarantines_only_the_bad_clip(fault, tmp_path):
    assert_quarantines_exactly(LABEL_FAULTS[fault](tmp_path / "data"), tmp_path / "out")


@pytest.fixture(scope="module")
def broken_audio(shared_data):
    return audio_faults(shared_data / "emomusic-sample" / "clips_45seconds" / "2.mp3")


AUDIO_FAULT_NAMES = [
    "zero bytes",
    "random bytes named .mp3",
    "text named .wav",
    "MP3 cut to 400 bytes",
    "MP3 cut to 3000 bytes",
]


@pytest.mark.parametrize("fault", AUDIO_FAULT_NAMES)
def test_broken_audio_fails(fault, broken_audio, tmp_path):
    assert_fails_naming(
        with_broken_audio(tmp_path / "data", *broken_audio[fault]), tmp_path / "out"
    )


@pytest.mark.parametrize("fault", AUDIO_FAULT_NAMES)
def test_broken_audio_is_quarantined(fault, broken_audio, tmp_path):
    case = with_broken_audio(tmp_path / "data", *broken_audio[fault])
    assert_quarantines_exactly(case, tmp_path / "out")


AWKWARD_NAMES = [
    "with space",
    'it\'s "quoted"',
    "ünïcødé – 音楽",
    "$(touch pwned)",
    "semi;colon",
    "-leading-dash",
]


def test_awkward_file_names_index_fine_in_folders(tmp_path):
    root = tmp_path / "data"
    for k, stem in enumerate(AWKWARD_NAMES):
        write_wav(root / ("happy" if k % 2 else "sad") / f"{stem}.wav")
    spec = {"name": "awkward", "adapter": "folder", "root": root}
    result = build_index(spec, tmp_path / "out", on_bad_audio="fail")
    clips = read_table(tmp_path / "out" / "clips.parquet")
    assert result.n_clips == len(AWKWARD_NAMES)
    assert sorted(clips["clip_id"]) == sorted(AWKWARD_NAMES)
    assert all(Path(p).is_file() for p in clips["path"])
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_awkward_file_names_index_fine_in_a_manifest(tmp_path):
    root = tmp_path / "data"
    rows = []
    for k, stem in enumerate(AWKWARD_NAMES):
        write_wav(root / "audio" / f"{stem}.wav")
        rows.append([f"audio/{stem}.wav", "happy" if k % 2 else "sad"])
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "label"], *rows])
    spec = {"name": "awkward", "adapter": "manifest", "root": root}
    build_index(spec, tmp_path / "out", on_bad_audio="fail")
    clips = read_table(tmp_path / "out" / "clips.parquet")
    assert sorted(clips["clip_id"]) == sorted(f"audio/{s}" for s in AWKWARD_NAMES)


def test_good_fixture_has_no_fault(tmp_path):
    """The builders' base datasets are clean, so each fault above is the only one."""
    build_index(labelled(tmp_path / "data"), tmp_path / "out", on_bad_audio="fail")
    assert sorted(read_table(tmp_path / "out" / "clips.parquet")["clip_id"]) == list(GOOD_IDS)
