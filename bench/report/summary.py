"""The table a run prints when it ends: the latest record of each cell, the registry's summary columns."""

from __future__ import annotations

from bench.analysis.cells import CellStats, variant_of, varying_of
from bench.analysis.columns import SUMMARY, shown_in
from bench.analysis.siblings import FOREIGN, SIBLINGS, UNJUDGED, Overlaps, recorded
from bench.records import Record, latest_per_cell


def _status(r: Record, overlaps: Overlaps) -> str:
    verdict = overlaps.verdict(r) if r.status == "ok" else recorded(r)
    if verdict.kind == FOREIGN:
        return r.status + " (busy machine)"
    if verdict.kind == SIBLINGS:
        return r.status + f" (shared with {verdict.shared} sibling cell{'s' if verdict.shared != 1 else ''})"
    if verdict.kind == UNJUDGED:  # null with a why: too short to judge (not "quiet")
        return r.status + " (busy: not judged)"
    return r.status


def summary_table(records: list[Record]) -> str:
    from tabulate import tabulate

    latest = latest_per_cell(records)
    seeds = len({r.seed for r in latest}) > 1  # a --seeds sweep: which seed each row is
    # What else tells the rows apart (--finetune full,lora, a batch-size sweep, a preset beside tutorial).
    varying = varying_of([r for r in latest if r.config]) - {"seed"}
    columns = shown_in(SUMMARY)
    rows = []
    overlaps = Overlaps(records)
    for r in latest:
        one = CellStats([r], set())
        variant = [variant_of(r.run, varying) if r.config else ""] if varying else []
        rows.append([r.loop, r.device, r.precision, *variant, *([r.seed] if seeds else []), r.repeat,
                     _status(r, overlaps),
                     *(col.shown(one) for col in columns), (r.reason or "")[:80]])
    headers = ["loop", "device", "precision", *(["variant"] if varying else []), *(["seed"] if seeds else []), "rep",
               "status", *(col.label for col in columns), "reason"]
    # disable_numparse: the cells keep the formatting given above ("0.8122", not "0.8122" re-read as 0.8122 -> "0.81")
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
