"""Where the time goes: each optimizer step split into data, forward, backward, optimizer, other."""

from __future__ import annotations

from bench.report import markdown as md
from bench.analysis.cells import CellStats
from bench.records.vocabulary import PHASES
from bench.records import Record
from bench.report import plotting
from bench.report.context import Context
from bench.report.format import f, head

HEADING = "Where the time goes"
COLORS = {"data": "#8c8c8c", "forward": "#4c72b0", "backward": "#55a868", "optimizer": "#dd8452", "other": "#c44e52"}


def phase_clock(record: Record) -> str:
    """The clock a record's phase split is on (records before the field: by the device's timer)."""
    if record.phase_clock:
        return record.phase_clock
    return "device-timeline" if str(record.device).split(":")[0] == "cuda" else "host"


TIMELINE = ("the split is on the device's timeline "
            "(`phase_clock: device-timeline`): each boundary is an event that completes when the GPU reaches "
            "it, not when the CPU passed it. While the CPU runs ahead of the GPU, host work (fetching and "
            "collating the next batch, a host sync) overlaps GPU work and is counted in whichever phase the "
            "GPU was busy with: `data` there is the time the GPU waited for a batch (a loader that keeps "
            "ahead shows near zero, however long it takes), not the time loading took; on the host clock "
            "(`phase_clock: host`, the CPU) it is the loading itself. `split cost` there is the CPU's "
            "cost of recording the events.")


def _row(c: CellStats) -> str:
    ph = c.phases()
    total = sum(ph.values())
    cost = c.median(lambda r: r.phase_cost_s_p50)
    ok_steps = sum(r.phase_sum_ok_steps or 0 for r in c.ok if r.phase_s_mean)
    all_steps = sum(r.steps or 0 for r in c.ok if r.phase_s_mean)
    return (f"| {c.device} | {c.precision} | {c.variant or '-'} | {c.loop} | "
            + " | ".join(f"{ph[p] * 1000:.1f} ({ph[p] / total:.0%})" for p in PHASES)
            + f" | {total * 1000:.1f} | {f(cost and cost * 1e6, '{:.0f} µs')}"
            + f"{f(cost and total and cost / total, ' ({:.2%})', '')} | {ok_steps}/{all_steps} |")


def lines(ctx: Context) -> list[str]:
    split = [c for c in ctx.main if c.ok and c.phases()]
    if not split:
        return []
    out = [f"## {HEADING}", "",
           "Each optimizer step split into `data` (waiting for the batch, collate, the copy to the device where "
           "the loader makes it), `forward`, `backward` (to the end of the backward pass, gradient all-reduce "
           "included), `optimizer` (unscale, clipping, the step, the scheduler, zero_grad) and `other` (the "
           "loop's own machinery between those), measured the same way in every loop (`bench/meter/phase_clock.py` says "
           "where each boundary comes from). Milliseconds per step, mean over the timed steps (median over "
           "repeats); the five add up to the mean step. `split cost` is what the split itself adds per step.", "",
           *head("| device | precision | variant | loop | " + " | ".join(PHASES) + " | step ms | split cost | steps adding up (±2%) |")]
    out += [_row(c) for c in split] + [""]
    timeline = sorted({c.device for c in split for r in c.ok if phase_clock(r) == "device-timeline"})
    if timeline:
        out += [f"On {', '.join(md.code(d) for d in timeline)} " + TIMELINE, ""]
    drawn = ctx.plots_of(__name__)
    for device in dict.fromkeys(c.device for c in split):
        if device in drawn:
            out += [f"![where the time goes on {device}]({drawn[device]})", ""]
    off = sorted({r.phase_split for c in ctx.main for r in c.ok if r.phase_split})
    if off:
        out += ["Cells without a split: " + "; ".join(md.text(x) for x in off) + ".", ""]
    return out


def plots(ctx: Context, plt) -> dict:
    """Per device, one stacked bar per cell: its mean step split into the five phases."""
    made = {}
    for device in dict.fromkeys(c.device for c in ctx.cells):
        dev = [c for c in ctx.cells if c.device == device and c.ok and c.phases()]
        if not dev:
            continue
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(dev) + 2.5), 4))
        bottom = [0.0] * len(dev)
        for phase in PHASES:
            values = [c.phases()[phase] * 1000 for c in dev]
            ax.bar(range(len(dev)), values, bottom=bottom, color=COLORS[phase], label=phase)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(range(len(dev)))
        ax.set_xticklabels([plotting.cell_label(c) for c in dev], fontsize=8)
        ax.set_ylabel("ms per optimizer step (mean)")
        ax.set_title(f"where the time goes on {device}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        made[device] = plotting.save(plt, fig, plotting.png(ctx.out_md, device, "phases"))
    return made
