"""Splits: song-level, stratified in proportion, seeded, and clear about what cannot be split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from merflow import splits
from merflow.errors import ConfigError, DatasetError
from merflow.io import read_metadata, write_table
from merflow.learn.data import read_split

VELANKAR_CLASSES = ("devotional", "romantic", "sad")


def single_clip_songs(class_sizes: dict[str, int]) -> pd.DataFrame:
    """A clips table with one clip per song (group = clip_id), ``class_sizes`` clips per class."""
    labels = [label for label, n in class_sizes.items() for _ in range(n)]
    ids = [f"clip{i:04d}" for i in range(len(labels))]
    return pd.DataFrame({"clip_id": ids, "group": ids, "label": labels})


def multi_clip_songs(seed: int, n_groups: int = 40, max_clips: int = 5) -> pd.DataFrame:
    """Songs of 1..max_clips clips each; every song has one of three labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = VELANKAR_CLASSES[g % 3]
        for c in range(rng.integers(1, max_clips + 1)):
            rows.append({"clip_id": f"s{g:03d}_c{c}", "group": f"song{g:03d}", "label": label})
    # Shuffle the rows: the result must not depend on the input order.
    return pd.DataFrame(rows).sample(frac=1, random_state=seed, ignore_index=True)


def sides_per_group(split: pd.DataFrame) -> pd.Series:
    return split.groupby("group")["split"].nunique()


def class_counts(split: pd.DataFrame, clips: pd.DataFrame, side: str) -> pd.Series:
    """Clips per label on one side of a split."""
    labels = split["clip_id"].map(clips.set_index("clip_id")["label"])
    return labels[split["split"] == side].value_counts()


# --- song-level -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["holdout", "kfold"])
@pytest.mark.parametrize("seed", range(5))
def test_no_group_crosses_sides_with_random_group_sizes(method, seed):
    clips = multi_clip_songs(seed)
    made = splits.make_splits(clips, None, method=method, seed=seed, n_folds=4)
    for split in made.values():
        assert sides_per_group(split).max() == 1
        assert list(split["clip_id"]) == sorted(clips["clip_id"])  # every clip once, sorted
        assert list(split.columns) == ["clip_id", "group", "split"]
        assert set(split["split"]) == {"train", "val", "test"}


def test_groups_mixing_labels_stay_together():
    clips = multi_clip_songs(seed=3)
    rng = np.random.default_rng(0)
    clips["label"] = rng.choice(VELANKAR_CLASSES, size=len(clips))  # labels mixed within songs
    made = splits.make_splits(clips, None, method="holdout", seed=1)
    assert sides_per_group(made["holdout-s1"]).max() == 1


def test_missing_groups_default_to_the_clip():
    clips = single_clip_songs({"a": 10, "b": 10})
    clips.loc[:4, "group"] = None
    split = splits.make_splits(clips, None, method="holdout", seed=0)["holdout-s0"]
    assert split.set_index("clip_id").loc["clip0000", "group"] == "clip0000"


# --- proportions ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_velankar_holdout_gives_46_test_songs_balanced_per_class(seed):
    clips = single_clip_songs(dict.fromkeys(VELANKAR_CLASSES, 46))
    split = splits.make_splits(clips, None, method="holdout", seed=seed)[f"holdout-s{seed}"]
    test = class_counts(split, clips, "test")
    assert test.sum() == 46
    assert all(abs(n - 46 / 3) <= 1 for n in test)  # 15 or 16 of each class
    # Validation comes from the 92 training songs: 15 % of them, balanced too.
    val = class_counts(split, clips, "val")
    assert val.sum() == round(0.15 * 92)
    assert all(abs(n - 0.15 * 92 / 3) <= 1 for n in val)


@pytest.mark.parametrize("fraction", [0.2, 0.25, 1 / 3, 0.5])
def test_holdout_per_class_share_is_within_one_clip_for_unequal_classes(fraction):
    sizes = {"happy": 40, "sad": 25, "angry": 11, "calm": 7}
    clips = single_clip_songs(sizes)
    for seed in range(4):
        split = splits.make_splits(clips, None, method="holdout", seed=seed, test_fraction=fraction)
        test = class_counts(split[f"holdout-s{seed}"], clips, "test")
        for label, n in sizes.items():
            assert abs(test.get(label, 0) - fraction * n) <= 1, (label, fraction)
        assert test.sum() == round(fraction * sum(sizes.values()))


