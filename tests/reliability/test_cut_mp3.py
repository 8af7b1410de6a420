"""MP3s cut short are told from whole ones, with or without a length header (issue 31).

Most real MP3s carry no Xing/Info/VBRI header; libsndfile then takes the duration from the file's
size, so a file cut in half reads as a whole clip half as long and its end decodes. The frame walk
of :mod:`merflow.mp3` tells: here it must never flag a real MP3 of ../shared/data, must flag cuts
of MP3s written by libsndfile's encoder (CBR, VBR, ABR; with and without the length header; with
ID3v2, ID3v1, APEv2 and Lyrics3v2 tags) naming the time of the cut, and the index stage must
quarantine a real header-less MP3 cut in half (or stop on it under ``fail``).
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _fixtures_audio import (
    AudioCase,
    decoded_until_it_stops,
    music,
    raw,
    with_broken_audio,
    write_folder_dataset,
)
from test_bad_audio import index
from test_bad_labels import assert_fails_naming, assert_quarantines_exactly

from merflow.audio import probe
from merflow.datasets.index import build_index, probe_clip
from merflow.errors import AudioError
from merflow.io import read_table
from merflow.mp3 import check_mp3, check_mp3_bytes

SECONDS = 8.0
CUTS = (0.4, 0.5, 0.73)  # of the file's size
TIME_TOLERANCE_S = 0.1
CUT_AT = re.compile(r"at about (\d+\.\d) s")
LENGTH_HEADERS = (b"Xing", b"Info", b"VBRI")
# a real 4Q clip without any length header (32 kHz stereo CBR); half its size falls inside a frame
REAL_HEADERLESS = "4q-sample/audio/Q1/MT0000364027.mp3"
CUT_REASON = "MP3 ends inside a frame: the file was cut at about"


# --- files of libsndfile's encoder, and tags -----------------------------------------------------

# (sample rate, channels, bitrate_mode, compression_level): MPEG-1, MPEG-2 and MPEG-2.5 streams
ENCODINGS = [
    (44100, 2, "CONSTANT", 0.0),  # 320 kbps
    (44100, 1, "CONSTANT", 0.5),
    (48000, 2, "VARIABLE", 0.5),
    (32000, 1, "AVERAGE", 0.3),
    (22050, 2, "VARIABLE", 0.9),
    (16000, 1, "CONSTANT", 0.9),
    (8000, 1, "AVERAGE", 0.5),
]


def encode(rate: int, channels: int, mode: str, level: float) -> bytes:
    signal = music(SECONDS, rate)
    if channels == 2:
        signal = np.stack([signal, music(SECONDS, rate, shift=1.0)], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, signal, rate, format="MP3", bitrate_mode=mode, compression_level=level)
    return buffer.getvalue()


def layer3_frame(header: bytes) -> tuple[int, int, int]:
    """(bytes, samples, sample rate) of the layer III frame whose header is ``header``."""
    assert header[0] == 0xFF and header[1] & 0xE6 == 0xE2, "not a layer III frame"
    mpeg1 = header[1] & 0x18 == 0x18
    rates = {0x18: (44100, 48000, 32000), 0x10: (22050, 24000, 16000), 0x00: (11025, 12000, 8000)}
    kbps = (
        (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
        if mpeg1
        else (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
    )[header[2] >> 4]
    rate = rates[header[1] & 0x18][(header[2] >> 2) & 3]
    samples = 1152 if mpeg1 else 576
    return samples // 8 * 1000 * kbps // rate + ((header[2] >> 1) & 1), samples, rate


def frame_starts(stream: bytes) -> list[int]:
    """Offsets of the frames of a layer III stream (no tags), and of its end."""
    starts = [0]
    while starts[-1] + 4 <= len(stream):
        starts.append(starts[-1] + layer3_frame(stream[starts[-1] : starts[-1] + 4])[0])
    return starts


def frames_kept_s(stream: bytes) -> float:
    """Seconds in the complete frames of a stream without length header: what a decoder gives.
    (libsndfile decodes a header-less VBR stream only as far as its estimate from the file's size
    reaches, so its decoded length is no truth there.)"""
    starts = frame_starts(stream)
    complete = sum(1 for end in starts[1:] if end <= len(stream))
    _, samples, rate = layer3_frame(stream[:4])
    return complete * samples / rate


def without_length_header(data: bytes) -> bytes:
    """The stream with its Xing/Info frame dropped: the form most real MP3s come in."""
    if not any(tag in data[:64] for tag in LENGTH_HEADERS):
        return data  # libsndfile writes none for some CBR streams
    stripped = data[layer3_frame(data)[0] :]
    assert not any(tag in stripped[:64] for tag in LENGTH_HEADERS)
    return stripped


def syncsafe(size: int) -> bytes:
    return bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))


def id3v2(version: int = 3, footer: bool = False) -> bytes:
    """An ID3v2 tag with a title and 300 bytes of padding (v2.4 may carry a footer)."""
    frame_size = syncsafe(11) if version == 4 else struct.pack(">I", 11)
    body = b"TIT2" + frame_size + b"\x00\x00" + b"\x03cut test\x00\x00" + bytes(300)
    flags = 0x10 if footer else 0
    head = bytes([version, 0, flags]) + syncsafe(len(body))
    return b"ID3" + head + body + (b"3DI" + head if footer else b"")


def id3v1() -> bytes:
    return b"TAG" + b"cut test".ljust(30, b"\x00") + bytes(94) + b"\x0c"


def apev2() -> bytes:
    item = struct.pack("<II", 8, 0) + b"Title\x00" + b"cut test"
    size = len(item) + 32

    def block(flags: int) -> bytes:
        return b"APETAGEX" + struct.pack("<IIII", 2000, size, 1, flags) + bytes(8)

    return block(0xA0000000) + item + block(0x80000000)  # header, item, footer


def lyrics3v2() -> bytes:
    fields = b"LYR00011hello world"
    return b"LYRICSBEGIN" + fields + b"%06dLYRICS200" % (len(fields) + 11)


TAGGINGS = {
    "untagged": (b"", b""),
    "ID3v2.3 + ID3v1": (id3v2(), id3v1()),
    "ID3v2.4 with footer + APEv2 + ID3v1": (id3v2(4, footer=True), apev2() + id3v1()),
    "Lyrics3v2 + ID3v1": (b"", lyrics3v2() + id3v1()),
}


def decoded_seconds(data: bytes) -> float:
    signal, rate = sf.read(io.BytesIO(data))
    return len(signal) / rate


def cut_time(reason: str) -> float:
    found = CUT_AT.search(reason)
    assert found, reason
    return float(found.group(1))


@pytest.fixture(scope="module", params=ENCODINGS, ids=lambda e: f"{e[0]}Hz-{e[1]}ch-{e[2]}-{e[3]}")
def encoded(request) -> bytes:
    return encode(*request.param)


def cut_inside_a_frame(stream: bytes, share: float) -> int:
    """Where to cut ``stream`` near ``share`` of its size: a byte later if that is between two
    frames, for a stream cut between frames and without length header is a whole, shorter one:
    nothing can tell."""
    at = int(len(stream) * share)
    return at + 1 if at in frame_starts(stream) else at


@pytest.mark.parametrize("header", ["length header", "no length header"])
@pytest.mark.parametrize("tagging", sorted(TAGGINGS))
def test_whole_mp3s_are_whole_and_cuts_name_the_time(encoded, header, tagging):
    stream = encoded if header == "length header" else without_length_header(encoded)
    front, back = TAGGINGS[tagging]
    whole = front + stream + back
    assert check_mp3_bytes(whole) is None
    for share in CUTS:
        cut = whole[: len(front) + cut_inside_a_frame(stream, share)]
        finding = check_mp3_bytes(cut)
        assert finding is not None, f"cut at {share:.0%} of {len(whole)} bytes went unnoticed"
        assert finding.kind == "cut_in_frame" and finding.reason.endswith("; re-download it")
        assert "MP3 ends inside a frame: the file was cut at about" in finding.reason
        # (libsndfile cannot read from memory an MP3 whose ID3v2.4 tag has a footer: decode the
        # audio alone; and a header-less VBR stream only as far as its size estimate reaches)
        audio = cut[len(front) :]
        truth = decoded_seconds(audio) if has_length_header(audio) else frames_kept_s(audio)
        assert abs(cut_time(finding.reason) - truth) <= TIME_TOLERANCE_S, (finding, truth)
        assert abs(finding.audio_s - truth) <= TIME_TOLERANCE_S
        # a cut download tagged afterwards: the tags take the place of the missing bytes
        assert check_mp3_bytes(cut + back) == finding


def test_a_cut_between_two_frames_is_told_by_the_frame_count_of_the_header():
    data = encode(44100, 2, "CONSTANT", 0.5)  # Info header; frames of 208 or 209 bytes
    info = data.find(b"Info")
    count = int.from_bytes(data[info + 8 : info + 12], "big")
    promising_more = data[: info + 8] + (count + 40).to_bytes(4, "big") + data[info + 12 :]
    finding = check_mp3_bytes(promising_more)
    assert finding is not None and finding.kind == "missing_frames"
    assert f"holds {count} of the {count + 40} frames" in finding.reason
    assert abs(cut_time(finding.reason) - decoded_seconds(data)) <= TIME_TOLERANCE_S
    # one frame more than held is what LAME 3.99r's Info header of emoMusic's clips promises
    one_more = data[: info + 8] + (count + 1).to_bytes(4, "big") + data[info + 12 :]
    assert check_mp3_bytes(one_more) is None


def test_a_download_padded_or_followed_by_other_bytes_loses_sync():
    data = without_length_header(encode(44100, 2, "CONSTANT", 0.5))
    kept = data[: cut_inside_a_frame(data, 0.6)]
    truth = frames_kept_s(kept)
    for tail in (bytes(len(data) - len(kept)), b"<html><body>502 Bad Gateway</body></html>" * 40):
        finding = check_mp3_bytes(kept + tail)
        assert finding is not None and finding.kind == "lost_sync"
        assert "MP3 audio stops at about" in finding.reason
        # the tail completes the frame the cut fell in: up to one frame of it counts as audio
        not_mpeg = int(re.search(r"the last (\d+) bytes are not MPEG frames", finding.reason)[1])
        assert len(tail) - 210 < not_mpeg < len(tail)
        assert abs(finding.audio_s - truth) <= TIME_TOLERANCE_S


def test_padding_and_tags_are_no_cut():
    data = without_length_header(encode(48000, 1, "CONSTANT", 0.5))
    assert check_mp3_bytes(data + bytes(100)) is None  # padding shorter than a frame
    assert check_mp3_bytes(data + id3v2()) is None  # an ID3v2 tag appended without footer


@pytest.mark.parametrize("junk", ["1000 zero bytes inserted", "4 kB overwritten with noise"])
def test_damage_mid_file_is_named_where_the_decoder_stops(junk):
    data = without_length_header(encode(48000, 1, "CONSTANT", 0.5))
    middle = len(data) // 2
    if junk.startswith("1000"):
        damaged = data[:middle] + bytes(1000) + data[middle:]  # the stream resumes after it
    else:
        noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
        damaged = data[:middle] + noise + data[middle + 4096 :]
    finding = check_mp3_bytes(damaged)
    assert finding is not None and finding.kind == "damaged"
    assert re.search(r"MP3 is damaged at about \d+\.\d s: \d+ bytes", finding.reason)
    assert "truncat" not in finding.reason and finding.reason.endswith("; re-download it")
    stops = decoded_until_it_stops(damaged)
    assert stops < decoded_seconds(data) - 1  # the decoder stops at the damage: no glitch
    assert abs(cut_time(finding.reason) - stops) <= TIME_TOLERANCE_S


def test_a_file_cut_inside_its_id3v2_tag_is_cut():
    whole = id3v2() + encode(22050, 1, "CONSTANT", 0.5)
    finding = check_mp3_bytes(whole[:200])
    assert finding is not None and finding.kind == "cut_in_tag"


# --- the real files ------------------------------------------------------------------------------


def real_mp3s(shared_data: Path) -> list[Path]:
    files = sorted(shared_data.rglob("*.mp3"))
    assert files, f"no MP3 under {shared_data}"
    return files


def has_length_header(data: bytes) -> bool:
    """A Xing/Info/VBRI tag in the first frame (after the ID3v2 tag, if any)."""
    start = 0
    if data[:3] == b"ID3":
        size = 0
        for byte in data[6:10]:
            size = size << 7 | byte
        start = 10 + size
    return any(tag in data[start : start + 64] for tag in LENGTH_HEADERS)


def test_no_real_mp3_is_taken_for_a_cut_one(shared_data):
    files = real_mp3s(shared_data)
    flagged = {str(f.relative_to(shared_data)): check_mp3(f) for f in files}
    assert {name: f.reason for name, f in flagged.items() if f} == {}
    headerless = [f for f in files if not has_length_header(f.read_bytes())]
    assert len(headerless) > len(files) / 2  # most: the case the frame walk is for


@pytest.fixture
def real_cut(shared_data, tmp_path) -> tuple[Path, Path]:
    """A header-less real MP3 and its first half (the half falls inside a frame)."""
    whole = shared_data / REAL_HEADERLESS
    data = whole.read_bytes()
    assert not has_length_header(data)
    cut = tmp_path / "cut_half.mp3"
    cut.write_bytes(data[: len(data) // 2])
    return whole, cut


def test_libsndfile_alone_takes_the_cut_real_mp3_for_a_shorter_whole_one(real_cut):
    """Why the frame walk is needed: the header reads and the end decodes."""
    whole, cut = real_cut
    assert probe(cut).duration_s == pytest.approx(probe(whole).duration_s / 2, abs=0.1)
    with sf.SoundFile(cut) as audio:
        audio.seek(audio.frames - audio.samplerate)
        assert len(audio.read(2048)) > 0


def test_probe_clip_refuses_a_real_mp3_cut_in_half(real_cut):
    whole, cut = real_cut
    assert probe_clip(whole).duration_s > 29
    with pytest.raises(AudioError) as caught:
        probe_clip(cut)
    assert caught.value.path == str(cut) and CUT_REASON in caught.value.reason
    assert abs(cut_time(caught.value.reason) - decoded_seconds(cut.read_bytes())) <= 0.1


def real_cut_case(cut: Path) -> AudioCase:
    return AudioCase("real MP3 cut in half", "cut_half.mp3", raw(cut.read_bytes()), "index")


def test_the_index_quarantines_a_real_mp3_cut_in_half(real_cut, tmp_path):
    case = with_broken_audio(tmp_path / "data", real_cut_case(real_cut[1]))
    case.reason = CUT_REASON
    assert_quarantines_exactly(case, tmp_path / "out")
    quarantine = read_table(tmp_path / "out" / "quarantine.parquet")
    assert re.search(r"cut at about 15\.\d s; re-download it", quarantine["reason"][0])


def test_the_index_fails_on_a_real_mp3_cut_in_half_naming_it(real_cut, tmp_path):
    case = with_broken_audio(tmp_path / "data", real_cut_case(real_cut[1]))
    case.reason = CUT_REASON
    assert_fails_naming(case, tmp_path / "out")


def test_merflow_index_exits_2_on_a_real_mp3_cut_in_half(real_cut, tmp_path):
    spec = write_folder_dataset(tmp_path / "data", [real_cut_case(real_cut[1])])
    run = index(spec, tmp_path / "out", "fail", tmp_path)
    assert run.returncode == 2, run.stderr
    for fragment in ("cut_half.mp3", CUT_REASON, "on_bad_audio: quarantine"):
        assert fragment in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out" / "clips.parquet").exists()


# --- whole but odd, and damaged: the true reason (issue 36) --------------------------------------


def vbr_with_a_quiet_start(estimate: str) -> bytes:
    """A VBR stream without length header. libsndfile estimates its length from the size and the
    first frame's bit rate: after two seconds of silence (a low rate) the estimate is too long;
    straight into the music, too short."""
    signal = music(SECONDS, 22050)
    if estimate == "too long":
        signal = np.concatenate([np.zeros(2 * 22050), signal])
    buffer = io.BytesIO()
    sf.write(buffer, signal, 22050, format="MP3", bitrate_mode="VARIABLE", compression_level=0.9)
    return without_length_header(buffer.getvalue())


def test_a_whole_vbr_mp3_estimated_too_long_is_indexed_at_its_true_length(tmp_path):
    data = vbr_with_a_quiet_start("too long")
    path = tmp_path / "quiet_start.mp3"
    path.write_bytes(data)
    decoded = decoded_seconds(data)
    assert probe(path).duration_s > decoded + 1  # libsndfile's estimate from the size...
    assert decoded == pytest.approx(
        frames_kept_s(data), abs=TIME_TOLERANCE_S
    )  # ...yet it decodes whole
    assert probe_clip(path).duration_s == pytest.approx(decoded, abs=TIME_TOLERANCE_S)


def test_the_index_keeps_a_whole_vbr_mp3_and_quarantines_one_its_decoder_reads_in_part(tmp_path):
    cases = [
        AudioCase(
            "VBR, estimate too long", "long.mp3", raw(vbr_with_a_quiet_start("too long")), ""
        ),
        AudioCase(
            "VBR, estimate too short", "short.mp3", raw(vbr_with_a_quiet_start("too short")), ""
        ),
    ]
    spec = write_folder_dataset(tmp_path / "data", cases, n_good=2)
    build_index(spec, tmp_path / "out")
    clips = read_table(tmp_path / "out" / "clips.parquet")
    quarantine = read_table(tmp_path / "out" / "quarantine.parquet")
    assert "long" in set(clips["clip_id"])
    assert quarantine["clip_id"].tolist() == ["short"]
    reason = quarantine["reason"][0]
    assert (
        "the decoder reads" in reason and "re-encode it (e.g. ffmpeg -i in.mp3 out.flac)" in reason
    )
    assert "truncat" not in reason


def garbled_in_the_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    noise = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return data[:middle] + noise + data[middle + 4096 :]


def test_the_index_names_a_real_mp3_garbled_in_the_middle_damaged(shared_data, tmp_path):
    garbled = garbled_in_the_middle((shared_data / REAL_HEADERLESS).read_bytes())
    damaged = "MP3 is damaged at about"
    broken = AudioCase(
        "real MP3 garbled in the middle", "garbled.mp3", raw(garbled), "index", damaged
    )
    assert_quarantines_exactly(with_broken_audio(tmp_path / "data", broken), tmp_path / "out")
    reason = read_table(tmp_path / "out" / "quarantine.parquet")["reason"][0]
    assert "truncat" not in reason and reason.endswith("; re-download it")
    assert abs(cut_time(reason) - decoded_until_it_stops(garbled)) <= TIME_TOLERANCE_S
