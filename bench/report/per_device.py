"""Per device, one row per cell: every column of the registry shown in tables, and its plots.  Runs
from more than one node (``--executor ray`` on a cluster) are shown per node and GPU model, each
group's medians, spreads and speed-ups over its own runs only."""

from __future__ import annotations

from bench.report import markdown as md
from bench.analysis.cells import CellStats, tutorial_baseline
from bench.analysis.columns import JOULES_PER_SAMPLE, PEAK_MIB, SAMPLES_PER_S, TABLE, TableContext, shown_in
from bench.analysis.machines import node_groups
from bench.analysis.mfu import device_peak_of, shared_peaks
from bench.analysis.siblings import FOREIGN, MARKS, SIBLINGS, mark
from bench.report import plotting
from bench.report.context import Context


def device_cells(cells: list[CellStats]) -> dict[str, list[CellStats]]:
    """The ok cells of each device, in the report's order."""
    out = {}
    for device in dict.fromkeys(c.device for c in cells):
        ok = [c for c in cells if c.device == device and c.ok]
        if ok:
            out[device] = ok
    return out


def table_context(dev_cells: list[CellStats]) -> TableContext:
    return TableContext(base=tutorial_baseline(dev_cells), peaks=shared_peaks(dev_cells),
                        counters=any(c.median(lambda r: r.peak_alloc_mib) is not None for c in dev_cells))


def _unshared(dev_cells: list[CellStats], peaks: dict) -> list[str]:
    """The precisions whose runs recorded a peak that no shared one stands for (several machines)."""
    return [p for p in dict.fromkeys(c.precision for c in dev_cells) if p not in peaks
            and any(device_peak_of(r) for c in dev_cells if c.precision == p for r in c.ok)]


def _intro(device: str, dev_cells: list[CellStats], ctx: TableContext) -> str:
    repeats = max(len(c.ok) for c in dev_cells)
    peaks = ctx.peaks
    return (f"Samples/s is the median of {repeats} run(s) per cell, each in a fresh process; spread is min–max "
            "and CV the coefficient of variation across them. Speed-up is against manual-fp32 on this device"
            + ("" if ctx.base else " (no manual-fp32 cell here)") + ". "
            + (f"Memory is {device} peak allocated (peak reserved in brackets). " if ctx.counters else
               "Memory is the cell process's peak RSS. ")
            + "Startup: seconds from the cell's start to the loop's first step (imports, model, data, the "
            "loop's own setup; the record's `setup_s` has each part). "
            + "MFU: model FLOPs over the padded batches per second, over the peak of the cell's precision: "
            + ("; ".join([f"{p}: {t * 1000:.1f} GFLOP/s ({src})" for p, (t, src) in peaks.items()]
                         + [f"{p}: each run's own peak (its runs were measured on several machines)"
                            for p in _unshared(dev_cells, peaks)])
               if peaks or _unshared(dev_cells, peaks) else "no peak recorded") + "."
            + (" J/sample: the GPU's energy counter (NVML) over the timed steps, over their samples."
               if any(c.median(JOULES_PER_SAMPLE) is not None for c in dev_cells) else ""))


def _table(dev_cells: list[CellStats], ctx: TableContext) -> list[str]:
    columns = [col for col in shown_in(TABLE) if not col.optional or any(col.value(c, ctx) is not None
                                                                        for c in dev_cells)]
    variant = any(c.variant for c in dev_cells)
    header = ["loop", "precision"] + (["variant"] if variant else []) + [col.label for col in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in dev_cells:
        row = [c.loop + mark(c.busy_kind), c.precision] + ([c.variant or "tutorial"] if variant else [])
        lines.append("| " + " | ".join(row + [col.shown(c, ctx) for col in columns]) + " |")
    return lines + [""]


def _busy(dev_cells: list[CellStats]) -> list[str]:
    """What ⚠ busy and ⚠ shared stand for, and each such cell's reasons."""
    from bench.records.vocabulary import BUSY_RULE

    out = []
    for kind, said in ((FOREIGN, f"had a run measured while the machine was busy ({BUSY_RULE}); their speed says more "
                                 "about the machine than about the loop"),
                       (SIBLINGS, "had a run measured beside other cells of their sweep that shared their CPU cores "
                                  "(a CPU cell) or their GPU; their speed measures the sharing as much as the loop")):
        cells = [c for c in dev_cells if c.busy_kind == kind]
        if cells:
            out += [f"{MARKS[kind]}: {len(cells)} cell(s) {said}: " + "; ".join(
                f"{c.loop} {c.precision}" + (f" {c.variant}" if c.variant else "") + ": " + md.text(", ".join(
                    w for v in c.verdicts() if v.kind == kind for w in v.why)) for c in cells) + ".", ""]
    return out


def lines(ctx: Context) -> list[str]:
    out = []
    drawn = ctx.plots_of(__name__)
    for device, all_cells in device_cells(ctx.cells).items():
        out += [f"## {device}", ""]
        groups = node_groups(all_cells)
        if len(groups) > 1:
            out += [f"Runs from {len(groups)} nodes or GPU models: each has its own table, and its figures are "
                    "compared only within it.", ""]
        for group, dev_cells in groups:
            tctx = table_context(dev_cells)
            out += ([f"### {device}, {md.text(group)}", ""] if group else [])
            out += [_intro(device, dev_cells, tctx), ""] + _table(dev_cells, tctx) + _busy(dev_cells)
            for name in ("throughput", "memory"):
                if (device, group, name) in drawn:
                    out += [f"![{name} on {md.text(' '.join(filter(None, (device, group))))}]"
                            f"({drawn[(device, group, name)]})", ""]
    return out


def _bars(plt, device: str, dev: list[CellStats], name: str, ylabel: str, get, out_md, group: str = "") -> str:
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(dev) + 2), 4))
    ax.bar(range(len(dev)), [c.median(get) or 0 for c in dev], color=[plotting.color_of(c.loop) for c in dev])
    if name == "throughput":
        for i, c in enumerate(dev):
            s = c.spread(get)
            if s:
                ax.plot([i, i], s, color="black", linewidth=1)
    ax.set_xticks(range(len(dev)))
    ax.set_xticklabels([plotting.cell_label(c) for c in dev], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{name} on {device}" + (f", {group}" if group else ""))
    fig.tight_layout()
    return plotting.save(plt, fig, plotting.png(out_md, *filter(None, (device, group)), name))


def plots(ctx: Context, plt) -> dict:
    """Per device (and node, where there are several): samples/s (with the spread over repeats) and
    peak memory, one bar per cell."""
    made = {}
    for device, all_cells in device_cells(ctx.cells).items():
        for group, dev in node_groups(all_cells):
            counters = table_context(dev).counters
            made[(device, group, "throughput")] = _bars(plt, device, dev, "throughput", "samples/s (median)",
                                                        SAMPLES_PER_S, ctx.out_md, group)
            made[(device, group, "memory")] = _bars(plt, device, dev, "memory", "peak MiB" + (
                f" ({device} allocated)" if counters else " (process RSS)"), PEAK_MIB, ctx.out_md, group)
    return made
