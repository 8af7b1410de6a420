"""Training recipes: one home for the defaults of each named way to train the papers' networks.

An experiment picks a recipe (``recipe: paper | merflow``); its ``train:`` keys override single
settings. :func:`recipe_settings` gives the defaults of a recipe for a task; every key is a field
of :class:`merflow.training.TrainConfig`, recorded resolved in each run's ``run.json``.

``paper``
    Exactly what the papers describe (and what merflow did before recipes existed): Adam at a
    constant learning rate, one crop per clip (Velankar: the centre 640 frames, ~15 s), no
    augmentation, early stopping on the validation loss. :data:`PAPER` is the defaults of
    :class:`~merflow.training.TrainConfig` plus the schedule of ``train_settings``.

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
    * ``freq_shift_bands`` (move each clip up or down by up to that many mel bands; 0 is off)
      and ``mixup`` (Beta(alpha, alpha) mixing of pairs in a batch; 0 is off), both measured
      and left off;
    * ``balanced_sampling`` (draw clips with probability inversely proportional to their
      class frequency), ``label_smoothing``;
    * AdamW (``optimizer``, ``weight_decay``; ``sgd``, Nesterov momentum, measured level with
      it and left off), a one-cycle-like schedule: linear warm-up over
      ``warmup_epochs`` then cosine decay to zero at ``epochs`` (``lr_schedule: cosine``);
      ``lr_cycles`` > 1 restarts the decay that many times (warm restarts), measured and left
      at 1;
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

from typing import Any

from merflow.errors import ConfigError

RECIPES = ("paper", "merflow")
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
        "mixup": 0.0,
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
