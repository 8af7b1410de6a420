"""One table, three files: Markdown for reading, CSV for computing, LaTeX for papers.

A :class:`Table` is a list of rows (plain dicts of numbers and text) and a list of
:class:`Column` s that say how each is shown. The CSV keeps the numbers (a ``mean ± std`` cell
becomes two columns, ``<key>_mean`` and ``<key>_std``); Markdown and LaTeX show the formatted
cells. The writers are a few lines of our own rather than pandas' ``to_markdown``/``to_latex``,
which need tabulate and jinja2 (not dependencies of merflow) and whose output changes between
versions: the same numbers must give byte-identical files.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from merflow.io import atomic_path

MISSING = "—"  # a cell with no value: undefined, not computed, or not published
PLUS_MINUS = "±"

ColumnKind = Literal["text", "pm", "number", "count"]


@dataclass(frozen=True)
class Column:
    """How one column is shown.

    ``kind``: ``text`` (as is), ``pm`` (``row[key + "_mean"] ± row[key + "_std"]``), ``number``
    (a float, ``digits`` decimals) or ``count`` (an integer with thousands separators). Any row
    may override the shown text of a cell with ``row[key + "_text"]`` (e.g. "≈17 k" for a
    parameter count the paper gives only roughly). ``group`` names a header spanning adjacent
    columns (the paper's "Evaluation" / "Development").
    """

    label: str
    key: str
    kind: ColumnKind = "text"
    digits: int = 3
    group: str = ""


@dataclass
class Table:
    """A titled table with a caption that says what the numbers are and where they come from."""

    name: str  # file stem
    title: str
    caption: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[list[str]]:
        """The formatted cells, row by row."""
        return [[format_cell(row, column) for column in self.columns] for row in self.rows]

    def numbers(self) -> pd.DataFrame:
        """The CSV view: one column per number (mean and std apart), no formatting."""
        records = []
        for row in self.rows:
            record: dict[str, Any] = {}
            for column in self.columns:
                if column.kind == "pm":
                    record[f"{column.key}_mean"] = row.get(f"{column.key}_mean")
                    record[f"{column.key}_std"] = row.get(f"{column.key}_std")
                else:
                    record[column.key] = row.get(column.key)
            records.append(record)
        keys = [
            k
            for c in self.columns
            for k in ((f"{c.key}_mean", f"{c.key}_std") if c.kind == "pm" else (c.key,))
        ]
        return pd.DataFrame.from_records(records, columns=keys)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: Any, digits: int = 3) -> str:
    return MISSING if is_missing(value) else f"{float(value):.{digits}f}"


def format_mean_std(mean: Any, std: Any, digits: int = 3) -> str:
    """``0.275 ± 0.004``; just the mean when there is no spread (one run); ``—`` without a mean."""
    if is_missing(mean):
        return MISSING
    if is_missing(std):
        return format_number(mean, digits)
    return f"{float(mean):.{digits}f} {PLUS_MINUS} {float(std):.{digits}f}"


def format_cell(row: dict[str, Any], column: Column) -> str:
    override = row.get(f"{column.key}_text")
    if override is not None:
        return str(override)
    if column.kind == "pm":
        return format_mean_std(
            row.get(f"{column.key}_mean"), row.get(f"{column.key}_std"), column.digits
        )
    value = row.get(column.key)
    if is_missing(value):
        return MISSING
    if column.kind == "number":
        return format_number(value, column.digits)
    if column.kind == "count":
        return f"{round(float(value)):,}"
    return str(value)


# --- writers -------------------------------------------------------------------------------------


def write_table_files(table: Table, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.tex`` into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{table.name}.{ext}" for ext in ("md", "csv", "tex")]
    write_text(paths[0], to_markdown(table))
    write_text(paths[1], to_csv(table))
    write_text(paths[2], to_latex(table))
    return paths


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically with ``\\n`` line ends (byte-identical on every platform)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    return Path(path)


def to_csv(table: Table) -> str:
    return table.numbers().to_csv(index=False, lineterminator="\n", float_format="%.10g")


def markdown_grid(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (pipes inside cells escaped)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("---" for _ in header) + "|"] + [line(r) for r in rows]
    )


def to_markdown(table: Table) -> str:
    header = [f"{c.group}: {c.label}" if c.group else c.label for c in table.columns]
    parts = [f"# {table.title}", table.caption, markdown_grid(header, table.cells())]
    parts += [f"* {note}" for note in table.notes]
    return "\n\n".join(parts) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    PLUS_MINUS: r"$\pm$",
    "≈": r"$\approx$",
    "×": r"$\times$",
    "²": r"\textsuperscript{2}",
    MISSING: "---",
    "–": "--",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _group_header(columns: list[Column]) -> tuple[str, str] | None:
    """The spanning header row and its rules (``\\cmidrule``), when any column has a group."""
    if not any(c.group for c in columns):
        return None
    spans: list[tuple[str, int, int]] = []  # (group, first column, last column), 1-based
    for i, column in enumerate(columns, start=1):
        if spans and spans[-1][0] == column.group:
            spans[-1] = (column.group, spans[-1][1], i)
        else:
            spans.append((column.group, i, i))
    cells, rules = [], []
    for group, first, last in spans:
        width = last - first + 1
        if group:
            cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(group)}}}")
            rules.append(rf"\cmidrule(lr){{{first}-{last}}}")
        else:
            cells += [""] * width
    return " & ".join(cells) + r" \\", " ".join(rules)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment with caption and label (``\\usepackage{booktabs}``)."""
    align = "".join("l" if c.kind == "text" else "r" for c in table.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}}}",
        rf"\label{{tab:{table.name.replace('_', '-')}}}",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
    ]
    group = _group_header(table.columns)
    if group is not None:
        lines += [group[0], group[1]]
    lines.append(" & ".join(latex_escape(c.label) for c in table.columns) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in table.cells()]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
