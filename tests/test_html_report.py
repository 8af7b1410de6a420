"""`snakemake --report` on the tiny run: every table and figure is in it, captioned and filed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from workflow_utils import run_snakemake

pytestmark = pytest.mark.slow

REPORTED = (".md", ".csv", ".tex", ".png")


@pytest.fixture(scope="module")
def report_zip(tiny_run, tmp_path_factory) -> tuple[Path, zipfile.ZipFile]:
    target = tmp_path_factory.mktemp("report") / "report.zip"
    out = run_snakemake(tiny_run, "--report", str(target), configfile=tiny_run / "config.yaml")
    assert out.returncode == 0, out.stderr[-4000:]
    return tiny_run, zipfile.ZipFile(target)


def entry(html: str, key: str) -> dict:
    """The first JSON object under ``key`` in the page's data: a result file's record, or a
    category's subcategories with their files."""
    start = html.index(json.dumps(key) + ": {") + len(json.dumps(key)) + 2
    return json.JSONDecoder().raw_decode(html, start)[0]


def html_of(archive: zipfile.ZipFile) -> str:
    return archive.read("report/report.html").decode("utf-8")


def test_every_table_and_figure_is_in_the_report(report_zip):
    workdir, archive = report_zip
    folders = sorted((workdir / "results/tiny").glob("*/report"))
    assert [f.parent.name for f in folders] == ["malik", "velankar"]
    expected = [p for f in folders for p in f.iterdir() if p.suffix in REPORTED]
    expected.append(workdir / "results/report/index.md")
    packed = {name.rsplit("/", 1)[-1] for name in archive.namelist() if "/data/raw/" in name}
    assert {p.name for p in expected} <= packed
    html = html_of(archive)
    for path in expected:
        assert entry(html, str(path.relative_to(workdir)))["size"]


@pytest.mark.parametrize(
    ("file", "section", "caption"),
    [
        ("velankar/report/velankar_crnn_logmel_confusion.png", "Confusion matrices", "rows are"),
        ("velankar/report/velankar_crnn_logmel_curves.png", "Learning curves", "per epoch"),
        ("velankar/report/velankar_crnn_logmel_report.csv", "Tables", "here as CSV"),
        ("malik/report/malik_table2_logmel_500ms.tex", "Tables", "here as LaTeX"),
        ("malik/report/malik_best_run_songs.png", "Predictions (beyond the paper)", "three"),
        ("malik/report/summary.csv", "Data and left-out clips", "long format"),
        ("malik/report/index.md", "Overview", "The front page of experiment"),
    ],
)
def test_each_file_has_its_caption_and_place(report_zip, file, section, caption):
    _, archive = report_zip
    html = html_of(archive)
    record = entry(html, f"results/tiny/{file}")
    assert caption in " ".join(record["caption"].split())
    assert record["labels"]["file"] == Path(file).stem
    experiment = file.split("/")[0]
    sections = entry(html, f"{experiment} (tiny)")  # the page's tree: category -> subcategory
    assert f"results/tiny/{file}" in sections[section]
