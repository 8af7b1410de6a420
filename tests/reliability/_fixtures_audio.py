"""Every bad, odd or awkward audio file the reliability suite tries, generated into a folder.

Nothing is copied into the repository: each file is synthesized (or, for the real-MP3 cuts, cut
from a file of ../shared/data read in place) by the case's ``write``. A case says how it must end:

* ``index``: the index stage quarantines it (``fail``: the run stops naming it);
* ``features``: the header and the end decode, so only the feature stage sees the fault;
* ``processed``: legitimate audio (silence, a clip shorter than one window, odd formats and
  names): indexed and featurized like any other clip, never quarantined.

The test signal is a mix of seven tones below 3.2 kHz under slow envelopes, evaluated at each
file's own rate, so that an 8 kHz and a 96 kHz file hold *the same signal* as the plain 16-bit
mono reference at the features' 22.05 kHz.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from _fixtures_labels import Case, labelled

RATE = 22050  # the rate every feature is computed at (the default of each feature)
SECONDS = 3.0
CLASSES = ("happy", "sad")
TONES = (
    (196.0, 0.20),
    (330.0, 0.12),
    (523.25, 0.10),
    (880.0, 0.08),
    (1396.9, 0.05),
    (2217.5, 0.04),
    (3136.0, 0.03),
)  # (Hz, amplitude): all below 8 kHz's Nyquist frequency, peak 0.4
PLAIN = "plain 16-bit mono 22.05 kHz"
HALF_LEVEL = "control: the signal 6 dB down"


def music(seconds: float = SECONDS, rate: int = RATE, shift: float = 0.0) -> np.ndarray:
    """The test signal at ``rate``; ``shift`` (rad) varies the phases so clips are not copies."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)
    mix = np.zeros_like(t)
    for k, (hz, amplitude) in enumerate(TONES):
        gain = envelope if k % 2 else 1 - 0.5 * envelope
        mix += amplitude * gain * np.sin(2 * np.pi * hz * t + k + shift)
    return mix


