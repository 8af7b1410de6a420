"""Dataset adapters: each reads one native layout and returns the same :class:`RawIndex`.

A new layout is one module with a ``read(spec: dict) -> RawIndex`` function and one line in
:data:`ADAPTERS`. :func:`merflow.datasets.index.build_index` then probes the audio, validates the
labels and applies the bad-input policy, identically for every adapter.
"""

from merflow.datasets.base import RawIndex

ADAPTERS: dict[str, str] = {
    # name -> module that defines ``read(spec) -> RawIndex``
    "synth": "merflow.datasets.synth",
    "deam": "merflow.datasets.deam",
    "folder": "merflow.datasets.folder",
    "manifest": "merflow.datasets.manifest",
    "pmemo": "merflow.datasets.pmemo",
}

__all__ = ["ADAPTERS", "RawIndex"]
