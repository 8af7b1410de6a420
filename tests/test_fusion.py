"""Fused views (features: [[a, b]]): parse-time checks, no statistic fitted on the test part,
and early and late fusion through the workflow with the report naming views and fusion."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_utils import planned_jobs, run_snakemake

from merflow.config import experiment_runs, validate
from merflow.errors import ConfigError
from merflow.features.views import FUSION_DEFAULTS, join
from merflow.io import write_table
from merflow.learn.evaluation import predict
from merflow.learn.recipes import TrainConfig
from merflow.learn.training import train
from merflow.predict import load_model
from merflow.reporting.protocol import mean_interval, repeat_scores
from merflow.runs import BASELINE_FILE, NORM_FILE, load_arrays

CONFIG = {
    "datasets": {"tiny": {"adapter": "synth"}},
    "experiments": {
        "e": {
            "dataset": "tiny",
            "features": ["musicnn", ["musicnn", "essentia"]],
            "models": ["logistic", "majority"],
            "seeds": [0],
        }
    },
}


FUSED = ["musicnn", "essentia"]


def config_with(**experiment) -> dict:
    config = copy.deepcopy(CONFIG)
    config["experiments"]["e"].update(experiment)
    return config


def test_a_fused_entry_is_one_feature_named_by_its_views_for_the_heads_that_fuse():
    config = validate(config_with())
    runs = {(r.feature, r.model) for r in experiment_runs(config, "e", ["holdout-s0"])}
    assert runs == {
        ("musicnn", "logistic"),
        ("musicnn", "majority"),
        ("musicnn+essentia", "logistic"),  # majority fuses nothing
    }


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        ({"features": [["musicnn", "logmel"]]}, "only clip-level features can be fused"),
        (
            {
                "features": [["musicnn", "essentia"]],
                "models": ["mlp"],
                "fusion": {"method": "late"},
            },
            "which none of its models does; models that do: logistic, svm",
        ),
        ({"features": ["musicnn"], "fusion": {"method": "early"}}, "fuses no views"),
        ({"features": [["musicnn", "musicnn"]]}, "two or more different clip-level features"),
        ({"features": [["musicnn"]]}, "two or more different clip-level features"),
        ({"fusion": {"method": "middle"}}, "allowed values: 'early', 'late'"),
        ({"fusion": {"select": "pca"}}, "allowed values: 'anova', 'l1', None"),
    ],
)
def test_wrong_fusions_are_refused_at_parse_time_in_one_sentence(experiment, message):
    with pytest.raises(ConfigError, match="experiment|experiments.e") as error:
        validate(config_with(**experiment))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


# --- no statistic sees the test part -------------------------------------------------------------

N_CLIPS = 60


def write_views(folder, garble_test: bool) -> None:
    """Two clip-level views with class signal in a few columns; the test clips' values are
    garbled wildly when ``garble_test``."""
    rng = np.random.default_rng(0)
    labels = np.arange(N_CLIPS) % 3
    ids = [f"c{i:02d}" for i in range(N_CLIPS)]
    test = np.arange(N_CLIPS) >= 45
    for view, width in (("musicnn", 12), ("essentia", 8)):
        x = rng.normal(size=(N_CLIPS, width)).astype(np.float32)
        x[:, 0] += 2.0 * labels
        if garble_test:
            wild = np.random.default_rng(1).normal(size=(test.sum(), width))
            x[test] = 1e4 * wild + 5e3
        table = pd.DataFrame(x, columns=[f"v{j}" for j in range(width)]).assign(clip_id=ids)
        meta = {"feature": view, "kind": "clip", "columns": [f"v{j}" for j in range(width)]}
        write_table(table[["clip_id", *meta["columns"]]], folder / f"{view}.parquet", meta)
    join([folder / "musicnn.parquet", folder / "essentia.parquet"], folder / "fused.parquet")
    clips = pd.DataFrame({"clip_id": ids, "path": ids, "duration_s": 1.0, "sample_rate": 16000})
    clips = clips.assign(channels=1, group=ids, label=np.array(list("abc"))[labels])
    clips = clips.assign(fixed_split=None, shard=0)
    write_table(
        clips.astype({"sample_rate": "int32", "channels": "int16", "shard": "int16"}),
        folder / "clips.parquet",
        {"classes": list("abc")},
    )
    part = np.where(test, "test", np.where(np.arange(N_CLIPS) >= 39, "val", "train"))
    split = pd.DataFrame({"clip_id": ids, "group": ids, "split": part})
    write_table(split, folder / "split.parquet")


def run_config(folder, model: str, fusion: dict) -> TrainConfig:
    """A run of ``model`` on the views :func:`write_views` wrote into ``folder``."""
    paths = {f"{name}_path": str(folder / f"{name}.parquet") for name in ("clips", "split")}
    return TrainConfig.from_dict(
        {
            "model": model,
            "features_path": str(folder / "fused.parquet"),
            **paths,
            "fusion": {**FUSION_DEFAULTS, **fusion},
            "use_gpu": False,
        }
    )


FUSIONS = {
    "early_anova": ("logistic", {"method": "early", "select": "anova", "k": 5}),
    "early_l1": ("logistic", {"method": "early", "select": "l1", "l1_C": 0.5}),
    "late_stack_svm": ("svm", {"method": "late", "combine": "stack", "inner_folds": 3}),
    "late_stack": ("logistic", {"method": "late", "combine": "stack", "inner_folds": 3}),
}


@pytest.mark.parametrize("name", FUSIONS)
def test_the_test_part_changes_no_fitted_statistic(name, tmp_path):
    """z-scores, selection, heads and stacker fitted with the test rows garbled are the very
    same, and so are the training part's predictions."""
    model, fusion = FUSIONS[name]
    fitted = {}
    for garble in (False, True):
        folder = tmp_path / f"garbled{garble}"
        folder.mkdir()
        write_views(folder, garble)
        train(folder / "run", run_config(folder, model, fusion))
        table, _ = predict(folder / "run", part="train")
        fitted[garble] = (
            load_arrays(folder / "run" / NORM_FILE),
            load_arrays(folder / "run" / BASELINE_FILE),
            table,
        )
    (norm, weights, predicted), (norm_g, weights_g, predicted_g) = fitted[False], fitted[True]
    assert norm.keys() == norm_g.keys() and weights.keys() == weights_g.keys()
    for key in norm:
        np.testing.assert_array_equal(norm[key], norm_g[key])
    for key in weights:
        np.testing.assert_array_equal(weights[key], weights_g[key])
    pd.testing.assert_frame_equal(predicted, predicted_g)
    if fusion.get("select"):
        assert 0 < len(norm["keep"]) < 20  # a selection was made, and stored
    if fusion.get("combine") == "stack":
        assert "stack.coef" in weights


