"""The flat per-cell table (``report --csv``): identity columns, then every CSV column of the registry."""

from __future__ import annotations

from pathlib import Path

from bench.analysis.cells import cells_of
from bench.analysis.columns import CSV, shown_in
from bench.report.markdown import csv_cell
from bench.records import Record
from bench.report.per_device import table_context

FIRST_COLUMN = "loop"  # a CSV that starts otherwise was not written here, and is never overwritten


def csv_rows(records: list[Record]) -> list[dict]:
    """One row per cell: medians over its ok repeats (as each column aggregates). ``busy`` says some run
    of the cell had no clean speed figure; ``busy_kind`` which load it was: ``busy`` (other processes,
    or a probe or the GPU said so) over ``siblings`` (sibling cells of its sweep), '' when alone."""
    cells = cells_of(records)
    contexts = {d: table_context([c for c in cells if c.device == d and c.ok]) for d in dict.fromkeys(c.device for c in cells)}
    rows = []
    for c in cells:
        row = {"loop": c.loop, "device": c.device, "precision": c.precision, "variant": c.variant,
               "status": c.records[-1].status, "repeats_ok": len(c.ok), "repeats": len(c.records),
               "busy": c.busy, "busy_kind": c.busy_kind, "model": c.run.model, "batch_size": c.run.batch_size,
               "max_steps": c.run.max_steps, "cell_ids": " ".join(r.cell_id for r in c.records)}
        row.update({col.name: col.value(c, contexts[c.device]) for col in shown_in(CSV)})
        rows.append(row)
    return rows


def write_csv(records: list[Record], path: Path) -> None:
    import csv

    from bench.safeio import write_atomic

    rows = csv_rows(records)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [FIRST_COLUMN])
            writer.writeheader()
            writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)

    write_atomic(path, writer=write)
