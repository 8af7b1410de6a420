"""Training recipes: one home for the defaults of each named way to train the papers' networks.

An experiment picks a recipe (``recipe: paper | merflow``); its ``train:`` keys override single
settings. :func:`recipe_settings` gives the defaults of a recipe for a task; every key is a field
of :class:`TrainConfig`, recorded resolved in each run's ``run.json``.

``paper``
    Exactly what the papers describe (and what merflow did before recipes existed): Adam at a
    constant learning rate, one crop per clip (Velankar: the centre 640 frames, ~15 s), no
    augmentation, early stopping on the validation loss. :data:`PAPER` is the defaults of
    :class:`TrainConfig` plus the schedule of ``train_settings``.

``merflow``
    The same architectures, trained to use what small datasets have (docs/recipes.md measures
    each setting). Classification (Velankar):

    * ``train_crop: random`` -- every epoch a new random ``input_frames``-frame crop of each
      clip's valid frames (all of the clip is seen over the epochs);
    * ``eval_crop_hop`` -- at validation and test time the clip is cut into crops every
      ``eval_crop_hop`` frames (the last aligned to the clip's end) and the class probabilities
      are averaged over the crops;
    * SpecAugment-style masking (``time_masks`` x up to ``time_mask_frames`` frames,
      ``freq_masks`` x up to ``freq_mask_bands`` bands, set to the training mean) and a random
      gain of up to ``gain_db`` dB per clip;
    * ``balanced_sampling`` (draw clips with probability inversely proportional to their
      class frequency), ``label_smoothing``;
    * AdamW (``optimizer``, ``weight_decay``), a one-cycle-like schedule: linear warm-up over
      ``warmup_epochs`` then cosine decay to zero at ``epochs`` (``lr_schedule: cosine``);
    * early stopping and the best checkpoint on ``select_by: auto`` -- the validation
      macro-F1 when every class has at least ``score_min_val_per_class`` (5) validation clips,
      else the validation loss: on a handful of clips per class macro-F1 peaks early by chance
      (``select_by: score`` or ``loss`` force either);
    * ``checkpoint_ensemble`` -- the run predicts with the mean class probabilities of its 5
      best epochs on validation (one model in ``best.pt``), not with the best epoch alone.

    Regression (Malik): random chunk offsets every epoch with half-overlapping chunks (``hop``
    = half of ``seq_len``; ``hop_fraction``), AdamW with the cosine schedule, selection on RMSE
    (``select_by: score``),
    and a centred moving average of ``smooth_windows`` windows over each song's predictions.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from merflow.errors import ConfigError
from merflow.models.registry import spec
from merflow.schema import check_train_settings

RECIPES = ("paper", "merflow")
# Settings measured and left off (docs/recipes.md), at the value that meant "off".
RETIRED: dict[str, Any] = {"mixup": 0.0, "freq_shift_bands": 0, "lr_cycles": 1}


@dataclass
class TrainConfig:
    """Everything a training run depends on. ``seq_len=None`` trains on whole songs."""

    model: str
    features_path: str
    clips_path: str
    split_path: str
    targets_path: str | None = None
    model_options: dict = field(default_factory=dict)
    fusion: dict = field(default_factory=dict)  # fused views: merflow.features.views settings
    seq_len: int | None = None
    hop: int | None = None  # windows between training chunk starts (default seq_len)
    random_offset: bool = False  # shift each song's chunk grid randomly every epoch
    seed: int = 0
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 10
    use_gpu: bool = True
    threads: int | None = None
    # The recipe settings (documented above); these defaults are the paper recipe.
    recipe: str = "paper"
    hop_fraction: float | None = None  # hop = round(seq_len * hop_fraction) when hop is unset
    optimizer: str = "adam"  # "adam" | "adamw"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # "constant" | "cosine" (linear warm-up, cosine decay)
    warmup_epochs: float = 0.0
    select_by: str = "loss"  # "loss" | "score" (macro-F1 or RMSE) | "auto" (select_rule)
    score_min_val_per_class: int = 5  # select_by auto: macro-F1 only with this many per class
    input_frames: int | None = None  # frames the network sees; None: the table's n_frames
    train_crop: str = "center"  # "center" | "random": the crop of each clip trained on
    eval_crop_hop: int | None = None  # None: centre crop; else mean over crops every hop frames
    time_masks: int = 0
    time_mask_frames: int = 0
    freq_masks: int = 0
    freq_mask_bands: int = 0
    gain_db: float = 0.0
    balanced_sampling: bool = False
    label_smoothing: float = 0.0
    smooth_windows: int = 1  # centred moving average over predicted windows; 1 is off
    checkpoint_ensemble: int = 1  # predict with the mean of this many best epochs; 1 is off

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The settings of a run, checked by the config schema's rules for ``train:`` (one
        validator for the workflow and the CLI). Settings measured and retired (docs/recipes.md)
        are accepted at their "off" value, so runs recorded before they went still load."""
        values = dict(values)
        for name, off in RETIRED.items():
            if name in values and values.pop(name) != off:
                raise ConfigError(
                    f"training setting {name} was measured and removed from merflow "
                    "(docs/recipes.md); train without it"
                )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; allowed: {sorted(known)}")
        spec(values.get("model", ""))  # an unknown model is named before any table is read
        check_train_settings(values)
        return cls(**values)

    @property
    def chunk_hop(self) -> int | None:
        """Windows between training chunk starts: ``hop``, else from ``hop_fraction``."""
        if self.hop is not None or self.hop_fraction is None or self.seq_len is None:
            return self.hop
        return max(1, round(self.seq_len * self.hop_fraction))

    def to_dict(self) -> dict[str, Any]:
        return {
            k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in asdict(self).items()
        }

    def resume_key(self) -> dict[str, Any]:
        """The settings a checkpoint must share to be resumed: all but the stopping rule,
        the device and the thread count, which do not change what an epoch computes on the CPU."""
        ignored = {"epochs", "patience", "use_gpu", "threads"}
        if self.lr_schedule != "constant":  # the schedule's length changes every epoch's rate
            ignored.discard("epochs")
        return {k: v for k, v in self.to_dict().items() if k not in ignored}


