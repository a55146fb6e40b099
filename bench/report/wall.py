"""Where a cell's wall time goes: every second of its process named (``bench/cell/wallclock.py``)."""

from __future__ import annotations

from bench.analysis.wall import wall_summary
from bench.report.context import Context
from bench.report.format import f, head

HEADING = "Where a cell's wall time goes"


def lines(ctx: Context) -> list[str]:
    from bench.records.vocabulary import WALL_GROUPS as GROUPS

    rows = [(c, wall_summary(c.ok)) for c in ctx.main if c.ok]
    rows = [(c, w) for c, w in rows if w]
    if not rows:
        return []
    labels = [label for label, _ in GROUPS]
    out = [f"## {HEADING}", "",
           "Seconds of each cell's process, from its start to its record (median over repeats): "
           + "; ".join(f"`{label}` is {' + '.join(f'`{k}`' for k in keys)}" for label, keys in GROUPS)
           + " (the record's `wall_s`; `bench/records/vocabulary.py` says what each part holds). "
           "`named` is the share of the process's wall time the parts account for; `fixed` is what the cell "
           "costs beyond its steps and evaluations; `after record` is the record's writing and the process's "
           "exit, measured by the sweep.", "",
           *head("| device | precision | variant | loop | " + " | ".join(labels) + " | cell s | named | fixed s | after record s |")]
    for c, w in rows:
        out.append(f"| {c.device} | {c.precision} | {c.variant or '-'} | {c.loop} | "
                   + " | ".join(f(w.parts_s[label], "{:.2f}") for label in labels)
                   + f" | {f(w.process_wall_s)} | {f(w.named, '{:.1%}')} | {f(w.fixed_cost_s)}"
                   + f" | {f(w.after_record_s, '{:.2f}')} |")
    return out + [""]