def test_multi_clip_songs_get_roughly_the_test_fraction():
    clips = multi_clip_songs(seed=7, n_groups=90)
    split = splits.make_splits(clips, None, method="holdout", seed=0)["holdout-s0"]
    share = (split["split"] == "test").mean()
    assert abs(share - 1 / 3) < 0.05


def test_val_fraction_zero_gives_no_validation_part():
    clips = single_clip_songs({"a": 9, "b": 9})
    split = splits.make_splits(clips, None, method="holdout", seed=0, val_fraction=0)
    assert set(split["holdout-s0"]["split"]) == {"train", "test"}


# --- seeds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["holdout", "kfold"])
def test_same_seed_same_split_other_seed_other_split(method):
    clips = multi_clip_songs(seed=2)
    first = splits.make_splits(clips, None, method=method, seed=11)
    again = splits.make_splits(clips.iloc[::-1], None, method=method, seed=11)
    other = splits.make_splits(clips, None, method=method, seed=12)
    assert first.keys() == again.keys()
    for split_id in first:
        pd.testing.assert_frame_equal(first[split_id], again[split_id])
    assert any(
        not a["split"].equals(b["split"])
        for a, b in zip(first.values(), other.values(), strict=True)
    )


# --- k-fold -----------------------------------------------------------------------------------


def test_kfold_puts_every_group_in_exactly_one_test_fold():
    clips = multi_clip_songs(seed=4, n_groups=50)
    made = splits.make_splits(clips, None, method="kfold", seed=3, n_folds=5)
    assert list(made) == [f"kfold5-s3-f{i}" for i in range(5)]
    test_groups = [set(s.loc[s["split"] == "test", "group"]) for s in made.values()]
    assert sum(len(g) for g in test_groups) == clips["group"].nunique()
    assert set().union(*test_groups) == set(clips["group"])


def test_kfold_folds_are_balanced_per_class():
    clips = single_clip_songs(dict.fromkeys(VELANKAR_CLASSES, 46))
    for split in splits.make_splits(clips, None, method="kfold", seed=0, n_folds=5).values():
        test = class_counts(split, clips, "test")
        assert all(abs(n - 46 / 5) <= 1 for n in test)


# --- repeated k-fold --------------------------------------------------------------------------


def test_repeated_kfold_tests_every_clip_once_per_repeat_and_keeps_songs_whole():
    clips = multi_clip_songs(seed=5, n_groups=45)
    made = splits.make_splits(clips, None, method="kfold", seed=0, n_folds=3, repeats=4)
    assert list(made) == [f"kfold3-s0-r{r}-f{f}" for r in range(4) for f in range(3)]
    for repeat in range(4):
        folds = [made[f"kfold3-s0-r{repeat}-f{f}"] for f in range(3)]
        tested = pd.concat([s.loc[s["split"] == "test", "clip_id"] for s in folds])
        assert sorted(tested) == sorted(clips["clip_id"]), repeat  # each clip once
        for split in folds:
            assert sides_per_group(split).max() == 1
            assert set(split["split"]) == {"train", "val", "test"}
            # validation is a share of the non-test part, as with one repeat
            val, rest = (split["split"] == "val").sum(), (split["split"] != "test").sum()
            assert abs(val / rest - 0.15) < 0.06


def test_repeats_draw_new_folds_and_repeat_zero_is_the_single_kfold():
    clips = multi_clip_songs(seed=6, n_groups=45)
    single = splits.make_splits(clips, None, method="kfold", seed=3, n_folds=3)
    assert list(single) == [f"kfold3-s3-f{f}" for f in range(3)]  # the ids of before repeats
    repeated = splits.make_splits(clips, None, method="kfold", seed=3, n_folds=3, repeats=3)
    for fold in range(3):
        pd.testing.assert_frame_equal(
            repeated[f"kfold3-s3-r0-f{fold}"], single[f"kfold3-s3-f{fold}"]
        )

    def test_groups(repeat):
        return {
            frozenset(s.loc[s["split"] == "test", "group"])
            for split_id, s in repeated.items()
            if f"-r{repeat}-" in split_id
        }

    assert test_groups(1) != test_groups(0) and test_groups(2) != test_groups(1)
    again = splits.make_splits(clips.iloc[::-1], None, method="kfold", seed=3, n_folds=3, repeats=3)
    for split_id, frame in repeated.items():
        pd.testing.assert_frame_equal(frame, again[split_id])  # seeded: the same, byte for byte


