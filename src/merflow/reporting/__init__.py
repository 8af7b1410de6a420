"""The aggregate stage: runs of an experiment into tables and figures laid out like the papers'.

* :func:`aggregate` — one experiment's report folder (``results/<dataset>/<experiment>/report``):
  ``summary.csv``, Malik et al. 2017 Tables 1(a), 1(b) and 2 or Velankar et al.'s classification
  reports and confusion matrices (Markdown, CSV, LaTeX), PNG figures, and ``index.md``.
* :func:`report_index` — ``results/report/index.md``, linking every experiment's report.

Modules: :mod:`~merflow.reporting.runs` (reading runs, mean ± std over seeds),
:mod:`~merflow.reporting.malik` and :mod:`~merflow.reporting.velankar` (the papers' layouts),
:mod:`~merflow.reporting.published` (the papers' numbers), :mod:`~merflow.reporting.render`
(Markdown/CSV/LaTeX), :mod:`~merflow.reporting.figures` (PNG), :mod:`~merflow.reporting.index`.
"""

from __future__ import annotations

from merflow.reporting.aggregate import aggregate
from merflow.reporting.index import report_index

__all__ = ["aggregate", "report_index"]