TASKS = ("classification", "regression")

# The experiment-level schedule merflow always had; TrainConfig's own defaults cover the rest.
PAPER: dict[str, Any] = {
    "recipe": "paper",
    "epochs": 50,
    "patience": 10,
    "batch_size": 32,
    "lr": 1e-3,
}

# Velankar's input: the centre 640 frames (~15 s), also when the table stores whole clips.
PAPER_FRAMES: dict[str, Any] = {"input_frames": 640}

_MERFLOW_COMMON: dict[str, Any] = {
    "recipe": "merflow",
    "optimizer": "adamw",
    "weight_decay": 1e-2,
    "lr_schedule": "cosine",
    "warmup_epochs": 2,
}

MERFLOW: dict[str, dict[str, Any]] = {
    "classification": {
        **_MERFLOW_COMMON,
        "epochs": 40,
        "patience": 15,
        "batch_size": 16,
        "lr": 1e-3,
        "select_by": "auto",
        "input_frames": 640,
        "train_crop": "random",
        "eval_crop_hop": 320,
        "time_masks": 2,
        "time_mask_frames": 40,
        "freq_masks": 2,
        "freq_mask_bands": 12,
        "gain_db": 6.0,
        "balanced_sampling": True,
        "label_smoothing": 0.1,
        "checkpoint_ensemble": 5,
    },
    "regression": {
        **_MERFLOW_COMMON,
        "epochs": 60,
        "patience": 20,
        "batch_size": 32,
        "lr": 2e-3,
        "select_by": "score",
        "random_offset": True,
        "hop_fraction": 0.5,
        "smooth_windows": 5,
    },
}


def recipe_settings(recipe: str, task: str) -> dict[str, Any]:
    """The training settings of ``recipe`` for ``task`` (a fresh dict)."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if recipe == "paper":
        return dict(PAPER) | (PAPER_FRAMES if task == "classification" else {})
    return dict(MERFLOW[task])


def resolve(recipe: str, task: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Recipe defaults under the experiment's ``train:`` overrides (the overrides win)."""
    return recipe_settings(recipe, task) | dict(overrides or {}) | {"recipe": recipe}
