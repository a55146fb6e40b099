"""Skipped and failed cells, with why."""

from __future__ import annotations

from bench.report.format import head
from bench.report import markdown as md
from bench.records import latest_per_cell
from bench.report.context import Context

HEADING = "Skipped and failed cells"


def lines(ctx: Context) -> list[str]:
    bad = [r for r in latest_per_cell(ctx.records) if r.status != "ok"]
    out = [f"## {HEADING}", ""]
    if not bad:
        return out + ["None: every cell ran and is ok.", ""]
    out += head("| loop | device | precision | status | reason |")
    for r in bad:
        out.append(f"| {md.text(r.loop)} | {md.text(r.device)} | {md.text(r.precision)} | "
                   f"{md.text(r.status)} | {md.text(r.reason or '')} |")
    return out + [""]
