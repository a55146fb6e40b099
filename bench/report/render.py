"""The Markdown report: a pure function of records, its sections listed once in ``SECTIONS``."""

from __future__ import annotations

from pathlib import Path

from bench.records import Record
from bench.report.context import Context
from bench.report.plotting import pyplot
from bench.report import sections


def render(records: list[Record], out_md: Path) -> str:
    """Write the report (Markdown + PNGs beside it) and return the Markdown."""
    from bench.safeio import write_atomic

    out_md.parent.mkdir(parents=True, exist_ok=True)
    ctx = Context.of(records, out_md)
    plt = pyplot()
    for section in sections.SECTIONS:
        if hasattr(section, "plots"):
            ctx.plots[section.__name__] = section.plots(ctx, plt)
    text = "\n".join(line for section in sections.SECTIONS for line in section.lines(ctx)).rstrip() + "\n"
    write_atomic(out_md, text)  # a full disk or a kill leaves the old report, never half of one
    return text


def section_text(records: list[Record], out_md: Path, section) -> str:
    """One section of the report alone (``bench explain`` prints its own), its plots beside ``out_md``."""
    ctx = Context.of(records, out_md)
    if hasattr(section, "plots"):
        ctx.plots[section.__name__] = section.plots(ctx, pyplot())
    return "\n".join(section.lines(ctx)).rstrip() + "\n"
