"""The registries are the only lists: the schema, the config checks, the workflow and the reports
follow them, and a new model or feature is one module plus one registry line (proved with toys).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_utils import REPO, SNAKEMAKE

from merflow import config
from merflow.datasets import ADAPTERS
from merflow.features.registry import FEATURES, configurable
from merflow.models.registry import MODELS


def test_the_schema_names_exactly_what_the_registries_hold():
    schema = config.load_schema()
    experiment = schema["properties"]["experiments"]["additionalProperties"]["properties"]
    assert experiment["models"]["items"]["enum"] == list(MODELS)
    one, fused = experiment["features"]["items"]["anyOf"]  # a feature, or views to fuse
    assert one["enum"] == fused["items"]["enum"] == list(FEATURES)
    dataset = schema["properties"]["datasets"]["additionalProperties"]["properties"]
    assert dataset["adapter"]["enum"] == list(ADAPTERS)
    sections = set(schema["properties"]["features"]["properties"]) - {"shards"}
    assert sections == set(configurable())
    raw = yaml.safe_load((REPO / "src/merflow/config.schema.yaml").read_text())
    listed = {value for enum in enums(raw) for value in enum}
    assert not listed & {*MODELS, *FEATURES, *ADAPTERS}  # no second list in the file itself


def test_the_cli_offers_exactly_the_imported_features_of_the_registry():
    from merflow import cli
    from merflow.cli_parser import build_parser
    from merflow.features.registry import imported

    commands = build_parser(cli)._subparsers._group_actions[0].choices
    (feature,) = [a for a in commands["import-embeddings"]._actions if a.dest == "feature"]
    assert feature.choices == imported()


def enums(node) -> list[list]:
    """Every ``enum`` list in a schema."""
    if isinstance(node, dict):
        found = [node["enum"]] if "enum" in node else []
        return found + [e for value in node.values() for e in enums(value)]
    if isinstance(node, list):
        return [e for value in node for e in enums(value)]
    return []


def test_a_model_is_refused_the_features_of_another_kind():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["experiments"]["malik"]["features"] = ["logmel"]
    with pytest.raises(config.ConfigError, match="takes windows features: logmel_500ms"):
        config.validate(cfg)


# --- a toy model and a toy feature, added as a user would -----------------------------------------

TOY_FEATURE = """
import numpy as np

from merflow.features.spec import FeatureSpec


def compute(clip, params):
    hop = int(params["window_s"] * clip.sample_rate)
    n = max(1, len(clip.signal) // hop)
    frames = clip.padded_to(n * hop)[: n * hop].reshape(n, hop)
    return np.sqrt((frames**2).mean(1, keepdims=True) + 1e-12).astype(np.float32)


RMS_500MS = FeatureSpec(
    name="rms_500ms", kind="windows", label="RMS energy",
    defaults={"sample_rate": 22050, "window_s": 0.5}, compute=compute,
    columns=lambda params: ["rms"],
)
"""
TOY_MODEL = """
import torch
from torch import nn

from merflow.models.network import Network
from merflow.models.options import POSITIVE_INT, Option

OPTIONS = {"hidden": Option(4, POSITIVE_INT)}


class Toy(Network):
    def __init__(self, n_features, n_outputs, hidden):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, n_outputs)
        )

    def forward(self, x):
        return self.net(x)

    def penalty(self):
        return torch.zeros(())


def build(*, n_features, n_outputs, hidden):
    return Toy(n_features, n_outputs, hidden)
"""
TOY_MODEL_LINE = (
    '    ModelSpec("toy", "regression", ("windows",), "toy network", '
    '"merflow.models.toy:build", "merflow.models.toy:OPTIONS"),\n'
)
TOY_FEATURE_LINE = '    "merflow.features.rms:RMS_500MS",\n'


def add_line(path: Path, after: str, line: str) -> None:
    text = path.read_text()
    assert after in text
    path.write_text(text.replace(after, after + line, 1))


@pytest.mark.slow
def test_a_toy_model_and_feature_need_one_module_and_one_line_each(tmp_path):
    copy = tmp_path / "merflow"
    for part in ("src", "workflow", "envs", "profiles"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "Snakefile", copy / "Snakefile")
    shutil.copy(REPO / "config.yaml", copy / "config.yaml")
    package = copy / "src/merflow"
    (package / "features/rms.py").write_text(TOY_FEATURE)
    (package / "models/toy.py").write_text(TOY_MODEL)
    add_line(package / "features/registry.py", "FEATURES: dict[str, FeatureSpec] = catalog(\n",
             TOY_FEATURE_LINE)  # fmt: skip
    add_line(package / "models/registry.py", "MODELS: dict[str, ModelSpec] = catalog(\n",
             TOY_MODEL_LINE)  # fmt: skip

    work = tmp_path / "work"
    work.mkdir()
    experiment = {
        "dataset": "tiny",
        "features": ["rms_500ms"],
        "models": ["toy", "ridge"],
        "seeds": [0],
        "split": {"method": "holdout", "test_fraction": 0.25, "val_fraction": 0.2},
        "train": {"epochs": 2, "batch_size": 4},
    }
    cfg = {
        "datasets": {"tiny": {"adapter": "synth", "n_clips": 12, "duration_s": 4.0, "seed": 1}},
        "features": {"shards": 1, "rms_500ms": {}},
        "experiments": {"toys": experiment},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(package.parent))
    env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{env['PATH']}"
    command = [str(SNAKEMAKE), "-s", str(copy / "Snakefile"), "-d", str(work)]
    command += ["--configfile", str(work / "config.yaml"), "--cores", "2"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-6000:] + "".join(
        p.read_text()[-2000:] for p in (work / "results/logs").rglob("*.log")
    )
    summary = pd.read_csv(work / "results/tiny/toys/report/summary.csv")
    assert {"toy", "ridge"} <= set(summary["model"])
    table2 = next((work / "results/tiny/toys/report").glob("*table2*.md")).read_text()
    assert "toy network [toy]" in table2 and "RMS energy [rms_500ms]" in table2


# --- the package ships what it reads at run time --------------------------------------------------


@pytest.mark.slow
def test_an_installed_wheel_carries_the_schema_and_runs_the_workflow(tmp_path):
    pip = [str(SNAKEMAKE.with_name("python")), "-m", "pip"]
    build = [
        *pip,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path),
        str(REPO),
    ]
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    wheel = next(tmp_path.glob("merflow-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        assert "merflow/config.schema.yaml" in archive.namelist()
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(site))  # the installed merflow, not the checkout's
    probe = [str(SNAKEMAKE.with_name("python")), "-c", "import merflow; print(merflow.__file__)"]
    where = subprocess.run(probe, capture_output=True, text=True, env=env, check=True)
    assert where.stdout.startswith(str(site))
    dry = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--cores", "1"]
    dry += ["--configfile", str(REPO / "config.yaml")]  # the demo
    out = subprocess.run(dry, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train" in out.stdout and "synthesize" in out.stdout
