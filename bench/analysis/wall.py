"""Where a cell's wall time goes: the median over its repeats of each named part of its process."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.records import Record


@dataclass
class WallSummary:
    parts_s: dict  # report label (bench.cell.wallclock.GROUPS) -> median seconds
    process_wall_s: float | None
    named: float | None  # the share of the process's wall time the parts name
    after_record_s: float | None  # the record's writing and the process's exit (measured by the sweep)
    fixed_cost_s: float | None  # beyond the steps and the evaluations


def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def wall_summary(records: list[Record]) -> WallSummary | None:
    """None when no record has ``wall_s``."""
    from bench.records.vocabulary import WALL_GROUPS as GROUPS, fixed_cost_s, named_s

    walls = [r for r in records if r.wall_s and r.process_wall_s]
    if not walls:
        return None
    return WallSummary(parts_s={label: _med([sum(r.wall_s.get(k, 0.0) for k in keys) for r in walls])
                                for label, keys in GROUPS},
                       process_wall_s=_med([r.process_wall_s for r in walls]),
                       named=_med([named_s(r.wall_s) / r.process_wall_s for r in walls]),
                       after_record_s=_med([r.wall_s.get("after_record_s") for r in walls]),
                       fixed_cost_s=_med([fixed_cost_s(r) for r in walls]))
