"""The ways merflow is deployed: rules that run without an activated venv, the conda env file,
the install constraints, the CLI's version and help.

``--sdm conda`` itself cannot run here (no conda channel is reachable from these machines): what
can be checked is its env file and the command each rule builds for it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from workflow_utils import REPO, SNAKEMAKE

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_conda_env_holds_exactly_the_packages_dependencies():
    env = yaml.safe_load((REPO / "envs/merflow.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == PYPROJECT["project"]["dependencies"]
    assert "python=3.11" in env["dependencies"] and not any(p.startswith("-e") for p in pip)


def test_the_constraints_pin_every_dependency_within_its_bounds():
    from packaging.requirements import Requirement

    pinned = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pinned[name.lower().replace("_", "-")] = version
    extras = [r for group in PYPROJECT["project"]["optional-dependencies"].values() for r in group]
    for text in [*PYPROJECT["project"]["dependencies"], *extras]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]}: {text}"
    assert pinned["torch"] == "2.13.0"  # the wheel these machines hold (no local label)


def test_bounds_not_pins_in_pyproject():
    for text in PYPROJECT["project"]["dependencies"]:
        assert "==" not in text, text


def rule_commands(workdir) -> list[str]:
    """The shell commands of a dry run of the demo in an empty folder (up to its index)."""
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-n", "-p", "--cores", "1"]
    out = subprocess.run(
        [*command, "--configfile", str(REPO / "config.yaml"), "--directory", str(workdir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line.removeprefix("Shell command:").strip() for line in out.stdout.splitlines()]
    return [line for line in lines if "-m merflow " in line]


def test_every_rule_calls_merflow_as_a_module_of_the_interpreter_on_the_path(tmp_path):
    """The workflow's shell prefix puts Snakemake's own interpreter first on the PATH (not under
    --sdm conda, where the env's is) and src/ on PYTHONPATH: the test below runs a rule so."""
    commands = rule_commands(tmp_path)
    assert commands and all(line.startswith("python3 -m merflow ") for line in commands)
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert "shell.prefix(" in common and "os.path.dirname(sys.executable)" in common


@pytest.mark.slow
def test_a_venv_snakemake_runs_rules_without_the_venv_on_the_path(tmp_path):
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": "/usr/bin:/bin"}
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "datasets": {"demo": {"adapter": "synth", "n_clips": 6, "duration_s": 2.0}},
                "experiments": {
                    "e": {
                        "dataset": "demo",
                        "features": ["logmel"],
                        "models": ["majority"],
                        "seeds": [0],
                    }  # fmt: skip
                },
            }
        )
    )
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
    command += ["results/demo/clips.parquet", "--cores", "1", "--configfile", str(config)]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "results/demo/clips.parquet").is_file()
    assert "command not found" not in out.stderr


def test_python_m_merflow_reports_its_version_and_revision():
    out = subprocess.run([sys.executable, "-m", "merflow", "--version"], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert re.match(r"merflow \d+\.\d+\.\d+( \(git [0-9a-f]{12}( with local changes)?\))?$",
                    out.stdout.strip())  # fmt: skip


def test_every_option_of_every_command_has_help():
    from merflow import cli
    from merflow.cli_parser import build_parser

    parser = build_parser(cli)
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    for name, sub in commands.items():
        for action in sub._actions:
            if action.dest not in ("help", "action") and not action.help:
                raise AssertionError(f"merflow {name} {action.option_strings}: no help")
        assert "``" not in (sub.description or ""), name


def test_the_licence_file_matches_pyproject():
    assert PYPROJECT["project"]["license"]["text"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


MACHINE_ROOTS = ("/" + "work/", "/" + "root/")  # spelt so that this file holds neither


def test_no_absolute_machine_path_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    for name in tracked.stdout.split():
        path = REPO / name
        if (
            path.suffix in {".py", ".smk", ".yaml", ".md", ".toml", ".txt", ".sh"}
            and path.is_file()
        ):
            text = path.read_text(errors="replace")
            assert not any(root in text for root in MACHINE_ROOTS), name
