"""The package's import graph: without cycles, layered, and light where a command needs it.

The graph is read with ``ast`` from the source of every module of ``src/merflow``. An import
inside a function counts as an edge like one at module level: an import moved into a function
to dodge a cycle leaves the cycle in the design, and a module that needs another only when one
function runs still depends on it. Imports inside functions stay legitimate for start-up time
(torch, scikit-learn, a CLI command's stage) as long as they close no cycle. A module's import
of its own ancestor package is no edge: Python initializes a package before its submodules.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from workflow_utils import REPO

SRC = REPO / "src"


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted((SRC / "merflow").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The merflow modules ``name`` imports anywhere in its source (see the module docstring)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *filter(None, [node.module])])
            # `from pkg import sub` imports the module pkg.sub; `from mod import name`, mod
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {t for t in targets if t in known and t != name and t not in ancestors}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as the modules along it (first one repeated at the end), or []."""
    state: dict[str, str] = {}  # "open" while on the path being walked, then "done"
    path: list[str] = []

    def walk(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := walk(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return []

    for module in sorted(graph):
        if module not in state and (cycle := walk(module)):
            return cycle
    return []


def test_the_graph_reader_finds_a_cycle_closed_inside_a_function(tmp_path):
    """The reader itself: a cycle one side of which imports inside a function is found."""
    package = tmp_path / "merflow"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from merflow import b\n")
    (package / "b.py").write_text("def f():\n    from merflow.a import g\n")
    known = {"merflow", "merflow.a", "merflow.b"}
    graph = {
        name: imported_modules(name, package / f"{name.split('.')[-1]}.py", known)
        for name in ("merflow.a", "merflow.b")
    }
    assert find_cycle({**graph, "merflow": set()}) == ["merflow.a", "merflow.b", "merflow.a"]


def test_the_import_graph_of_merflow_is_acyclic():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_only_the_entry_points_read_the_workflow_configuration():
    """merflow.config (the workflow's configuration) sits on top: training, datasets, features
    and models check settings by merflow.schema, below it."""
    readers = {name for name, targets in import_graph().items() if "merflow.config" in targets}
    assert readers <= {"merflow.cli", "merflow.status"}, readers


def test_predict_does_not_import_the_workflow_configuration(tiny, tmp_path):
    """`merflow predict` with a run folder, whose recorded settings it checks, in a fresh
    process: the workflow's configuration module stays unimported."""
    song = tmp_path / "tone.wav"
    t = np.arange(3 * 22050) / 22050
    sf.write(song, 0.3 * np.sin(2 * np.pi * 440 * t), 22050)
    argv = ["predict", "--model", str(tiny / "runs/malik"), "--out", str(tmp_path / "out")]
    code = (
        "import sys; from merflow.cli import main; "
        f"assert main({[*argv, '--gpu', '0', str(song)]!r}) == 0; "
        "print('merflow.config' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
    assert (tmp_path / "out/windows/tone.csv").is_file()


def named_objects(text: str) -> set[str]:
    """The dotted ``merflow.…`` names a text gives (of modules, classes, functions)."""
    return {m.rstrip(".") for m in re.findall(r"(?<![\w./-])merflow(?:\.[A-Za-z_]\w*)+", text)}


def exists(dotted: str) -> bool:
    """Whether ``dotted`` names a module of the package or an attribute defined in one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            if not hasattr(value, part):
                return False
            value = getattr(value, part)
        return True
    return False


def test_every_merflow_name_in_docstrings_and_docs_exists():
    """Docstrings and pages that name a module, class or function that moved point nowhere."""
    texts = {page: page.read_text() for page in [*(REPO / "docs").glob("*.md")]}
    texts[REPO / "config" / "README.md"] = (REPO / "config" / "README.md").read_text()
    texts[SRC / "merflow" / "config.schema.yaml"] = (SRC / "merflow/config.schema.yaml").read_text()
    for path in module_files().values():
        nodes = ast.walk(ast.parse(path.read_text()))
        documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        texts[path] = "\n".join(
            ast.get_docstring(n) or "" for n in nodes if isinstance(n, documented)
        )
    missing = sorted(
        f"{path.relative_to(REPO)}: {name}"
        for path, text in texts.items()
        for name in named_objects(text)
        if not exists(name)
    )
    assert not missing, missing