def test_repeated_kfold_stays_stratified_in_every_repeat():
    clips = single_clip_songs(dict.fromkeys(VELANKAR_CLASSES, 46))
    made = splits.make_splits(clips, None, method="kfold", seed=1, n_folds=5, repeats=3)
    assert len(made) == 15
    for split in made.values():
        test = class_counts(split, clips, "test")
        assert all(abs(n - 46 / 5) <= 1 for n in test)
    targets_clips, targets, quadrant = regression_dataset({"Q1": 30, "Q2": 12, "Q3": 21, "Q4": 9})
    made = splits.make_splits(targets_clips, targets, method="kfold", seed=0, n_folds=3, repeats=2)
    for split in made.values():
        test = quadrant[split.loc[split["split"] == "test", "clip_id"]].value_counts()
        for q, n in quadrant.value_counts().items():
            assert abs(test.get(q, 0) - n / 3) <= 1, q


def test_repeats_are_for_kfold_and_at_least_one():
    clips = single_clip_songs({"a": 12, "b": 12})
    with pytest.raises(ConfigError, match=r"split\.repeats.*kfold"):
        splits.make_splits(clips, None, method="holdout", seed=0, repeats=2)
    with pytest.raises(ConfigError, match=r"split\.repeats"):
        splits.split_ids("kfold", 0, 3, repeats=0)
    assert splits.split_ids("holdout", 4, repeats=1) == ["holdout-s4"]


def test_the_config_takes_repeats_and_the_workflow_announces_their_ids():
    from merflow.config import split_settings, validate

    experiment = {
        "dataset": "synth",
        "features": ["logmel"],
        "models": ["majority"],
        "seeds": [0],
        "split": {"method": "kfold", "n_folds": 3, "repeats": 2},
    }
    config = {"datasets": {"synth": {"adapter": "synth"}}, "experiments": {"e": experiment}}
    settings = split_settings(validate(config)["experiments"]["e"])
    assert splits.split_ids(settings["method"], settings["seed"], 3, settings["repeats"])[-1] == (
        "kfold3-s0-r1-f2"
    )
    experiment["split"]["repeats"] = 0
    with pytest.raises(ConfigError, match="repeats"):
        validate(config)


# --- quadrant stratification ------------------------------------------------------------------


def regression_dataset(quadrant_sizes: dict[str, int], seed: int = 0):
    """Single-clip songs whose mean arousal/valence lies in a known quadrant, 10 windows each.

    The windows are noisy and cross zero, but the noise is centred, so each song's mean is
    exactly (±0.3, ±0.3): the quadrant is known by construction, not by the code under test.
    """
    signs = {"Q1": (1, 1), "Q2": (1, -1), "Q3": (-1, -1), "Q4": (-1, 1)}
    rng = np.random.default_rng(seed)
    clips, targets, truth = [], [], {}
    for quadrant, n in quadrant_sizes.items():
        for _ in range(n):
            clip_id = f"song{len(clips):03d}"
            clips.append({"clip_id": clip_id, "group": clip_id, "label": None})
            truth[clip_id] = quadrant
            noise = rng.normal(0, 0.4, size=(10, 2))
            values = 0.3 * np.array(signs[quadrant]) + noise - noise.mean(axis=0)
            for k, (arousal, valence) in enumerate(values):
                targets.append((clip_id, 0.5 * (k + 1), arousal, valence))
    targets = pd.DataFrame(targets, columns=["clip_id", "t", "arousal", "valence"])
    return pd.DataFrame(clips), targets, pd.Series(truth)


