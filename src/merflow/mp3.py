"""Is an MP3 whole? A walk over its MPEG frame headers, without decoding a sample.

Most MP3s carry no Xing/Info/VBRI header recording their length, and for those libsndfile
estimates the duration from the file's size: an MP3 cut in half then reads as a whole clip of
half the length (issue 31). The frames themselves tell. Every frame header announces the frame's
length, so a file cut inside a frame ends before its last header's promise; a download that
stopped and was padded (or had something else appended) holds bytes that are not MPEG audio where
the next frame should start; and a Xing/Info/VBRI header, when there is one, promises a number of
frames that a cut file no longer holds. Bytes that are not frames in the middle, after which the
stream resumes, are damage: libsndfile's decoder stops there (300 bytes inserted suffice, issue 36).

:func:`inspect_mp3` reads the file once and looks at four bytes a frame (well under a millisecond
for a 30 s clip). Tags are skipped: ID3v2 at the start, ID3v1, APEv2 and Lyrics3v2 at the end. A
cut that falls exactly between two frames of a file without a length header leaves a whole,
shorter MP3: nothing can tell it. A free-format stream (no bitrate in its headers) cannot be
walked and is not judged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

from merflow.containers import NOT_JUDGED, Finding, Inspection

# kbps by bitrate index, for (MPEG-1?, layer)
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# Hz by sample-rate index, for the version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5; 1 reserved)
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
SYNC_SEARCH = 64 * 1024  # bytes searched for the first frame after the ID3v2 tag
# Frames a Xing/Info count may promise beyond those present: LAME 3.99r's Info header in the
# emoMusic clips (../shared/data/emomusic-sample) counts one frame more than the whole file holds.
PROMISE_SLACK = 1
DECODE_SLACK_S = 0.5  # frames vs decoded length: decoders agree within 0.25 s on ../shared/data
DECODER_DELAY = 529  # samples mpg123 drops at the start, besides the encoder's delay (LAME tag)
_TAGS = (b"ID3", b"TAG", b"APETAGEX", b"LYRICSBEGIN")  # a tail that starts so is a tag, not audio


class _Frame(NamedTuple):
    length: int  # bytes, header included
    samples: int  # per channel
    sample_rate: int
    stream: int  # version, layer and sample-rate bits: equal for every frame of one stream


@dataclass
class _Walk:
    """What walking the frames found: the complete frames, and where and why they stop."""

    first: _Frame
    delay: int = 0  # samples the decoder drops at the start (LAME tag), so times match decoding
    frames: int = 0
    stop: int = 0  # offset after the last complete frame
    overrun: bool = False  # the frame at ``stop`` announces more bytes than the file holds
    damage: tuple[int, int] | None = None  # (frames before, bytes) of the first run of non-frames

    def seconds(self, frames: int | None = None) -> float:
        samples = (self.frames if frames is None else frames) * self.first.samples
        return max(0, samples - self.delay) / self.first.sample_rate


def inspect_mp3(path: str | os.PathLike, decoded_s: float | None = None) -> Inspection:
    """The seconds in the complete frames of the MP3 at ``path``, and a finding when it was cut,
    damaged, or is more than its decoder reads. Not judged (``audio_s`` None) when the walk cannot
    judge (no MPEG sync near the start, free-format bitrate): decoding is then the only judge.

    ``decoded_s``, the length libsndfile gives the file, is checked against the frames too:
    libsndfile takes the length of an MP3 without a length header from its size and the first
    frame's bit rate. When that is shorter than the frames (variable bit rate), decoding stops
    there (a whole 8 s file read as 1.6 s): a finding. When it is longer (a quiet start at a low
    bit rate), decoding reads every frame: no finding, and ``audio_s`` is the true length."""
    return inspect_mp3_bytes(Path(path).read_bytes(), decoded_s)


def check_mp3(path: str | os.PathLike, decoded_s: float | None = None) -> Finding | None:
    """The finding of :func:`inspect_mp3`, if any."""
    return inspect_mp3(path, decoded_s).finding


def check_mp3_bytes(data: bytes, decoded_s: float | None = None) -> Finding | None:
    """:func:`check_mp3` on the file's bytes."""
    return inspect_mp3_bytes(data, decoded_s).finding


