"""What every part of an experiment's report shares: where it goes, which data it is on, names.

:class:`ReportContext` carries the experiment, the dataset and the output folder to the section
builders (:mod:`merflow.reporting.malik`, :mod:`merflow.reporting.velankar`); each builder
returns :class:`Artifact` s, which the index lists with one line on what each shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from merflow.reporting.published import is_malik_dataset, is_velankar_dataset
from merflow.reporting.render import Table, write_table_files

OURS = "merflow"


@dataclass(frozen=True)
class Artifact:
    """One output for people: a table (``.md``, ``.csv``, ``.tex``), a figure or a data file.

    ``paths[0]`` is what the index links; a table's other formats follow it.
    """

    section: str
    title: str
    description: str
    paths: tuple[Path, ...]


@dataclass
class ReportContext:
    experiment: str
    spec: dict[str, Any]
    dataset: dict[str, Any]
    out_dir: Path
    artifacts: list[Artifact] = field(default_factory=list)

    @property
    def dataset_name(self) -> str:
        return str(self.dataset.get("name") or self.spec.get("dataset") or "?")

    @property
    def paper(self) -> str | None:
        return self.spec.get("paper")

    @property
    def is_malik_data(self) -> bool:
        return is_malik_dataset(self.dataset)

    @property
    def is_velankar_data(self) -> bool:
        return is_velankar_dataset(self.dataset)

    def dataset_description(self) -> str:
        """``synth (adapter synth)``, ``deam (adapter deam, split_year 2015)``."""
        details = [f"adapter {self.dataset.get('adapter', '?')}"]
        if self.dataset.get("split_year") is not None:
            details.append(f"split_year {self.dataset['split_year']}")
        return f"{self.dataset_name} ({', '.join(details)})"

    def not_comparable(self) -> str:
        return f"on {self.dataset_name}, not the paper's data: not comparable"

    def add_table(self, section: str, table: Table, description: str) -> None:
        paths = write_table_files(table, self.out_dir)
        self.artifacts.append(Artifact(section, table.title, description, tuple(paths)))

    def add_file(self, section: str, title: str, description: str, path: Path) -> None:
        """Record a figure or data file already written into ``out_dir``."""
        self.artifacts.append(Artifact(section, title, description, (path,)))