@pytest.mark.parametrize("seed", range(4))
def test_quadrant_stratification_balances_quadrants(seed):
    clips, targets, quadrant = regression_dataset({"Q1": 30, "Q2": 12, "Q3": 21, "Q4": 9})
    assert splits.resolve_stratify("auto", clips, targets) == "quadrant"
    split = splits.make_splits(clips, targets, method="holdout", seed=seed, test_fraction=0.25)
    split = split[f"holdout-s{seed}"]
    test = quadrant[split.loc[split["split"] == "test", "clip_id"]].value_counts()
    for q, n in quadrant.value_counts().items():
        assert abs(test.get(q, 0) - 0.25 * n) <= 1, q
    assert test.sum() == 18


def test_quadrant_stratification_needs_targets_for_every_clip():
    clips, targets, _ = regression_dataset({"Q1": 5, "Q3": 5})
    targets = targets[targets["clip_id"] != "song003"]
    with pytest.raises(DatasetError, match="song003"):
        splits.make_splits(clips, targets, method="holdout", seed=0, stratify="quadrant")


# --- fixed split ------------------------------------------------------------------------------


def mediaeval_like() -> pd.DataFrame:
    clips = single_clip_songs({"x": 40})
    clips["label"] = None
    clips["fixed_split"] = ["evaluation" if i % 4 == 0 else "development" for i in range(40)]
    return clips


def test_fixed_split_tests_on_the_official_evaluation_set():
    clips = mediaeval_like()
    made = splits.make_splits(clips, None, method="fixed", seed=5, val_fraction=0.2)
    assert list(made) == ["fixed-s5"]
    split = made["fixed-s5"].set_index("clip_id")
    official = clips.set_index("clip_id")["fixed_split"]
    assert (split["split"] == "test").equals(official == "evaluation")
    assert (split.loc[official == "development", "split"] == "val").sum() == 6  # 20 % of 30
    other_seed = splits.make_splits(clips, None, method="fixed", seed=6, val_fraction=0.2)
    other_seed = other_seed["fixed-s6"]
    assert not other_seed["split"].equals(made["fixed-s5"]["split"])  # val is redrawn


def test_fixed_split_errors_name_the_problem():
    clips = mediaeval_like()
    with pytest.raises(DatasetError, match=r"'development', 'evaluation'"):
        splits.make_splits(clips, None, method="fixed", seed=0, fixed_test="test")
    with pytest.raises(DatasetError, match="fixed_split"):
        splits.make_splits(clips.drop(columns="fixed_split"), None, method="fixed", seed=0)


def test_fixed_split_is_kept_as_published_when_a_group_straddles_it(caplog):
    clips = mediaeval_like()
    official_test = set(clips.loc[clips["fixed_split"] == "evaluation", "clip_id"])
    straddler = clips.loc[clips["fixed_split"] == "evaluation", "group"].iloc[0]
    dev_clip = clips.index[clips["fixed_split"] != "evaluation"][0]
    clips.loc[dev_clip, "group"] = straddler  # one artist in evaluation and development
    with caplog.at_level("WARNING"):
        made = splits.make_splits(clips, None, method="fixed", seed=0)["fixed-s0"]
    assert set(made.loc[made["split"] == "test", "clip_id"]) == official_test
    assert "both sides" in caplog.text


# --- clear errors -----------------------------------------------------------------------------


def test_unknown_method_is_a_config_error():
    clips = single_clip_songs({"a": 10})
    with pytest.raises(ConfigError, match="holdout, kfold, fixed"):
        splits.make_splits(clips, None, method="bootstrap", seed=0)
    with pytest.raises(ConfigError, match="bootstrap"):
        splits.split_ids("bootstrap", 0, 5)
    with pytest.raises(ConfigError, match="test_fraction"):
        splits.make_splits(clips, None, method="holdout", seed=0, test_fraction=1.5)