def inspect_mp3_bytes(data: bytes, decoded_s: float | None = None) -> Inspection:
    """:func:`inspect_mp3` on the file's bytes."""
    start = _skip_id3v2(data)
    if start > len(data):
        reason = "MP3 ends inside its ID3v2 tag, before any audio: the file was cut; re-download it"
        return Inspection(0.0, Finding("cut_in_tag", 0.0, reason))
    end = _audio_end(data, start)
    first = _find_sync(data, start, min(end, start + SYNC_SEARCH), end)
    if first is None:
        return NOT_JUDGED
    walk = _Walk(_frame(data[first + 1], data[first + 2]), stop=first)
    promised = _read_length_header(data, walk)
    _walk(data, walk, end)
    finding = _judge(data, walk, end, promised) or _short_decode(walk, decoded_s)
    return Inspection(walk.seconds(), finding)


def _short_decode(walk: _Walk, decoded_s: float | None) -> Finding | None:
    if decoded_s is None or walk.seconds() - decoded_s <= DECODE_SLACK_S:
        return None
    reason = (
        f"MP3 of variable bit rate without a length header: the decoder reads {decoded_s:.1f} "
        f"s of its {walk.seconds():.1f} s; re-encode it (e.g. ffmpeg -i in.mp3 out.flac)"
    )
    return Finding("short_decode", decoded_s, reason)


def _judge(data: bytes, walk: _Walk, end: int, promised: int | None) -> Finding | None:
    """The finding the walk supports, if any: damage first (decoding stops there), then a frame
    cut short, the strongest evidence of a cut.

    Bytes after the last frame that are neither a frame nor a tag are tolerated up to one frame's
    length, as padding (decoders meet such padding; none of the 344 MP3s of ../shared/data has
    any): a download that stopped and was padded to its size leaves far more.
    """
    audio_s, tail = walk.seconds(), data[walk.stop : end]
    promise = f"{walk.seconds(promised):.1f} s" if promised else ""
    of = f" of the {promise} its header promises" if promised else ""
    if walk.damage:
        frames, size = walk.damage
        reason = (
            f"MP3 is damaged at about {walk.seconds(frames):.1f} s: {size} bytes there are not "
            "MPEG frames, and the decoder stops there (a damaged download)"
        )
        return Finding("damaged", walk.seconds(frames), reason + "; re-download it")
    if walk.overrun or _cut_in_header(tail):
        reason = f"MP3 ends inside a frame: the file was cut at about {audio_s:.1f} s{of}"
        return Finding("cut_in_frame", audio_s, reason + "; re-download it")
    if len(tail) > walk.first.length and not tail.startswith(_TAGS):
        reason = (
            f"MP3 audio stops at about {audio_s:.1f} s{of}: the last {len(tail)} bytes are not "
            "MPEG frames (an incomplete or damaged download)"
        )
        return Finding("lost_sync", audio_s, reason + "; re-download it")
    if promised is not None and walk.frames + PROMISE_SLACK < promised:
        reason = (
            f"MP3 holds {walk.frames} of the {promised} frames its header promises: the file "
            f"was cut at about {audio_s:.1f} s of {promise}"
        )
        return Finding("missing_frames", audio_s, reason + "; re-download it")
    return None


def _cut_in_header(tail: bytes) -> bool:
    """One to three bytes that begin a frame header (sync bits): the cut fell inside it."""
    return 0 < len(tail) < 4 and tail[0] == 0xFF and (len(tail) == 1 or tail[1] & 0xE0 == 0xE0)


# --- frames --------------------------------------------------------------------------------------


