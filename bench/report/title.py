"""The title and where the figures come from."""

from __future__ import annotations

from bench.report.context import Context

TITLE = "# bench report"  # a file that starts otherwise was not written here, and is never overwritten


def lines(ctx: Context) -> list[str]:
    records = ctx.records
    count = {s: sum(r.status == s for r in records) for s in ("ok", "skipped", "failed")}
    return [f"{TITLE}: fine-tuning BERT on GLUE MRPC, loop by loop", "",
            f"Made by `python -m bench report` from {len(records)} records ({count['ok']} ok, {count['skipped']} "
            f"skipped, {count['failed']} failed). Every figure below comes from those records.", ""]