def test_predict_refuses_a_model_of_fused_views_in_one_sentence(tmp_path):
    write_views(tmp_path, garble_test=False)
    train(tmp_path / "run", run_config(tmp_path, "logistic", {"method": "late"}))
    with pytest.raises(ConfigError, match="fused views 'musicnn\\+essentia'.*one of its views"):
        load_model(tmp_path / "run")


def test_the_interval_over_repeats_is_the_student_t_interval_of_the_repeat_means():
    mean, half = mean_interval([0.70, 0.72, 0.74])
    assert mean == pytest.approx(0.72)
    assert half == pytest.approx(4.302653 * 0.02 / np.sqrt(3), rel=1e-5)  # t(0.975, 2)
    assert mean_interval([0.7]) == (0.7, None)


def test_a_repeat_is_one_draw_of_the_folds_for_one_seed():
    class Run:
        def __init__(self, split, seed, f1):
            self.split, self.seed = split, seed
            self.metrics = {"task": "regression", "valence": {"rmse": {"song_mean": f1}}}

    runs = [Run(f"kfold2-s0-r{r}-f{f}", 0, r + f / 10) for r in range(2) for f in range(2)]
    assert repeat_scores(runs, "valence_rmse_song") == pytest.approx([0.05, 1.05])


# --- through the workflow ------------------------------------------------------------------------

N_WORKFLOW_CLIPS = 24


@pytest.mark.slow
def test_early_and_late_fusion_run_through_the_workflow_and_are_reported(tmp_path):
    ids = [f"synth_{i:04d}" for i in range(N_WORKFLOW_CLIPS)]
    mine = pd.DataFrame(np.random.default_rng(0).normal(size=(len(ids), 6)), columns=list("abcdef"))
    write_table(mine.assign(clip_id=ids), tmp_path / "mine.parquet")
    common = {
        "dataset": "tiny",
        "seeds": [0],
        "split": {"method": "kfold", "n_folds": 2, "repeats": 2},
    }
    fused = ["embeddings", "compare_functionals"]
    config = {
        "datasets": {
            "tiny": {"adapter": "synth", "n_clips": N_WORKFLOW_CLIPS, "duration_s": 3.0, "seed": 1}
        },
        "features": {
            "shards": 1,
            "embeddings": {"path": str(tmp_path / "mine.parquet")},
            "compare_functionals": {"feature_set": "eGeMAPSv02"},
        },
        "experiments": {
            "early": {
                **common,
                "features": ["embeddings", fused],
                "models": ["logistic"],
                "fusion": {"method": "early", "select": "anova", "k": 10},
            },
            "late": {
                **common,
                "features": [fused],
                "models": ["logistic"],
                "fusion": {"method": "late", "combine": "stack", "inner_folds": 2},
            },
        },
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = run_snakemake(tmp_path, configfile=tmp_path / "c.yaml")
    assert out.returncode == 0, out.stderr[-4000:]
    report = tmp_path / "results/tiny"
    early = (report / "early/report/protocol.md").read_text()
    assert "embeddings + compare_functionals (early fusion, ANOVA top-10)" in early
    assert "| 2 |" in early  # two repeats
    late = (report / "late/report/velankar_models.md").read_text()
    assert "embeddings + compare_functionals (late fusion, stacked by a logistic)" in late

    # a change to one view re-runs the runs that fuse it, and nothing else
    config["features"]["compare_functionals"]["sample_rate"] = 16000
    jobs = planned_jobs(tmp_path, config)
    trained = [w for rule, w in jobs if rule == "fit_baseline"]
    assert len(trained) == 2 * 4  # two experiments' fused runs, 2 folds × 2 repeats each
    assert {w["feature"] for w in trained} == {"embeddings+compare_functionals"}
    assert {w["feature"] for rule, w in jobs if rule == "fuse_features"} == {
        "embeddings+compare_functionals"
    }
