"""Is a WAV, AIFF, Ogg or FLAC file whole? Each container's own bookkeeping, read without decoding.

A download cut short keeps its header, and libsndfile reads what is left as a whole, shorter
clip: a WAV or AIFF cut in half as half as long, an Ogg cut in half as long as its last page
says (issue 36). The container tells, from a few headers at the start and the file's last bytes:

* WAV (RIFF, RF64) and AIFF: the sound-data chunk states its size; a cut file holds less.
* Ogg: the last page of a stream is flagged end-of-stream (0x04 in the page header); a cut file
  ends on a page without the flag, or inside a page.
* FLAC: STREAMINFO states the total samples; every frame header states its first sample and its
  block size, so the last frame header near the end says how far the audio reaches.

For WAV, AIFF and Ogg the time of the cut is the length libsndfile gives the file (it reads what
is there); for FLAC, which libsndfile takes at STREAMINFO's word, it is the last frame's start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

HEAD = 12  # bytes that name the container: RIFF/RF64/FORM + size + form type, OggS, fLaC
SIZE_SLACK = (
    2  # bytes a data chunk may promise beyond the file: a missing pad byte, a sloppy writer
)
OGG_PAGE_MAX = 27 + 255 + 255 * 255  # header, segment table, 255 segments of 255 bytes
OGG_EOS = 0x04
FLAC_TAIL = 64 * 1024  # bytes searched for the last frame header, at least (more if frames are)


@dataclass(frozen=True)
class Finding:
    """Why an audio file is not whole: ``kind`` names the fault, ``audio_s`` is the audio before
    it, and ``reason`` says what happened and what to do, for a quarantine table or an error."""

    kind: str
    audio_s: float
    reason: str


@dataclass(frozen=True)
class Inspection:
    """What a file's structure says: the seconds of audio it holds (None: not judged) and the
    finding when it is not whole."""

    audio_s: float | None
    finding: Finding | None = None


NOT_JUDGED = Inspection(None)


def inspect_container(path: str | os.PathLike, decoded_s: float) -> Inspection | None:
    """The inspection of the WAV, AIFF, Ogg or FLAC file at ``path`` (known by its first bytes,
    whatever its name), None for other files; ``decoded_s`` is the length libsndfile gives it."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD)
        size = os.fstat(fh.fileno()).st_size
        if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
            return _check_chunk(fh, size, decoded_s, "WAV", "data", "little")
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _check_chunk(fh, size, decoded_s, "AIFF", "SSND", "big")
        if head[:4] == b"OggS":
            return _check_ogg(fh, size, decoded_s)
        if head[:4] == b"fLaC":
            return _check_flac(fh, size)
    return None


def _cut(kind: str, audio_s: float, what: str) -> Inspection:
    reason = f"{what}: the file was cut at about {audio_s:.1f} s; re-download it"
    return Inspection(audio_s, Finding(kind, audio_s, reason))


# --- WAV and AIFF: chunks ------------------------------------------------------------------------


def _check_chunk(
    fh: BinaryIO, size: int, decoded_s: float, name: str, sound: str, order: str
) -> Inspection:
    """Compare the sound chunk's stated size with the bytes after its start."""
    found = _find_chunk(fh, size, sound.encode(), order)
    if found is None:
        return NOT_JUDGED  # libsndfile read it without such a chunk: nothing to compare
    start, stated = found
    if name == "WAV" and stated == 0xFFFFFFFF:
        stated = _rf64_data_size(fh)  # RF64: the real size is in the ds64 chunk
    present = size - start
    if stated in (0, None) or present + SIZE_SLACK >= stated:
        return Inspection(decoded_s)  # 0: a streaming writer that never went back to fill it in
    promised_s = decoded_s * stated / max(present, 1)
    what = f"{name} holds {present} of the {stated} bytes of audio its header promises"
    return _cut(f"{name.lower()}_cut", decoded_s, f"{what} ({promised_s:.1f} s)")


def _find_chunk(fh: BinaryIO, size: int, chunk: bytes, order: str) -> tuple[int, int] | None:
    """(offset of its data, stated size) of the first chunk named ``chunk``, walking the chunk
    headers only (chunks are padded to an even size)."""
    pos = HEAD
    while pos + 8 <= size:
        fh.seek(pos)
        header = fh.read(8)
        stated = int.from_bytes(header[4:], order)
        if header[:4] == chunk:
            return pos + 8, stated
        pos += 8 + stated + (stated & 1)
    return None


def _rf64_data_size(fh: BinaryIO) -> int | None:
    fh.seek(HEAD)
    ds64 = fh.read(24)  # id, size, RIFF size (8 bytes), data size (8 bytes), ...
    return int.from_bytes(ds64[16:24], "little") if ds64[:4] == b"ds64" else None


# --- Ogg: pages ----------------------------------------------------------------------------------


