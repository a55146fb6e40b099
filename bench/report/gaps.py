"""Is each loop as fast as the manual loop?  Step by step, at identical settings."""

from __future__ import annotations

from bench.analysis.cells import comparison_groups
from bench.analysis.gaps import gap_rows, phase_note
from bench.analysis.verdicts import GAP_TOLERANCE
from bench.report.context import Context
from bench.report.format import f, head

HEADING = "Is each loop as fast as the manual loop?"


def lines(ctx: Context) -> list[str]:
    rows = [(key, row) for key, group in comparison_groups(ctx.main).items() for row in gap_rows(group)]
    if not rows:
        return []
    out = [f"## {HEADING}", "",
           "At identical settings (each group's settings are shown side by side under *Do the loops train the same "
           "thing?*) the loops do the same "
           "arithmetic on the same batches. `step ratio` is the median over steps of this loop's step time over the "
           "manual loop's for the same batch (runs paired by seed and repeat index; its range across them beside it); "
           f"a gap beyond {GAP_TOLERANCE:.0%} counts as the loop's own only when every repeat shows it, and is then listed "
           "with the per-step work the loop does beyond the manual loop.", "",
           "`where` is the change of the loop's mean step against the manual loop's and the phases that carry it "
           "(*Where the time goes*).", "",
           *head("| device | precision | variant | loop | samples/s ÷ manual | step ratio | range over runs | manual CV | where | verdict |")]
    for (device, precision, variant), row in rows:
        rng = row.step_ratio_range
        out.append(f"| {device} | {precision} | {variant or '-'} | {row.loop} | {f(row.sps_ratio, '{:.3f}')} | "
                   f"{f(row.step_ratio, '{:.3f}')} | {f'{rng[0]:.3f}–{rng[1]:.3f}' if rng and row.runs > 1 else '-'} | "
                   f"{f(row.manual_cv, '{:.1%}')} | {phase_note(row.phase_delta_s)} | {row.verdict} |")
    return out + [""]
