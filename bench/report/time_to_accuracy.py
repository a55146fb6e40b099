"""Time to accuracy: validation F1 every K steps, and the wall time until it first reached the target."""

from __future__ import annotations

from bench.report.context import Context
from bench.report.format import f, head

HEADING = "Time to accuracy"


def lines(ctx: Context) -> list[str]:
    timed = [c for c in ctx.main if c.ok and c.ok[0].eval_curve]
    if not timed:
        return []
    target = timed[0].run.target_f1
    out = [f"## {HEADING}", "",
           f"Validation F1 every {timed[0].run.eval_every} optimizer steps; time to target is wall time from "
           f"the first step until F1 first reached {target}, evaluations included (they are excluded from samples/s).", "",
           *head("| device | loop | precision | variant | time to target s | at step | best F1 | evaluations | evaluation s |")]
    for c in timed:
        r = c.ok[0]
        step = c.median(lambda x: x.time_to_target_step)  # over repeats (and seeds, past SEED_DETAIL)
        best = c.median(lambda x: max(e.eval_f1 for e in x.eval_curve) if x.eval_curve else None)
        out.append(f"| {c.device} | {c.loop} | {c.precision} | {c.variant or '-'} | "
                   f"{f(c.median(lambda x: x.time_to_target_s))} | {f(step, '{:.0f}', 'not reached')} | "
                   f"{best:.4f} | {len(r.eval_curve)} | {f(c.median(lambda x: x.eval_during_training_s))} |")
    return out + [""]
