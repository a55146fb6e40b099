"""How fast can each loop go?  Each loop's tutorial-settings fp32 cell beside its preset cells."""

from __future__ import annotations

from bench.report import markdown as md
from bench.analysis.cells import tutorial_baseline
from bench.analysis.columns import EVAL_F1, SAMPLES_PER_S
from bench.analysis.machines import same_machine
from bench.report.context import Context
from bench.report.format import f, head

HEADING = "How fast can each loop go?"
KNOBS = ("batch_size", "group_by_length", "pad_to_multiple_of", "adamw", "compile", "attn", "num_workers", "pin_memory")


def lines(ctx: Context) -> list[str]:
    cells = ctx.main
    fast = [c for c in cells if c.ok and c.run.preset]
    if not fast:
        return []
    out = [f"## {HEADING}", "",
           "Each loop at the tutorial's settings in fp32 beside the same loop under a preset (in every precision "
           "run); the ratio is samples/s over that loop's tutorial-fp32 cell, and `vs manual` over the manual "
           "loop's tutorial-fp32 cell on the same device.", "",
           *head("| device | loop | preset | precision | fast-path settings | samples/s | × own tutorial fp32 | × manual tutorial fp32 | val F1 |")]
    for c in fast:
        own = next((b for b in cells if b.ok and b.device == c.device and b.loop == c.loop and b.precision == "fp32"
                    and not b.run.preset), None)
        manual = tutorial_baseline([b for b in cells if b.device == c.device])
        sps = c.median(SAMPLES_PER_S)
        # A ratio only of runs measured on one machine (a folder resumed elsewhere may hold two).
        own_sps = own.median(SAMPLES_PER_S) if own and same_machine(c.ok + own.ok) else None
        man_sps = manual.median(SAMPLES_PER_S) if manual and same_machine(c.ok + manual.ok) else None
        run = c.run.to_dict()
        knobs = ", ".join(f"{k}={run[k]}" for k in KNOBS
                          if run[k] not in (None, False, 0, "sdpa", "torch-default") or k == "batch_size")
        out.append(f"| {c.device} | {c.loop} | {c.run.preset} | {c.precision} | {md.text(knobs)} | {f(sps)} | "
                   f"{f(sps / own_sps if sps and own_sps else None, '{:.2f}×')} | "
                   f"{f(sps / man_sps if sps and man_sps else None, '{:.2f}×')} | {f(c.median(EVAL_F1), '{:.4f}')} |")
    return out + [""]