def wav(signal: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> Callable[[Path], None]:
    return lambda path: sf.write(path, signal, rate, subtype=subtype)


def raw(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def six_channels(path: Path) -> None:
    """Six different channels whose average is the signal (the documented down-mix)."""
    x = music()
    channels = np.stack([1.5 * x, 0.5 * x, x + 0.05, x - 0.05, 1.2 * x, 0.8 * x], axis=1)
    sf.write(path, channels, RATE, subtype="PCM_16")


def nan_samples(path: Path) -> None:
    """A float WAV with one NaN and one infinite sample: its header and its end read fine."""
    x = music(2.0)
    x[1000], x[2000] = np.nan, np.inf
    sf.write(path, x, RATE, subtype="FLOAT")


def mp3_bytes(seconds: float = 6.0) -> bytes:
    """An MP3 from libsndfile's own encoder (its Xing header records the full length)."""
    buffer = io.BytesIO()
    sf.write(buffer, music(seconds), RATE, format="MP3", subtype="MPEG_LAYER_III")
    return buffer.getvalue()


@dataclass(frozen=True)
class AudioCase:
    name: str
    file_name: str
    write: Callable[[Path], None]
    ending: str  # "index", "features" or "processed"
    reason: str = ""  # fragment of the quarantine reason (and of the `fail` error)


def broken_cases() -> list[AudioCase]:
    mp3 = mp3_bytes()
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    return [
        AudioCase("zero bytes", "empty.wav", raw(b""), "index", "empty (0 bytes)"),
        AudioCase(
            "WAV header without samples",
            "no_samples.wav",
            wav(np.zeros(0)),
            "index",
            "holds no audio samples",
        ),
        AudioCase(
            "MP3 cut to half (header kept)",
            "cut_half.mp3",
            raw(mp3[: len(mp3) // 2]),
            "index",
            "MP3 ends inside a frame: the file was cut at about",
        ),
        AudioCase(
            "MP3 cut to 400 bytes",
            "cut_400.mp3",
            raw(mp3[:400]),
            "index",
            "unreadable audio (not a recognised audio stream)",
        ),
        AudioCase("random bytes named .mp3", "noise.mp3", raw(noise), "index", "unreadable audio"),
        AudioCase(
            "text named .wav",
            "notes.wav",
            raw(b"title,artist\nsong,someone\n"),
            "index",
            "unreadable audio (Format not recognised.)",
        ),
        AudioCase(
            "NaN samples in a float WAV",
            "nan_samples.wav",
            nan_samples,
            "features",
            "decodes to NaN or infinite samples",
        ),
    ]


def legitimate_cases() -> list[AudioCase]:
    x = music()
    return [
        AudioCase(
            "digital silence", "silence.wav", wav(np.zeros(round(SECONDS * RATE))), "processed"
        ),
        AudioCase("0.3 s clip", "short.wav", wav(music(0.3)), "processed"),
        AudioCase(PLAIN, "plain.wav", wav(x), "processed"),
        AudioCase("8-bit WAV", "pcm_u8.wav", wav(x, subtype="PCM_U8"), "processed"),
        AudioCase("24-bit WAV", "pcm_24.wav", wav(x, subtype="PCM_24"), "processed"),
        AudioCase("32-bit float WAV", "float.wav", wav(x, subtype="FLOAT"), "processed"),
        AudioCase("6-channel WAV", "six_channels.wav", six_channels, "processed"),
        AudioCase("8 kHz", "rate_8k.wav", wav(music(rate=8000), 8000), "processed"),
        AudioCase("96 kHz", "rate_96k.wav", wav(music(rate=96000), 96000), "processed"),
        AudioCase(HALF_LEVEL, "half_level.wav", wav(0.5 * x), "processed"),
    ]


AWKWARD_STEMS = (
    "with space",
    'it\'s "quoted"',
    "ünïcødé – 音楽",
    "-leading-dash",
    "$(touch pwned)",
    "semi;colon && touch pwned",
)


def awkward_cases() -> list[AudioCase]:
    return [
        AudioCase(f"name {stem!r}", f"{stem}.wav", wav(music(shift=k)), "processed")
        for k, stem in enumerate(AWKWARD_STEMS)
    ]


def all_cases() -> list[AudioCase]:
    return broken_cases() + legitimate_cases() + awkward_cases()


def write_folder_dataset(root: Path, cases: list[AudioCase], n_good: int = 4) -> dict:
    """``root/<class>/``: ``n_good`` plain clips and the cases, alternating between classes.

    Returns the dataset's spec. Each case lands at ``root/<class>/<file_name>``.
    """
    for k in range(n_good):
        folder = root / CLASSES[k % 2]
        folder.mkdir(parents=True, exist_ok=True)
        wav(music(shift=0.5 + k))(folder / f"good_{k}.wav")
    for k, case in enumerate(cases):
        folder = root / CLASSES[k % 2]
        folder.mkdir(parents=True, exist_ok=True)
        case.write(folder / case.file_name)
    return {"name": "bad_audio", "adapter": "folder", "root": str(root)}


def case_path(root: Path, cases: list[AudioCase], case: AudioCase) -> Path:
    position = [c.name for c in cases].index(case.name)
    return root / CLASSES[position % 2] / case.file_name


def stem(case: AudioCase) -> str:
    """The clip id the folder adapter gives the case's file."""
    return Path(case.file_name).stem


def no_command_ran(*folders: Path) -> bool:
    """No file ``pwned`` anywhere below ``folders``, nor in the working directory."""
    return not Path("pwned").exists() and not any(
        next(folder.rglob("pwned"), None) for folder in folders
    )


def real_mp3_cases(real_mp3: Path) -> list[AudioCase]:
    """Cuts of a real encoder's MP3 (read in place from ../shared/data; nothing is copied)."""
    mp3 = real_mp3.read_bytes()
    return [
        AudioCase("real MP3 cut to 400 bytes", "cut.mp3", raw(mp3[:400]), "index", "unreadable"),
        # the header survives and promises the full length: the frames tell
        AudioCase(
            "real MP3 cut to 3000 bytes",
            "cut_header_kept.mp3",
            raw(mp3[:3000]),
            "index",
            "the file was cut at about",
        ),
    ]


def with_broken_audio(root: Path, case: AudioCase) -> Case:
    """A labelled manifest dataset (ids a, b, c) whose clip ``b`` is the case's file."""
    rows = [["a", "audio/a.wav", "happy"], ["b", f"broken/{case.file_name}", "sad"]]
    spec = labelled(root, rows + [["c", "audio/c.wav", "sad"]])
    (root / "broken").mkdir(exist_ok=True)
    case.write(root / "broken" / case.file_name)
    return Case(spec, ["b"], case.reason, [case.file_name, case.reason])


def intact(case: AudioCase) -> AudioCase:
    """The case's file as it was before it broke: whole, in the format its name says."""
    mp3 = case.file_name.endswith(".mp3")
    write = raw(mp3_bytes()) if mp3 else wav(music(6.0))
    return AudioCase(f"intact {case.file_name}", case.file_name, write, "processed")


def decoded_until_it_stops(source: Path | bytes) -> float:
    """Seconds libsndfile decodes from a file (or its bytes) before it stops, silently or with
    an error."""
    decoded = 0
    with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source) as audio:
        try:
            while len(block := audio.read(4096)):
                decoded += len(block)
        except sf.LibsndfileError:
            pass
        return decoded / audio.samplerate
