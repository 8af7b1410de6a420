"""WAV, AIFF, Ogg and FLAC files cut short are told from whole ones; pipes are no audio (issue 36).

libsndfile reads a cut WAV, AIFF or Ogg as a whole, shorter clip (its end decodes), so the index
took them as such. Their containers tell (:mod:`merflow.containers`): here whole files of every
kind soundfile writes, and every real file of ../shared/data, must pass; cuts must be quarantined
naming the time of the cut, which must match what the decoder gets from the cut file; and a named
pipe in a class folder must be listed, never opened (a read would wait forever).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _fixtures_audio import (
    CLASSES,
    AudioCase,
    decoded_until_it_stops,
    music,
    raw,
    with_broken_audio,
    write_folder_dataset,
)
from test_bad_audio import index
from test_bad_labels import assert_fails_naming, assert_quarantines_exactly

from merflow import audio
from merflow.audio import SUPPORTED_SUFFIXES, probe
from merflow.datasets.index import probe_clip
from merflow.errors import AudioError
from merflow.io import read_table
from merflow.predict import load_model

SECONDS = 6.0
CUT_AT = re.compile(r"cut at about (\d+\.\d) s; re-download it$")
TIME_TOLERANCE_S = 0.1
FLAC_BLOCK = 4096  # samples a frame in libsndfile's FLAC: its last whole frame may not decode
# name: (suffix, soundfile arguments, sample rate, channels)
KINDS = {
    "WAV 16-bit mono": (".wav", {"subtype": "PCM_16"}, 22050, 1),
    "WAV 24-bit stereo": (".wav", {"subtype": "PCM_24"}, 44100, 2),
    "WAV 8-bit": (".wav", {"subtype": "PCM_U8"}, 16000, 1),
    "WAV float": (".wav", {"subtype": "FLOAT"}, 48000, 1),
    "RF64 named .wav": (".wav", {"format": "RF64", "subtype": "PCM_16"}, 22050, 2),
    "AIFF 16-bit": (".aiff", {"format": "AIFF", "subtype": "PCM_16"}, 22050, 2),
    "AIFF-C float": (".aif", {"format": "AIFF", "subtype": "FLOAT"}, 32000, 1),
    "Ogg Vorbis mono": (".ogg", {"format": "OGG", "subtype": "VORBIS"}, 22050, 1),
    "Ogg Vorbis stereo": (".oga", {"format": "OGG", "subtype": "VORBIS"}, 44100, 2),
    "Ogg Opus": (".opus", {"format": "OGG", "subtype": "OPUS"}, 48000, 2),
    "FLAC 16-bit": (".flac", {"format": "FLAC", "subtype": "PCM_16"}, 22050, 1),
    "FLAC 24-bit stereo": (".flac", {"format": "FLAC", "subtype": "PCM_24"}, 44100, 2),
}
CUTS = (0.3, 0.5, 0.77)  # of the file's size


def write_kind(kind: str, seconds: float = SECONDS) -> bytes:
    _, arguments, rate, channels = KINDS[kind]
    signal = music(seconds, rate)
    if channels == 2:
        signal = np.stack([signal, music(seconds, rate, shift=1.0)], axis=1)
    buffer = io.BytesIO()
    arguments = {"format": "WAV", **arguments}
    sf.write(buffer, signal, rate, **arguments)
    return buffer.getvalue()


def cut_time(reason: str) -> float:
    found = CUT_AT.search(reason)
    assert found, reason
    return float(found.group(1))


def tolerance(kind: str) -> float:
    rate = KINDS[kind][2]
    return TIME_TOLERANCE_S + (FLAC_BLOCK / rate if kind.startswith("FLAC") else 0)


@pytest.fixture(scope="module", params=sorted(KINDS))
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def whole(kind, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("whole") / f"whole{KINDS[kind][0]}"
    path.write_bytes(write_kind(kind))
    return path


def test_whole_files_of_every_kind_are_whole_and_judged(whole):
    decoded = decoded_until_it_stops(whole)
    inspection = audio.inspect(whole, probe(whole).duration_s)
    assert inspection.finding is None
    assert inspection.audio_s == pytest.approx(decoded, abs=TIME_TOLERANCE_S)
    assert probe_clip(whole).duration_s == pytest.approx(decoded, abs=TIME_TOLERANCE_S)


@pytest.mark.parametrize("share", CUTS)
def test_cuts_of_every_kind_are_refused_naming_the_time(kind, whole, share, tmp_path):
    data = whole.read_bytes()
    cut = tmp_path / f"cut{whole.suffix}"
    cut.write_bytes(data[: int(len(data) * share)])
    with pytest.raises(AudioError) as caught:
        probe_clip(cut)
    reason = caught.value.reason
    assert "truncat" not in reason and caught.value.path == str(cut)
    assert abs(cut_time(reason) - decoded_until_it_stops(cut)) <= tolerance(kind), reason


def test_a_wav_whose_data_chunk_claims_ten_times_its_bytes_is_refused(tmp_path):
    data = write_kind("WAV 16-bit mono")
    at = data.find(b"data") + 4
    stated = int.from_bytes(data[at : at + 4], "little")
    path = tmp_path / "claims_more.wav"
    path.write_bytes(data[:at] + (10 * stated).to_bytes(4, "little") + data[at + 4 :])
    assert probe(path).duration_s == pytest.approx(SECONDS, abs=0.01)  # libsndfile reads it so
    with pytest.raises(AudioError) as caught:
        probe_clip(path)
    reason = caught.value.reason
    assert f"WAV holds {stated} of the {10 * stated} bytes of audio its header promises" in reason
    assert cut_time(reason) == pytest.approx(SECONDS, abs=TIME_TOLERANCE_S)


def ogg_pages(data: bytes) -> list[int]:
    """Offsets of an Ogg file's pages."""
    starts = [0]
    while starts[-1] < len(data):
        segments = data[starts[-1] + 26]
        table = data[starts[-1] + 27 : starts[-1] + 27 + segments]
        starts.append(starts[-1] + 27 + segments + sum(table))
    return starts[:-1]


