"""The Markdown report: a pure function of records, its sections listed once in ``SECTIONS``."""

from __future__ import annotations

from pathlib import Path

from bench.records import Record
from bench.report.context import Context
from bench.report.plotting import pyplot
from bench.report import sections


def render(records: list[Record], out_md: Path) -> str:
    """Write the report (Markdown + PNGs beside it) and return the Markdown."""
    return render_with_context(records, out_md)[0]


def render_with_context(records: list[Record], out_md: Path) -> tuple[str, Context]:
    """The report written, and the context it was drawn from (its analysis and plots), for a caller
    that shows one section of it too (``bench explain``) without analysing the records again."""
    from bench.safeio import write_atomic

    out_md.parent.mkdir(parents=True, exist_ok=True)
    from bench.report.markdown import shown

    ctx = Context.of(shown(records), out_md)  # every record string a section shows is escaped once, here
    plt = pyplot()
    for section in sections.SECTIONS:
        if hasattr(section, "plots"):
            ctx.plots[section.__name__] = section.plots(ctx, plt)
    text = "\n".join(line for section in sections.SECTIONS for line in section.lines(ctx)).rstrip() + "\n"
    write_atomic(out_md, text)  # a full disk or a kill leaves the old report, never half of one
    return text, ctx


def section_text(ctx: Context, section) -> str:
    """One section of a rendered report alone (``bench explain`` prints its own)."""
    return "\n".join(section.lines(ctx)).rstrip() + "\n"
