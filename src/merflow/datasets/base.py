"""What every adapter returns, before audio is probed and labels are validated."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

CLIP_COLUMNS = ("clip_id", "path", "group", "label", "fixed_split")
TARGET_COLUMNS = ("clip_id", "t", "arousal", "valence")
QUARANTINE_COLUMNS = ("clip_id", "path", "stage", "reason")


@dataclass
class RawIndex:
    """An adapter's reading of a dataset.

    ``clips`` has the columns of :data:`CLIP_COLUMNS` (``label``, ``group`` and ``fixed_split``
    may be missing or null); ``targets`` has :data:`TARGET_COLUMNS` (``t`` = end of the 500 ms
    window, seconds from the start of the audio file) or is ``None`` for a dataset without
    time-continuous labels. ``quarantine`` lists what the adapter itself had to leave out (a label
    row without audio, audio without a label), each with a reason.
    """

    clips: pd.DataFrame
    targets: pd.DataFrame | None = None
    quarantine: list[dict] = field(default_factory=list)
    classes: list[str] | None = None

    def exclude(self, clip_id: str, path: str | None, reason: str) -> None:
        self.quarantine.append(
            {"clip_id": str(clip_id), "path": path, "stage": "index", "reason": reason}
        )


def numbers_or_text(cells: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """Cells read as numbers, except text that is not one: it stays as written, so that the
    index stage can name it (``'high' is not a number``) instead of calling it missing."""
    if isinstance(cells, pd.Series):
        numbers = pd.to_numeric(cells, errors="coerce")
    else:
        numbers = cells.apply(pd.to_numeric, errors="coerce")
    return numbers.where(numbers.notna() | cells.isna(), cells)