def test_class_too_small_for_the_sides_names_class_and_counts():
    clips = single_clip_songs({"happy": 20, "rare": 2})
    with pytest.raises(DatasetError, match=r"'rare' has 2.*at least 3") as err:
        splits.make_splits(clips, None, method="holdout", seed=0)
    assert "val_fraction" in str(err.value)
    # Without validation, two songs suffice: one for train, one for test.
    split = splits.make_splits(clips, None, method="holdout", seed=0, val_fraction=0)
    assert set(class_counts(split["holdout-s0"], clips, "test").index) == {"happy", "rare"}
    with pytest.raises(DatasetError, match=r"'rare' has 2.*at least 5.*n_folds"):
        splits.make_splits(clips, None, method="kfold", seed=0, n_folds=5)


def test_small_class_keeps_one_song_on_each_side():
    clips = single_clip_songs({"happy": 30, "rare": 3})
    for seed in range(5):
        split = splits.make_splits(clips, None, method="holdout", seed=seed, test_fraction=0.1)
        split = split[f"holdout-s{seed}"]
        for side in ("train", "val", "test"):
            assert class_counts(split, clips, side).get("rare", 0) == 1, side


def test_class_only_in_test_is_reported_when_not_stratified():
    clips = single_clip_songs({"common": 30, "rare": 1})
    outcomes = []
    for seed in range(20):
        try:
            split = splits.make_splits(clips, None, method="holdout", seed=seed, stratify="none")
        except DatasetError as err:
            assert "'rare'" in str(err) and "stratify" in str(err)
            outcomes.append("reported")
        else:
            assert class_counts(split[f"holdout-s{seed}"], clips, "test").get("rare", 0) == 0
            outcomes.append("fine")
    assert "reported" in outcomes and "fine" in outcomes


def test_label_stratification_refuses_unlabelled_clips():
    clips = single_clip_songs({"a": 10, "b": 10})
    clips.loc[3, "label"] = None
    with pytest.raises(DatasetError, match="clip0003"):
        splits.make_splits(clips, None, method="holdout", seed=0, stratify="label")


# --- ids, files, summary ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "n_folds", "repeats"),
    [("holdout", 5, 1), ("kfold", 3, 1), ("kfold", 3, 2), ("kfold", 2, 5), ("fixed", 5, 1)],
)
def test_split_ids_announce_what_make_splits_returns(method, n_folds, repeats):
    clips = mediaeval_like()
    clips["label"] = ["a", "b"] * 20
    made = splits.make_splits(clips, None, method=method, seed=2, n_folds=n_folds, repeats=repeats)
    assert list(made) == splits.split_ids(method, 2, n_folds, repeats)


def test_write_and_read_round_trip(tmp_path):
    clips = single_clip_songs({"a": 12, "b": 12})
    made = splits.make_splits(clips, None, method="kfold", seed=0, n_folds=3)
    paths = splits.write_splits(made, tmp_path, metadata={"settings": {"method": "kfold"}})
    assert [p.name for p in paths] == [f"kfold3-s0-f{i}.parquet" for i in range(3)]
    for path, (split_id, frame) in zip(paths, made.items(), strict=True):
        parts = read_split(path)
        for part in ("train", "val", "test"):
            assert parts[part] == frame.loc[frame["split"] == part, "clip_id"].tolist()
        meta = read_metadata(path)
        assert meta["split_id"] == split_id and meta["settings"] == {"method": "kfold"}
        assert sum(meta["n_clips"].values()) == 24
    write_table(pd.DataFrame({"clip_id": ["x"], "split": ["dev"]}), tmp_path / "bad.parquet")
    with pytest.raises(DatasetError, match=r"bad\.parquet: unknown split value\(s\) \['dev'\]"):
        read_split(tmp_path / "bad.parquet")
    write_table(pd.DataFrame({"clip_id": ["x"], "side": ["dev"]}), tmp_path / "bad.parquet")
    with pytest.raises(DatasetError, match=r"bad\.parquet: not a split table.*lacks.*split"):
        read_split(tmp_path / "bad.parquet")


def test_describe_counts_sides_and_classes():
    clips = single_clip_songs(dict.fromkeys(VELANKAR_CLASSES, 46))
    split = splits.make_splits(clips, None, method="holdout", seed=0)["holdout-s0"]
    text = splits.describe(split, clips)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    assert rows["test"][:2] == ["46", "46"]
    assert rows["total"] == ["138", "138", "46", "46", "46"]
