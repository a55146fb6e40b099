"""Each seed's runs, one table per seed: the detail behind a seed group's answer in the bottom line
(which gives each loop over its seeds)."""

from __future__ import annotations

from bench.analysis.cells import SEED_DETAIL, comparison_groups
from bench.report import bottom_line
from bench.report.context import Context

HEADING = "Each seed's runs"


def lines(ctx: Context) -> list[str]:
    keys = bottom_line.per_seed_keys(ctx)
    groups = [(key, [c for c in group if c.ok]) for key, group in comparison_groups(ctx.seed_cells).items()
              if key in keys and any(c.ok for c in group)]
    groups = [(key, group) for key, group in groups if key[2]]  # a seed's own group names its seed
    if not groups:
        return []
    if len(groups) > SEED_DETAIL:
        return [f"## {HEADING}", "", f"{len(groups)} seed groups: not listed past {SEED_DETAIL} (the tables above take "
                "each cell over its seeds; each seed's figures are in `report --csv`'s table).", ""]
    base = bottom_line.majority_floor(ctx)
    out = [f"## {HEADING}", "", "Each seed's loops side by side (the bottom line gives them over the seeds).", ""]
    for key, group in groups:
        out += bottom_line.group_table(ctx, key, group, base)
    return out