@cache
def _frame(b1: int, b2: int) -> _Frame | None:
    """The frame a header's 2nd and 3rd bytes describe (the 1st is 0xFF); None if invalid or
    free-format. Cached: a stream uses a handful of distinct headers."""
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if b1 & 0xE0 != 0xE0 or version == 1 or layer_bits == 0:
        return None
    if bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer, mpeg1 = 4 - layer_bits, version == 3
    bitrate = _BITRATES[mpeg1, layer][bitrate_index] * 1000
    rate = _SAMPLE_RATES[version][rate_index]
    stream = ((b1 & 0x1E) << 2) | rate_index
    if layer == 1:
        return _Frame((12 * bitrate // rate + padding) * 4, 384, rate, stream)
    samples = 576 if layer == 3 and not mpeg1 else 1152
    return _Frame(samples // 8 * bitrate // rate + padding, samples, rate, stream)


def _frame_at(data: bytes, pos: int) -> _Frame | None:
    return _frame(data[pos + 1], data[pos + 2]) if data[pos] == 0xFF else None


def _find_sync(data: bytes, pos: int, limit: int, end: int, stream: int | None = None):
    """The first offset in [pos, limit) where a frame (of ``stream``, if given) starts and the
    next frame of its stream, or ``end``, follows it: one valid-looking header alone is too often
    a chance pattern in other bytes."""
    while (pos := data.find(b"\xff", pos, limit)) >= 0 and pos + 4 <= end:
        frame = _frame_at(data, pos)
        if frame is not None and stream in (None, frame.stream):
            after = pos + frame.length
            following = _frame_at(data, after) if after + 4 <= end else None
            if after == end or (following is not None and following.stream == frame.stream):
                return pos
        pos += 1
    return None


def _walk(data: bytes, walk: _Walk, end: int) -> None:
    """Count complete frames from ``walk.stop`` to the end. Bytes that are not a frame end the
    walk unless the stream resumes after them: the first such run is noted as damage."""
    pos, stream = walk.stop, walk.first.stream
    while True:
        while pos + 4 <= end and data[pos] == 0xFF:
            frame = _frame(data[pos + 1], data[pos + 2])
            if frame is None or frame.stream != stream:
                break
            if pos + frame.length > end:
                walk.overrun = True
                break
            pos += frame.length
            walk.frames += 1
        walk.stop = pos
        if walk.overrun or pos + 4 > end:
            return
        resumed = _find_sync(data, pos + 1, end, end, stream)
        if resumed is None:
            return
        walk.damage = walk.damage or (walk.frames, resumed - pos)
        pos = resumed


# --- length headers and tags ---------------------------------------------------------------------


def _read_length_header(data: bytes, walk: _Walk) -> int | None:
    """If the first frame is a Xing/Info or VBRI header (a silent frame, not audio), step over it
    and return the audio frames it promises (None without a count), noting the LAME tag's
    encoder delay so that times match what the decoder gives."""
    pos = walk.stop
    if data[pos + 1] & 0x06 != 0x02:
        return None  # layers I and II carry no length header
    first = data[pos : pos + walk.first.length]
    if first[36:40] == b"VBRI":
        walk.stop += walk.first.length
        return int.from_bytes(first[50:54], "big")
    at = max(first.find(b"Xing", 4, 48), first.find(b"Info", 4, 48))
    if at < 0:
        return None
    walk.stop += walk.first.length
    flags = int.from_bytes(first[at + 4 : at + 8], "big")
    fields = [4 * (flags & 1), 4 * (flags >> 1 & 1), 100 * (flags >> 2 & 1), 4 * (flags >> 3 & 1)]
    lame = at + 8 + sum(fields)  # LAME's (or FFmpeg's) extension follows the Xing fields
    if first[lame : lame + 4] in (b"LAME", b"Lavf", b"Lavc") and len(first) >= lame + 24:
        walk.delay = (first[lame + 21] << 4 | first[lame + 22] >> 4) + DECODER_DELAY
    return int.from_bytes(first[at + 8 : at + 12], "big") if flags & 1 else None


def _skip_id3v2(data: bytes) -> int:
    """Offset after the ID3v2 tag(s) at the start (the size is syncsafe; a footer adds 10 bytes).
    May exceed the file's length: the file then ends inside the tag."""
    pos = 0
    while data[pos : pos + 3] == b"ID3" and len(data) >= pos + 10:
        footer = 10 if data[pos + 5] & 0x10 else 0
        pos += 10 + _syncsafe(data[pos + 6 : pos + 10]) + footer
    return pos


def _audio_end(data: bytes, start: int) -> int:
    """Offset where the audio ends: before the ID3v1, APEv2, Lyrics3v2 and appended ID3v2 tags at
    the end, in any order (taggers stack them)."""
    end = len(data)
    while size := _trailing_tag(data, start, end):
        end -= size
    return end


def _trailing_tag(data: bytes, start: int, end: int) -> int:
    """Size of the tag ending at ``end``, 0 when none (or when it would reach before ``start``)."""
    size = 0
    if end - start >= 128 and data[end - 128 : end - 125] == b"TAG":
        size = 128
    elif end - start >= 32 and data[end - 32 : end - 24] == b"APETAGEX":
        flags = int.from_bytes(data[end - 12 : end - 8], "little")
        size = int.from_bytes(data[end - 20 : end - 16], "little") + (32 if flags >> 31 else 0)
    elif end - start >= 15 and data[end - 9 : end] == b"LYRICS200":
        digits = data[end - 15 : end - 9]
        size = int(digits) + 15 if digits.isdigit() else 0
    elif end - start >= 20 and data[end - 10 : end - 7] == b"3DI":
        size = 20 + _syncsafe(data[end - 4 : end])
    return size if 0 < size <= end - start else 0


def _syncsafe(four: bytes) -> int:
    """An ID3v2 size: four bytes of seven bits each (so that a tag holds no false frame sync)."""
    size = 0
    for byte in four:
        size = (size << 7) | (byte & 0x7F)
    return size