def test_an_ogg_cut_between_two_pages_lacks_its_end_of_stream_page(tmp_path):
    data = write_kind("Ogg Vorbis mono")
    pages = ogg_pages(data)
    path = tmp_path / "between_pages.ogg"
    path.write_bytes(data[: pages[len(pages) // 2]])
    with pytest.raises(AudioError) as caught:
        probe_clip(path)
    assert "Ogg stream ends on a page not marked as its last" in caught.value.reason
    assert abs(cut_time(caught.value.reason) - decoded_until_it_stops(path)) <= TIME_TOLERANCE_S


def test_no_real_audio_file_is_taken_for_a_cut_one(shared_data):
    files = sorted(f for f in shared_data.rglob("*") if f.suffix.lower() in SUPPORTED_SUFFIXES)
    assert {f.suffix.lower() for f in files} >= {".mp3", ".ogg"}
    refused = {}
    for path in files:
        try:
            probe_clip(path)
        except AudioError as exc:
            refused[str(path.relative_to(shared_data))] = exc.reason
    assert refused == {}


# --- through the index and predict ---------------------------------------------------------------


def cut_case(name: str, data: bytes) -> AudioCase:
    return AudioCase(name, name, raw(data[: len(data) // 2]), "index", "the file was cut at about")


@pytest.fixture
def real_ogg(shared_data) -> bytes:
    return next(iter(sorted(shared_data.rglob("*.ogg")))).read_bytes()


@pytest.mark.parametrize("kind", ["WAV 16-bit mono", "Ogg Vorbis mono", "FLAC 16-bit"])
def test_the_index_quarantines_a_cut_file(kind, tmp_path):
    name = f"cut_half{KINDS[kind][0]}"
    case = with_broken_audio(tmp_path / "data", cut_case(name, write_kind(kind)))
    assert_quarantines_exactly(case, tmp_path / "out")


def test_the_index_quarantines_a_real_ogg_cut_in_half_or_fails_naming_it(real_ogg, tmp_path):
    case = cut_case("real_cut.ogg", real_ogg)
    assert_quarantines_exactly(with_broken_audio(tmp_path / "data", case), tmp_path / "out")
    assert_fails_naming(with_broken_audio(tmp_path / "data2", case), tmp_path / "out2")


def test_predict_refuses_a_cut_wav(tiny, tmp_path):
    data = write_kind("WAV 16-bit mono", seconds=30.0)
    cut = tmp_path / "cut_half.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError) as caught:
        load_model(tiny / "runs" / "ridge").predict_file(cut)
    assert "WAV holds" in caught.value.reason and "promises (30.0 s)" in caught.value.reason
    assert cut_time(caught.value.reason) == pytest.approx(15.0, abs=TIME_TOLERANCE_S)


# --- named pipes ---------------------------------------------------------------------------------


def fifo(path: Path) -> None:
    os.mkfifo(path)


def test_a_named_pipe_in_a_class_folder_is_quarantined_unopened(tmp_path):
    """Through `merflow index` (a subprocess with a timeout): opening the pipe would block."""
    cases = [AudioCase("named pipe", "pipe.mp3", fifo, "index")]
    spec = write_folder_dataset(tmp_path / "data", cases)
    fifo(tmp_path / "data" / "stray_pipe.wav")  # in no class folder
    run = index(spec, tmp_path / "out", "quarantine", tmp_path)
    assert run.returncode == 0, run.stderr
    quarantine = read_table(tmp_path / "out" / "quarantine.parquet").set_index("clip_id")
    assert sorted(quarantine.index) == ["pipe", "stray_pipe"]
    assert quarantine.loc["pipe", "path"] == str(tmp_path / "data" / CLASSES[0] / "pipe.mp3")
    assert quarantine.loc["pipe", "reason"].startswith("is a named pipe (FIFO)")
    assert "not a regular file; put the audio file itself there" in quarantine.loc["pipe", "reason"]
    assert "in no class folder" in quarantine.loc["stray_pipe", "reason"]


def test_a_named_pipe_a_manifest_points_at_fails_naming_it(tmp_path):
    case = with_broken_audio(tmp_path / "data", AudioCase("pipe", "pipe.flac", fifo, "index"))
    case.reason = "is a named pipe (FIFO)"
    assert_fails_naming(case, tmp_path / "out")
