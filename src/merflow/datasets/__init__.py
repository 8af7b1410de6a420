"""Dataset adapters: each reads one native layout and returns the same :class:`RawIndex`.

A new layout is one module with a ``read(spec: dict) -> RawIndex`` function and one entry in
:data:`ADAPTERS` (the config schema's list of adapters derives from it).
:func:`merflow.datasets.index.build_index` then probes the audio, validates the labels and
applies the bad-input policy, identically for every adapter.
"""

from dataclasses import dataclass

from merflow.datasets.base import RawIndex


@dataclass(frozen=True)
class Adapter:
    module: str  # defines ``read(spec) -> RawIndex``
    download: str  # what the data is and where to get it: the error for a missing root says it


ADAPTERS: dict[str, Adapter] = {
    "synth": Adapter("merflow.datasets.synth", "nothing: the workflow synthesizes it"),
    "deam": Adapter(
        "merflow.datasets.deam",
        "DEAM (MEMD_audio/ and annotations/) from the MediaEval Emotion in Music site",
    ),
    "folder": Adapter(
        "merflow.datasets.folder",
        "one sub-folder per class holding the audio files (root/<class>/*.mp3)",
    ),
    "manifest": Adapter(
        "merflow.datasets.manifest",
        "a CSV with a path and a label column (see `csv`, `path_column`, `label_column`)",
    ),
    "pmemo": Adapter(
        "merflow.datasets.pmemo", "PMEmo (chorus/ audio and annotations/) from the PMEmo release"
    ),
    "vgmidi": Adapter(
        "merflow.datasets.vgmidi",
        "VGMIDI (pieces.csv, dynamic_per_measure.csv and the pieces' audio rendered from MIDI)",
    ),
}

__all__ = ["ADAPTERS", "Adapter", "RawIndex"]
