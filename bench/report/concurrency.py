"""Cells that ran at the same time (``--executor ray``): on which node, beside how many others (measured
from the records' timed windows: ``bench/analysis/siblings.py``), on which cores and GPUs, what they
shared and whether they may have contended for the host.  Nothing when every cell ran alone."""

from __future__ import annotations

from bench.analysis.cells import variant_of, varying_of
from bench.analysis.siblings import MARKS, Overlaps, shares
from bench.report.format import head
from bench.report import markdown as md
from bench.records import latest_per_cell
from bench.report.context import Context

HEADING = "Cells run at the same time"


def _on_gpu(r) -> bool:
    return r.device.split(":")[0] != "cpu"


def _shared(r, found, legacy: list) -> str:
    """What the run shared with its siblings: its CPU cores, its GPU, or only the host.  A record that
    cannot say which ran beside it: what it shared with the others of its node that could have."""
    if found is None:
        found = [(s, None) for s in legacy if s is not r and s.node == r.node]
        if not found:
            return "no"
    together = [s for s, _ in found if shares(r, s)]
    if together:
        return "GPU" if _on_gpu(r) and any(_on_gpu(s) for s in together) else "CPU cores"
    return "host"


def _rows(ctx: Context) -> list[tuple]:
    """(record, its siblings or None for a record that cannot say, the beside column) of each ok run
    that ran beside others."""
    overlaps = Overlaps(ctx.records)
    rows = []
    for r in latest_per_cell(ctx.records):
        if r.status != "ok":
            continue
        found = overlaps.siblings(r)
        if found:
            rows.append((r, found, str(len(found)), overlaps.verdict(r).kind))
        elif found is None and r.sibling_cells:  # written before the windows were: the configured figure
            rows.append((r, None, f"up to {r.sibling_cells}", overlaps.verdict(r).kind))
    return rows


def lines(ctx: Context) -> list[str]:
    rows = _rows(ctx)
    if not rows:
        return []
    latest = latest_per_cell(ctx.records)
    ok = sum(r.status == "ok" for r in latest)
    # What else tells the cells apart (seed, fine-tuning, batch size, ...), as the device tables name it:
    # a column only when the report holds more than one.
    varying = varying_of(latest)
    variants = {id(r): variant_of(r.run, varying) for r, _, _, _ in rows}
    variant_head = " variant |" if any(variants.values()) else ""
    out = [f"## {HEADING}", "",
           f"{len(rows)} of {ok} ok cells ran beside other cells: another cell's process overlapped their timed "
           "steps on their node (found from each record's timed window on the wall clock; *beside* counts those "
           "cells). *shared*: what they shared with them.", "",
           *head(f"| loop | device | precision |{variant_head} rep | node | beside | CPU cores | GPUs | shared | verdict |")]
    legacy = [r for r, found, _, _ in rows if found is None]
    for r, found, beside, kind in rows:
        variant = f" {md.text(variants[id(r)])} |" if variant_head else ""
        out.append(f"| {md.text(r.loop)} | {md.text(r.device)} | {md.text(r.precision)} |{variant} {r.repeat} | "
                   f"{md.text((r.node or '')[:32])} | {beside} | {md.text(r.cpu_cores or '')} | "
                   f"{md.text(r.cuda_visible_devices or '-')} | {_shared(r, found, legacy)} | {MARKS.get(kind, kind)} |")
    return out + [""] + _contention(rows, legacy) + [""]


def _contention(rows: list[tuple], legacy: list) -> list[str]:
    """Where the cells may have contended for the host, in sentences."""
    said = []
    if legacy:
        said.append("Records written before the timed windows were recorded say only how many cells could run "
                    "at once (*up to*), not which did.")
    if any(not _on_gpu(r) and _shared(r, found, legacy) == "CPU cores" for r, found, _, _ in rows):
        said.append("CPU cells that shared cores with other cells contended for them: their step times measure the "
                    "sharing as much as the loop (⚠ shared in the device tables, never a speed claim).")
    if any(_on_gpu(r) for r, found, _, _ in rows if found):
        said.append("GPU cells on one node shared its host whatever their GPUs: its CPU cores (the thread that "
                    "launches each cell's kernels), its memory bandwidth and its PCIe links (each batch copied "
                    "to the GPU). A cell on a GPU of its own is not marked for it, but one bound by its host side "
                    "(small batches, CPU-side data work) may have been slowed.")
    if len({r.node for r, _, _, _ in rows}) > 1:
        said.append("The cells ran on several nodes: their time figures compare only within one node and GPU model "
                    "(the device sections show each group apart).")
    return [" ".join(said)] if said else []
