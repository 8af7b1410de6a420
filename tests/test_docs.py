"""Code the docs give users to run does what the docs say."""

from __future__ import annotations

import re
import runpy
import shutil

import pandas as pd
from workflow_utils import REPO


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_emotify_label_recipe_gives_the_sample_labels(shared_data, tmp_path, monkeypatch):
    """config/README.md's lines of pandas, run on Emotify's data.csv, label the sample's tracks as
    the sample's own labels_3class.csv does."""
    text = (REPO / "config" / "README.md").read_text()
    section = text.split("## Emotify's 3-class labels", 1)[1].split("\n## ", 1)[0]
    (block,) = python_blocks(section)
    sample = shared_data / "emotify-sample"
    shutil.copy(sample / "data.csv", tmp_path)
    (tmp_path / "recipe.py").write_text(block)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "recipe.py"))

    written = pd.read_csv(tmp_path / "labels_3class.csv")
    expected = pd.read_csv(sample / "labels_3class.csv")
    assert list(written.columns) == ["track_id", "path", "label"]
    assert written["track_id"].is_unique
    both = expected.merge(written, on="track_id", suffixes=("_sample", ""))
    assert len(both) == len(expected) == 30
    assert (both["label"] == both["label_sample"]).all()
    # the sample keeps its audio under audio/; the download unpacks <genre>/<n>.mp3 at the root
    assert ("audio/" + both["path"]).tolist() == both["path_sample"].tolist()


def test_every_relative_link_in_the_docs_names_a_file_of_the_repository():
    pages = [
        REPO / "README.md",
        REPO / "config" / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
    ]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} → {target}")
    assert not broken, broken
