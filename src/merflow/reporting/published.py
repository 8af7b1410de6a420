"""The papers' published numbers, copied from the papers' text (``../shared/papers``).

They stand beside ours only when our dataset *is* the paper's (:func:`is_malik_dataset`,
:func:`is_velankar_dataset`); on any other data a published number is not a comparison, and the
tables say which dataset they are on instead.

Malik et al. 2017, Tables 1(a), 1(b) and 2: RMSE, mean ± std over five runs with different
weight initializations; "Evaluation" is the MediaEval 2015 evaluation set, "Development" the
development (= training) set. Table 2 cites Li et al. [25] (an ensemble of six BLSTMs, about 12
million parameters) and gives CRNN_NB (about 17 k parameters; the branched CRNN about 30 k on the
baseline features, about 10 k on log-mel bands).

Velankar et al., Figs. 6 and 9: scikit-learn classification reports of the best-trained CRNN and
Parallel CNN-RNN on their 46-song test set (138 Hindi songs, 3 classes, 46 per class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MALIK_CITATION = "Malik et al. 2017 (published)"
LI_CITATION = "Li et al. [25] (cited by Malik et al. 2017)"
VELANKAR_CITATION = "Velankar et al. (published)"

MALIK_RUNS = 5  # "mean and standard deviation over five separate runs"
MeanStd = tuple[float, float | None]


@dataclass(frozen=True)
class RmseRow:
    """Valence, arousal and average RMSE, each (mean, std over runs)."""

    valence: MeanStd
    arousal: MeanStd
    average: MeanStd


# Table 1: sequence length -> (Evaluation, Development)
MALIK_TABLE1: dict[str, dict[int, tuple[RmseRow, RmseRow]]] = {
    "a": {  # 260 baseline features
        60: (
            RmseRow((0.275, 0.004), (0.210, 0.004), (0.242, 0.002)),
            RmseRow((0.065, 0.002), (0.055, 0.001), (0.060, 0.001)),
        ),
        30: (
            RmseRow((0.268, 0.004), (0.205, 0.004), (0.236, 0.001)),
            RmseRow((0.060, 0.001), (0.053, 0.002), (0.057, 0.001)),
        ),
        20: (
            RmseRow((0.268, 0.003), (0.202, 0.007), (0.235, 0.002)),
            RmseRow((0.059, 0.001), (0.050, 0.001), (0.055, 0.001)),
        ),
        10: (
            RmseRow((0.267, 0.003), (0.203, 0.006), (0.235, 0.003)),
            RmseRow((0.059, 0.002), (0.052, 0.001), (0.055, 0.001)),
        ),
    },
    "b": {  # log mel-band energy
        60: (
            RmseRow((0.276, 0.006), (0.252, 0.009), (0.264, 0.001)),
            RmseRow((0.083, 0.002), (0.073, 0.002), (0.078, 0.001)),
        ),
        30: (
            RmseRow((0.270, 0.003), (0.250, 0.004), (0.260, 0.001)),
            RmseRow((0.079, 0.001), (0.070, 0.001), (0.074, 0.001)),
        ),
        20: (
            RmseRow((0.270, 0.003), (0.248, 0.004), (0.259, 0.002)),
            RmseRow((0.079, 0.001), (0.069, 0.001), (0.074, 0.000)),
        ),
        10: (
            RmseRow((0.273, 0.008), (0.244, 0.006), (0.258, 0.002)),
            RmseRow((0.078, 0.000), (0.067, 0.001), (0.072, 0.000)),
        ),
    },
}


@dataclass(frozen=True)
class PublishedMethod:
    """A row of Malik et al.'s Table 2: evaluation RMSE and the parameter count from the text."""

    label: str
    source: str
    rmse: RmseRow
    n_parameters: int
    n_parameters_text: str


MALIK_TABLE2: tuple[PublishedMethod, ...] = (
    PublishedMethod(
        "Li et al. (ensemble of six BLSTMs)",
        LI_CITATION,
        RmseRow((0.285, None), (0.225, None), (0.255, None)),
        12_000_000,
        "≈12 M",
    ),
    PublishedMethod(
        "CRNN_NB",
        MALIK_CITATION,
        RmseRow((0.279, 0.004), (0.231, 0.003), (0.255, 0.002)),
        17_000,
        "≈17 k",
    ),
)

# Velankar et al.: per class (precision, recall, f1, support); accuracy; averages.
VELANKAR_REPORTS: dict[str, dict[str, Any]] = {
    "velankar_crnn": {
        "figures": {"curves": "Fig. 5", "report": "Fig. 6", "confusion": "Fig. 7"},
        "per_class": {
            "devotional": (0.47, 0.47, 0.47, 15),
            "sad": (0.65, 0.69, 0.67, 16),
            "romantic": (0.50, 0.47, 0.48, 15),
        },
        "accuracy": (0.54, 46),
        "macro_avg": (0.54, 0.54, 0.54, 46),
        "weighted_avg": (0.54, 0.54, 0.54, 46),
    },
    "velankar_parallel": {
        "figures": {"curves": "Fig. 8", "report": "Fig. 9", "confusion": "Fig. 10"},
        "per_class": {
            "devotional": (0.45, 0.60, 0.51, 15),
            "sad": (0.50, 0.44, 0.47, 16),
            "romantic": (0.58, 0.47, 0.52, 15),
        },
        "accuracy": (0.50, 46),
        "macro_avg": (0.51, 0.50, 0.50, 46),
        "weighted_avg": (0.51, 0.50, 0.50, 46),
    },
}
VELANKAR_DATASET = "138 Hindi songs, 3 classes (devotional, sad, romantic), 46-song test set"


def is_malik_dataset(dataset: dict[str, Any]) -> bool:
    """The paper's data: DEAM / MediaEval with the official 2015 development/evaluation split."""
    return dataset.get("adapter") == "deam" and dataset.get("split_year") == 2015


def is_velankar_dataset(dataset: dict[str, Any]) -> bool:
    """Velankar et al.'s own 138 songs are not public: only a dataset marked as theirs counts."""
    return dataset.get("paper_dataset") is True


def velankar_published(model: str, class_name: str) -> tuple | None:
    """The published (precision, recall, f1, support) of a class, matched case-insensitively."""
    report = VELANKAR_REPORTS.get(model)
    if report is None:
        return None
    return report["per_class"].get(class_name.strip().lower())
