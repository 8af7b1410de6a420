"""Song-level, stratified, seeded train/validation/test splits.

A split assigns every clip of the clips table to ``train``, ``val`` or ``test``. Three rules make
its test scores mean something:

* **Song-level.** All clips of one ``group`` (a song, or an artist) land on the same side, the
  validation part included, so that no song is heard in training and judged in testing.
* **Stratified.** Each stratum (a class label, or the arousal/valence quadrant of a song's mean
  target) is spread over the sides in proportion: with single-clip groups, the test part of every
  class is within one clip of ``test_fraction`` × the class size, and the test part as a whole
  is ``round(test_fraction × n_clips)`` (138 clips, 1/3 → 46 test songs, as in Velankar et al.).
* **Seeded.** The same seed gives the same split, byte for byte; another seed, another split.
  Repeated k-fold (``repeats``) draws new folds for each repeat from the same seed.

The test part is chosen first (holdout draw, k-fold fold, or the official ``fixed_split``), then
validation is drawn from what is left: ``val_fraction`` is a fraction of the *non-test* clips, and
the test part is never touched again. Each split is one Parquet table ``clip_id, group, split``
sorted by ``clip_id`` (see docs/tables.md); its id says how it was made (:func:`split_ids`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from merflow.errors import ConfigError, DatasetError
from merflow.io import write_table
from merflow.tables import SPLIT_PARTS

log = logging.getLogger(__name__)

SPLIT_METHODS = ("holdout", "kfold", "fixed")
STRATIFY_MODES = ("auto", "label", "quadrant", "none")

# A stratum's share is rounded to whole clips; this guards floor() against 15.999999... .
_EPS = 1e-9


def split_ids(method: str, seed: int, n_folds: int = 5, repeats: int = 1) -> list[str]:
    """The ids :func:`make_splits` will return, known before any data exists (Snakemake needs
    the output file names when it builds the job graph): ``holdout-s<seed>``, ``fixed-s<seed>``,
    ``kfold<k>-s<seed>-f<i>``, and with ``repeats`` > 1 ``kfold<k>-s<seed>-r<r>-f<i>``, repeat
    by repeat."""
    _check_method(method)
    _check_repeats(method, repeats)
    if method != "kfold":
        return [f"{method}-s{seed}"]
    if repeats == 1:
        return [f"kfold{n_folds}-s{seed}-f{fold}" for fold in range(n_folds)]
    return [
        f"kfold{n_folds}-s{seed}-r{repeat}-f{fold}"
        for repeat in range(repeats)
        for fold in range(n_folds)
    ]


def make_splits(
    clips: pd.DataFrame,
    targets: pd.DataFrame | None,
    *,
    method: str,
    seed: int,
    test_fraction: float = 1 / 3,
    val_fraction: float = 0.15,
    n_folds: int = 5,
    repeats: int = 1,
    fixed_test: str = "evaluation",
    stratify: str = "auto",
) -> dict[str, pd.DataFrame]:
    """Split the clips table; returns ``{split_id: DataFrame(clip_id, group, split)}``.

    ``method``: ``holdout`` (one stratified draw of ``test_fraction``), ``kfold`` (``n_folds``
    splits whose test parts cover every group exactly once, drawn ``repeats`` times: repeated
    k-fold) or ``fixed`` (test = the clips whose ``fixed_split`` equals ``fixed_test``, e.g. the
    MediaEval evaluation set). Each repeat shuffles the groups anew: repeat 0 is the split of
    ``repeats: 1`` (same folds, same validation parts), repeat ``r`` > 0 is seeded by
    ``(seed, r)``. ``stratify``:
    ``label``, ``quadrant`` (of each group's mean arousal/valence in ``targets``), ``none``, or
    ``auto`` (label when the clips have labels, else quadrant when there are targets, else none).
    """
    _check_settings(method, seed, test_fraction, val_fraction, n_folds, stratify)
    _check_repeats(method, repeats)
    clips = _clip_frame(clips)
    if method == "fixed":
        clips = _separate_straddling_groups(clips, fixed_test)
    mode = resolve_stratify(stratify, clips, targets)
    groups = _group_table(clips, targets, mode)
    with_val = val_fraction > 0
    if method == "holdout":
        _require_members(groups, 2 + with_val, "a holdout split needs one on each side", mode)
        rng = np.random.default_rng(seed)
        tests = [_draw(groups, test_fraction, rng, min_left=1 + with_val)]
        val_rngs = [rng]
    elif method == "kfold":
        _require_members(groups, n_folds, f"each of the {n_folds} test folds needs one", mode)
        tests, val_rngs = [], []
        for repeat in range(repeats):
            tests += _kfold_test_parts(clips, groups, mode, n_folds, _repeat_seed(seed, repeat))
            val_rngs += [
                np.random.default_rng([seed, fold] if repeat == 0 else [seed, repeat, fold])
                for fold in range(n_folds)
            ]
    else:
        tests = [_fixed_test_part(clips, fixed_test)]
        val_rngs = [np.random.default_rng(seed)]

    splits = {}
    made_ids = split_ids(method, seed, n_folds, repeats)
    for split_id, test, rng in zip(made_ids, tests, val_rngs, strict=True):
        rest = groups.drop(index=test)
        _require_members(rest, 1 + with_val, "the non-test songs must feed train and val", mode)
        val = _draw(rest, val_fraction, rng, min_left=1)
        frame = _assemble(clips, test, val)
        _check_no_class_only_in_test(frame, clips, split_id)
        splits[split_id] = frame
    return splits


def resolve_stratify(stratify: str, clips: pd.DataFrame, targets: pd.DataFrame | None) -> str:
    """``auto`` → ``label`` for labelled clips, else ``quadrant`` given targets, else ``none``."""
    if stratify != "auto":
        return stratify
    if "label" in clips and clips["label"].notna().any():
        return "label"
    if targets is not None and len(targets) > 0:
        return "quadrant"
    return "none"


def write_splits(
    splits: dict[str, pd.DataFrame], out_dir: str | os.PathLike, metadata: dict[str, Any]
) -> list[Path]:
    """Write each split to ``<out_dir>/<split_id>.parquet`` (atomically); returns the paths."""
    out_dir = Path(out_dir)
    paths = []
    for split_id, frame in splits.items():
        counts = frame["split"].value_counts().reindex(list(SPLIT_PARTS), fill_value=0)
        meta = {**metadata, "split_id": split_id, "n_clips": counts.to_dict()}
        paths.append(write_table(frame, out_dir / f"{split_id}.parquet", metadata=meta))
    return paths


def describe(split: pd.DataFrame, clips: pd.DataFrame) -> str:
    """Clips and groups per side, and clips per class where the clips have labels."""
    sides = pd.Categorical(split["split"], categories=list(SPLIT_PARTS))
    summary = pd.DataFrame(
        {
            "clips": split.groupby(sides, observed=False).size(),
            "groups": split.groupby(sides, observed=False)["group"].nunique(),
        }
    )
    if "label" in clips and clips["label"].notna().any():
        labels = split["clip_id"].map(clips.set_index("clip_id")["label"])
        summary = summary.join(pd.crosstab(sides, labels.fillna("<none>"), dropna=False))
    summary.loc["total"] = summary.sum()
    summary.index.name = "side"
    return summary.to_string()


# --- checking the inputs ----------------------------------------------------------------------


def _check_method(method: str) -> None:
    if method not in SPLIT_METHODS:
        raise ConfigError(
            f"split.method: unknown method {method!r}; choose one of {', '.join(SPLIT_METHODS)}"
        )


def _check_repeats(method: str, repeats: int) -> None:
    if not isinstance(repeats, int | np.integer) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"split.repeats: {repeats!r} must be an integer of at least 1")
    if repeats > 1 and method != "kfold":
        raise ConfigError(
            f"split.repeats: {repeats} repeats of a {method} split would be one split "
            f"{repeats} times; repeats apply to split.method: kfold (repeated k-fold)"
        )


def _check_settings(
    method: str, seed: int, test_fraction: float, val_fraction: float, n_folds: int, stratify: str
) -> None:
    _check_method(method)
    if stratify not in STRATIFY_MODES:
        raise ConfigError(
            f"split.stratify: unknown mode {stratify!r}; choose one of {', '.join(STRATIFY_MODES)}"
        )
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"split.seed: {seed!r} is not a non-negative integer")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"split.test_fraction: {test_fraction} must lie strictly between 0 and 1")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"split.val_fraction: {val_fraction} must lie in [0, 1)")
    if method == "kfold" and (not isinstance(n_folds, int | np.integer) or n_folds < 2):
        raise ConfigError(f"split.n_folds: {n_folds!r} must be an integer of at least 2")


def _clip_frame(clips: pd.DataFrame) -> pd.DataFrame:
    """The clips with a string ``group`` for every row (a missing group means the clip alone)."""
    if "clip_id" not in clips:
        raise DatasetError("clips table has no 'clip_id' column; re-run the index stage")
    duplicated = clips["clip_id"][clips["clip_id"].duplicated()]
    if len(duplicated):
        raise DatasetError(
            f"clips table has duplicate clip_id(s) {sorted(duplicated.unique())[:5]}; "
            "clip ids must be unique within a dataset — fix the adapter or the manifest"
        )
    if len(clips) == 0:
        raise DatasetError("clips table is empty: nothing to split; check the index stage's log")
    clips = clips.copy()
    group = clips["group"] if "group" in clips else pd.Series(pd.NA, index=clips.index)
    clips["group"] = group.fillna(clips["clip_id"]).astype(str)
    clips["clip_id"] = clips["clip_id"].astype(str)
    return clips


# --- strata -----------------------------------------------------------------------------------


def _group_table(clips: pd.DataFrame, targets: pd.DataFrame | None, mode: str) -> pd.DataFrame:
    """One row a group (index, sorted): ``n_clips`` and the ``stratum`` it is balanced by."""
    sizes = clips.groupby("group", sort=True).size().rename("n_clips")
    if mode == "label":
        stratum = _group_labels(clips)
    elif mode == "quadrant":
        stratum = _group_quadrants(clips, targets)
    else:
        stratum = pd.Series("all", index=sizes.index)
    return pd.DataFrame({"n_clips": sizes, "stratum": stratum.reindex(sizes.index)})


def _group_labels(clips: pd.DataFrame) -> pd.Series:
    """Each group's most frequent label (ties: alphabetically first): groups may mix labels."""
    has_label = clips["label"].notna() if "label" in clips else pd.Series(False, clips.index)
    if not has_label.all():
        unlabelled = clips.loc[~has_label, "clip_id"]
        raise DatasetError(
            f"stratify 'label': {len(unlabelled)} clip(s) have no label "
            f"(e.g. {list(unlabelled[:3])}); give every clip a label, or set split.stratify: none"
        )
    counts = clips.groupby(["group", "label"], sort=True).size().rename("n").reset_index()
    counts = counts.sort_values(["group", "n", "label"], ascending=[True, False, True])
    return counts.drop_duplicates("group").set_index("group")["label"].astype(str)


def _group_quadrants(clips: pd.DataFrame, targets: pd.DataFrame | None) -> pd.Series:
    """The arousal/valence quadrant of each group's mean target (Russell's circumplex, as in 4Q):
    Q1 = A+V+, Q2 = A+V-, Q3 = A-V-, Q4 = A-V+; zero counts as positive."""
    if targets is None or len(targets) == 0:
        raise DatasetError(
            "stratify 'quadrant' needs the targets table (clip_id, t, arousal, valence); "
            "pass it, or set split.stratify: label or none"
        )
    means = targets.groupby("clip_id")[["arousal", "valence"]].mean()
    clip_means = means.reindex(clips["clip_id"].to_numpy())
    missing = clip_means.index[clip_means.isna().any(axis=1)]
    if len(missing):
        raise DatasetError(
            f"stratify 'quadrant': {len(missing)} clip(s) have no arousal/valence targets "
            f"(e.g. {list(missing[:3])}); the index stage should have quarantined them — "
            "re-run it, or set split.stratify: none"
        )
    clip_means["group"] = clips["group"].to_numpy()
    group_means = clip_means.groupby("group", sort=True).mean()
    high_arousal = group_means["arousal"] >= 0
    high_valence = group_means["valence"] >= 0
    quadrant = np.select(
        [high_arousal & high_valence, high_arousal, ~high_valence], ["Q1", "Q2", "Q3"], "Q4"
    )
    return pd.Series(quadrant, index=group_means.index)


def _require_members(groups: pd.DataFrame, needed: int, why: str, mode: str) -> None:
    """Fail when a class has fewer groups than the sides need. Quadrants and the single stratum
    of ``none`` are balancing aids, not classes a model must learn: they are split best-effort."""
    if mode != "label":
        return
    per_class = groups.groupby("stratum").size()
    short = per_class[per_class < needed]
    if len(short):
        listed = ", ".join(f"{label!r} has {n}" for label, n in short.items())
        raise DatasetError(
            f"too few songs (groups) per class: {listed}, but at least {needed} are needed "
            f"({why}). Add songs of that class, merge or drop it; or lower split.n_folds, "
            "set split.val_fraction: 0, or use split.method: holdout instead of kfold"
        )


# --- choosing groups --------------------------------------------------------------------------


def _draw(
    groups: pd.DataFrame, fraction: float, rng: np.random.Generator, min_left: int
) -> pd.Index:
    """Draw whole groups holding ``fraction`` of the clips, stratum by stratum.

    Each stratum's share is apportioned by largest remainder, so per stratum it is within one
    clip of ``fraction`` × its size and the total is ``round(fraction × n_clips)``. Where a
    stratum has enough groups, at least one is drawn and ``min_left`` stay behind.
    """
    if fraction == 0:
        return pd.Index([], name="group")
    strata = groups.groupby("stratum", sort=True)
    shares = _apportion(strata["n_clips"].sum(), fraction, rng)
    drawn: list[str] = []
    for stratum, members in strata:
        order = members.index[rng.permutation(len(members))]
        sizes = members["n_clips"].reindex(order)
        picked = _fill(sizes, shares[stratum])
        drawn += _keep_both_sides(sizes, picked, min_left)
    return pd.Index(sorted(drawn), name="group")


def _apportion(counts: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
    """Whole-clip shares of ``fraction`` per stratum summing to ``round(fraction × total)``
    (Hamilton's largest-remainder method; ties between equal remainders are broken by ``rng``)."""
    quotas = counts.to_numpy(dtype=float) * fraction
    shares = np.floor(quotas + _EPS).astype(int)
    left = int(math.floor(quotas.sum() + 0.5)) - int(shares.sum())
    remainders = quotas - shares
    order = np.lexsort((rng.random(len(quotas)), -remainders))
    shares[order[:left]] += 1
    return pd.Series(shares, index=counts.index)


def _fill(sizes: pd.Series, target: int) -> list[str]:
    """Groups (in the given, shuffled order) whose clips add up to about ``target``: take each
    that still fits, then the one remaining group that brings the total closest, if any does."""
    picked, total = [], 0
    for group, size in sizes.items():
        if total + size <= target:
            picked.append(group)
            total += size
    rest = sizes.drop(index=picked)
    if total < target and len(rest):
        closest = (total + rest - target).abs().idxmin()
        if abs(total + rest[closest] - target) < target - total:
            picked.append(closest)
    return picked


def _keep_both_sides(sizes: pd.Series, picked: list[str], min_left: int) -> list[str]:
    """Move the smallest groups so that a stratum keeps one group drawn and ``min_left`` not
    drawn, where it has that many: no class vanishes from a side because of rounding."""
    if len(sizes) < 1 + min_left:
        return picked
    picked = list(picked)
    if not picked:
        picked.append(sizes.idxmin())
    while len(sizes) - len(picked) < min_left:
        picked.remove(sizes[picked].idxmin())
    return picked


def _repeat_seed(seed: int, repeat: int) -> int:
    """The shuffle seed of one repeat of k-fold: ``seed`` itself for repeat 0 (the folds of
    ``repeats: 1``), else a 32-bit draw of the seed sequence ``(seed, repeat)``."""
    if repeat == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), repeat]).generate_state(1)[0])


