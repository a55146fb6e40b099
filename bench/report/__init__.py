"""The Markdown report: a pure function of records (never called from a loop).

    python -m bench report OUT [-o reports/NAME.md] [--csv reports/NAME/cells.csv]

``render`` draws each section of ``sections.SECTIONS`` in order: one module per section (its
heading, its lines, its plots), all reading one ``context.Context`` computed once per report.  Every
number in it is computed from the records; nothing is measured here.  ``cells_csv`` is the flat
per-cell table, ``summary`` the table a run prints, ``compare`` the document ``bench compare`` writes.
"""

from bench.report.render import render, section_text
from bench.report.title import TITLE as REPORT_TITLE

__all__ = ["REPORT_TITLE", "render", "section_text"]
