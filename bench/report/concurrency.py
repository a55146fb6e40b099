"""Cells that ran at the same time (``--executor ray``): on which node, beside how many others, on
which cores and GPUs, and whether they may have contended for the host.  Nothing when every cell
ran alone."""

from __future__ import annotations

from bench.report.format import head
from bench.report import markdown as md
from bench.records import latest_per_cell
from bench.report.context import Context

HEADING = "Cells run at the same time"


def _cores(r) -> set[str]:
    return {c for c in (r.cpu_cores or "").split(",") if c}


def lines(ctx: Context) -> list[str]:
    records = [r for r in latest_per_cell(ctx.records) if r.status == "ok"]
    together = [r for r in records if r.sibling_cells]
    if not together:
        return []
    out = [f"## {HEADING}", "",
           f"{len(together)} of {len(records)} ok cells ran beside other cells of this sweep. "
           "Their time figures are comparable with each other only on the same node and GPU model.", "",
           *head("| loop | device | precision | rep | node | beside | CPU cores | GPUs | host shared |")]
    for r in together:
        # A CPU cell whose cores overlap a sibling's on the same node shared them: its speed is not
        # its alone.  A GPU cell with its own GPUs still shares the host's CPUs, memory and PCIe.
        same_node = [s for s in together if s is not r and s.node == r.node]
        shared = "CPU cores" if r.device == "cpu" and any(_cores(r) & _cores(s) for s in same_node) else \
            ("host" if same_node else "no")
        out.append(f"| {md.text(r.loop)} | {md.text(r.device)} | {md.text(r.precision)} | {r.repeat} | "
                   f"{md.text((r.node or '')[:12])} | {r.sibling_cells} | {md.text(r.cpu_cores or '')} | "
                   f"{md.text(r.cuda_visible_devices or '-')} | {shared} |")
    if any(r.device == "cpu" for r in together):
        out += ["", "CPU cells that shared cores with their siblings contended for them: "
                "their step times measure the sharing as much as the loop."]
    return out + [""]