def _kfold_test_parts(
    clips: pd.DataFrame, groups: pd.DataFrame, mode: str, n_folds: int, seed: int
) -> list[pd.Index]:
    """The test groups of each fold: scikit-learn's StratifiedGroupKFold over the clips,
    stratified by clip label (or by the group's stratum), every group in exactly one fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    if len(groups) < n_folds:
        raise DatasetError(
            f"k-fold with n_folds={n_folds} needs at least {n_folds} songs (groups), the clips "
            f"table has {len(groups)}; lower split.n_folds or use split.method: holdout"
        )
    strata = clips["label"] if mode == "label" else clips["group"].map(groups["stratum"])
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [
        pd.Index(sorted(clips["group"].iloc[test].unique()), name="group")
        for _, test in folds.split(clips, strata.astype(str), clips["group"])
    ]


def _fixed_test_part(clips: pd.DataFrame, fixed_test: str) -> pd.Index:
    """The groups of the official test set (``fixed_split == fixed_test``)."""
    if "fixed_split" not in clips or clips["fixed_split"].isna().all():
        raise DatasetError(
            "split.method 'fixed' needs the clips table's 'fixed_split' column, and it is "
            "empty for this dataset; use split.method: holdout or kfold"
        )
    is_test = (clips["fixed_split"] == fixed_test).fillna(False).astype(bool)
    if not is_test.any():
        present = sorted(clips["fixed_split"].dropna().astype(str).unique())
        raise DatasetError(
            f"split.fixed_test {fixed_test!r}: no clip has that fixed_split; the values present "
            f"are {present} — set split.fixed_test to one of them"
        )
    return pd.Index(sorted(set(clips.loc[is_test, "group"])), name="group")


def _separate_straddling_groups(clips: pd.DataFrame, fixed_test: str) -> pd.DataFrame:
    """An official split is authoritative even where it puts one artist on both sides (MediaEval
    2013 does, for 52 artists): such groups are split at the official line, and logged, so that
    test stays exactly the official set while validation is still drawn group-wise."""
    if "fixed_split" not in clips:
        return clips
    is_test = (clips["fixed_split"] == fixed_test).fillna(False).astype(bool)
    straddling = sorted(set(clips.loc[is_test, "group"]) & set(clips.loc[~is_test, "group"]))
    if not straddling:
        return clips
    log.warning(
        "the official split puts %d group(s) on both sides (e.g. %s); kept as published: their "
        "test clips form separate groups",
        len(straddling),
        ", ".join(map(str, straddling[:3])),
    )
    clips = clips.copy()
    moved = is_test & clips["group"].isin(straddling)
    clips.loc[moved, "group"] = clips.loc[moved, "group"].astype(str) + f"@{fixed_test}"
    return clips


# --- the result -------------------------------------------------------------------------------


def _assemble(clips: pd.DataFrame, test: pd.Index, val: pd.Index) -> pd.DataFrame:
    side = pd.Series("train", index=clips.index, dtype=str)
    side[clips["group"].isin(val)] = "val"
    side[clips["group"].isin(test)] = "test"
    frame = pd.DataFrame({"clip_id": clips["clip_id"], "group": clips["group"], "split": side})
    return frame.sort_values("clip_id", ignore_index=True)


def _check_no_class_only_in_test(split: pd.DataFrame, clips: pd.DataFrame, split_id: str) -> None:
    """A class that appears in test but never in train cannot be learnt: refuse the split."""
    if "label" not in clips or clips["label"].isna().all():
        return
    labels = split["clip_id"].map(clips.set_index("clip_id")["label"])
    test_only = sorted(
        set(labels[split["split"] == "test"].dropna())
        - set(labels[split["split"] == "train"].dropna())
    )
    if test_only:
        raise DatasetError(
            f"split {split_id}: class(es) {test_only} appear in test but not in train, so no "
            "model can learn them; stratify by label (split.stratify: label), add songs of "
            "those classes, or drop them"
        )
