"""Each seed's runs, one table per seed: the detail behind a seed group's answer in the bottom line
(which gives each loop over its seeds)."""

from __future__ import annotations

from bench.report import bottom_line
from bench.report.context import Context

HEADING = "Each seed's runs"


def lines(ctx: Context) -> list[str]:
    keys = bottom_line.per_seed_keys(ctx)
    groups = [(key, group) for key, group in bottom_line.groups_of(ctx) if key in keys]
    if not groups:
        return []
    base = bottom_line.majority_floor(ctx)
    out = [f"## {HEADING}", "", "Each seed's loops side by side (the bottom line gives them over the seeds).", ""]
    for key, group in groups:
        out += bottom_line.group_table(ctx, key, group, base)
    return out