def _check_ogg(fh: BinaryIO, size: int, decoded_s: float) -> Inspection:
    """The last page must be complete and end its stream (a chained file's last stream)."""
    fh.seek(max(0, size - 2 * OGG_PAGE_MAX))
    tail = fh.read()
    pos = tail.rfind(b"OggS")
    while pos >= 0 and not _ogg_header_fits(tail, pos):
        pos = tail.rfind(b"OggS", 0, pos)  # a chance "OggS" in the last bytes, or a cut header
    if pos < 0:
        return _cut("ogg_cut", decoded_s, "Ogg file ends inside a page")
    end = pos + _ogg_page_length(tail, pos)
    if end > len(tail):
        return _cut("ogg_cut", decoded_s, "Ogg file ends inside a page")
    if not tail[pos + 5] & OGG_EOS:
        return _cut("ogg_cut", decoded_s, "Ogg stream ends on a page not marked as its last")
    return Inspection(decoded_s)


def _ogg_header_fits(data: bytes, pos: int) -> bool:
    """A page header (version 0) whose segment table the data hold."""
    return pos + 27 <= len(data) and data[pos + 4] == 0 and pos + 27 + data[pos + 26] <= len(data)


def _ogg_page_length(data: bytes, pos: int) -> int:
    segments = data[pos + 26]
    return 27 + segments + sum(data[pos + 27 : pos + 27 + segments])


# --- FLAC: frames --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StreamInfo:
    block: int  # the largest block size: that of every frame but the last in a fixed-size stream
    max_frame: int  # bytes, 0 when unknown
    sample_rate: int
    total: int  # samples a channel, 0 when unknown


def _check_flac(fh: BinaryIO, size: int) -> Inspection:
    """The last frame header must reach STREAMINFO's total (a cut inside the last frame, well
    under a second, passes: the decoder reads it to the cut)."""
    fh.seek(4)
    block = fh.read(38)
    if len(block) < 38 or block[0] & 0x7F != 0:
        return NOT_JUDGED  # the first metadata block must be STREAMINFO
    info = _stream_info(block[4:38])
    if info.total == 0 or info.sample_rate == 0:
        return NOT_JUDGED
    window = max(FLAC_TAIL, 2 * info.max_frame)
    fh.seek(max(0, size - window))
    starts = [_frame_span(info, frame) for frame in _frame_headers(fh.read())]
    starts = [(first, end) for first, end in starts if end <= info.total]
    if not starts:
        return _cut("flac_cut", 0.0, "FLAC holds no whole frame near its end")
    first, reach = max(starts, key=lambda span: span[1])
    whole_s = info.total / info.sample_rate
    if reach >= info.total:
        return Inspection(whole_s)
    what = f"FLAC audio stops at about {first / info.sample_rate:.1f} s of {whole_s:.1f} s"
    return _cut("flac_cut", first / info.sample_rate, what)


def _stream_info(data: bytes) -> _StreamInfo:
    bits = int.from_bytes(data[10:18], "big")  # rate (20), channels (3), depth (5), total (36)
    max_block, max_frame = int.from_bytes(data[2:4], "big"), int.from_bytes(data[7:10], "big")
    return _StreamInfo(max_block, max_frame, bits >> 44, bits & (2**36 - 1))


def _frame_headers(data: bytes):
    """Frame headers in ``data`` (those whose CRC-8 holds): (variable?, number, block size)."""
    pos = data.find(b"\xff")
    while 0 <= pos < len(data) - 1:
        if data[pos + 1] in (0xF8, 0xF9) and (frame := _frame_header(data, pos)):
            yield frame
        pos = data.find(b"\xff", pos + 1)


def _frame_header(data: bytes, pos: int) -> tuple[bool, int, int] | None:
    head = data[pos : pos + 16]
    if len(head) < 6 or head[3] & 1 or head[3] >> 4 > 10 or head[2] & 15 == 15:
        return None
    number, at = _utf8_number(head, 4)
    if number is None:
        return None
    size_code, rate_code = head[2] >> 4, head[2] & 15
    extra = {6: 1, 7: 2}.get(size_code, 0)
    block = int.from_bytes(head[at : at + extra], "big") + 1 if extra else _BLOCK_SIZES[size_code]
    at += extra + {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if block == 0 or at >= len(head) or _crc8(head[:at]) != head[at]:
        return None
    return bool(head[1] & 1), number, block


_BLOCK_SIZES = (0, 192, 576, 1152, 2304, 4608, 0, 0) + tuple(256 << k for k in range(8))


def _utf8_number(head: bytes, at: int) -> tuple[int | None, int]:
    """The frame or sample number, coded like UTF-8 (up to 7 bytes, 36 bits)."""
    lead = head[at]
    length = next((n for n in range(8) if not lead & (0x80 >> n)), 8)
    if length == 1 or length > 7 or at + max(length, 1) > len(head):
        return None, at
    if length == 0:
        return lead, at + 1
    value = lead & (0x7F >> length)
    for byte in head[at + 1 : at + length]:
        if byte & 0xC0 != 0x80:
            return None, at
        value = value << 6 | byte & 0x3F
    return value, at + length


def _frame_span(info: _StreamInfo, frame: tuple[bool, int, int]) -> tuple[int, int]:
    """(first sample, sample after the last) of a frame; a fixed-size stream numbers frames."""
    variable, number, block = frame
    first = number if variable else number * info.block
    return first, first + block


@cache
def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc << 1) ^ 0x07 if crc & 0x80 else crc << 1
        table.append(crc & 0xFF)
    return tuple(table)


def _crc8(data: bytes) -> int:
    crc, table = 0, _crc8_table()
    for byte in data:
        crc = table[crc ^ byte]
    return crc
