"""Do the loops train the same thing?  Step losses against the manual loop's, the final metrics, the
loss curves and the settings read back from each loop's live objects (those that differ first)."""

from __future__ import annotations

import json
from collections import OrderedDict

from bench import markdown as md
from bench.analysis.cells import CellStats, comparison_groups, loop_specific
from bench.analysis.columns import EVAL_ACCURACY, EVAL_F1, TRAIN_LOSS_FINAL
from bench.analysis.parity import Parity, parity_rows
from bench.report import plotting
from bench.report.context import Context
from bench.report.format import f, group_title

HEADING = "Do the loops train the same thing?"


def _parity_table(group: list[CellStats]) -> list[str]:
    rows = parity_rows(group)
    if not rows:
        return []
    lines = ["| loop vs manual | steps compared | largest relative loss difference | at step | same batches, same order |",
             "|---|---|---|---|---|"]
    for row in rows:
        differs = (" (settings differ: not expected to agree: " + md.text("; ".join(row.differs)) + ")"
                   if row.differs else "")
        if row.verdict is Parity.ELSEWHERE:
            differs = (" (measured on another machine than manual's, whose kernels may round differently: "
                       "no verdict; run both on one machine)")
        lines.append(f"| {row.loop} | {row.steps} | {f(row.max_rel_diff, '{:.2e}')}{differs} | "
                     f"{row.at_step or '-'} | {'yes' if row.same_batches else '**no**'} |")
    return lines + [""]


def _metrics(group: list[CellStats]) -> list[str]:
    lines = ["| loop | val acc | val F1 | final loss |", "|---|---|---|---|"]
    lines += [f"| {c.loop} | {f(c.median(EVAL_ACCURACY), '{:.4f}')} | {f(c.median(EVAL_F1), '{:.4f}')} | "
              f"{f(c.median(TRAIN_LOSS_FINAL), '{:.4f}')} |" for c in group if c.ok]
    return lines + [""]


def _settings_rows(by_loop: OrderedDict, keys: list, specific: set) -> list[tuple[str, str, list[str]]]:
    """(key, mark, values) per setting: mark is '**differs**', 'loop-specific' or ''."""
    rows = []
    for k in keys:
        vals = [json.dumps(s.get(k), sort_keys=True, default=str) for s in by_loop.values()]
        mark = "" if len(set(vals)) == 1 else ("loop-specific" if k in specific else "**differs**")
        rows.append((k, mark, [v if len(v) <= 60 else v[:57] + "..." for v in vals]))
    return rows


def _settings_table(by_loop: OrderedDict, rows: list) -> list[str]:
    lines = ["| setting | " + " | ".join(by_loop) + " | |", "|---|" + "---|" * len(by_loop) + "---|"]
    for k, mark, vals in rows:
        name = f"**{md.text(k)}**" if mark == "**differs**" else md.text(k)
        lines.append(f"| {name} | " + " | ".join(md.code(v) for v in vals) + f" | {mark} |")
    return lines


def settings_diff(group: list[CellStats]) -> list[str]:
    """The settings in force of the loops of one group side by side: those that differ (and the
    loops' own machinery) shown, every one of them folded below."""
    by_loop = OrderedDict((c.loop, c.ok[0].settings or {}) for c in group if c.ok)
    if len(by_loop) < 2:
        return []
    keys = list(dict.fromkeys(k for s in by_loop.values() for k in s))
    rows = _settings_rows(by_loop, keys, loop_specific(by_loop))
    diffs = [k for k, mark, _ in rows if mark == "**differs**"]
    apart = [row for row in rows if row[1]]
    lines = [f"Settings in force that differ between the loops: **{', '.join(diffs)}**." if diffs else
             "The settings in force are the same in every loop (loop-specific machinery aside).", ""]
    if apart:
        lines += _settings_table(by_loop, apart) + [""]
    return lines + ["<details><summary>All " + str(len(rows)) + " settings read back from each loop's live objects"
                    "</summary>", ""] + _settings_table(by_loop, rows) + ["", "</details>", ""]


def lines(ctx: Context) -> list[str]:
    out = [f"## {HEADING}", "",
           "Same data order, same initial weights, same RNG state at the first step: the step losses should "
           "agree. The largest step-wise relative difference of each loop's loss against the manual loop's, the "
           "final metrics, and the settings read back from each loop's live objects:", ""]
    drawn = ctx.plots_of(__name__)
    for key, group in comparison_groups(ctx.main).items():
        if sum(1 for c in group if c.ok) < 2:
            continue
        title = group_title(*key)
        out += [f"### {title}", ""] + _parity_table(group) + _metrics(group)
        if key in drawn:
            out += [f"![loss curves, {title}]({drawn[key]})", ""]
        out += settings_diff(group)
    return out


def _running_mean(losses: list, window: int) -> list:
    return [sum(losses[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(losses))]


def plots(ctx: Context, plt) -> dict:
    """Per comparison group: each loop's loss per step (a running mean over long runs)."""
    made = {}
    for (device, precision, variant), group in comparison_groups([c for c in ctx.main if c.ok]).items():
        fig, ax = plt.subplots(figsize=(7, 4))
        n = max(len(c.ok[0].step_losses) for c in group)
        # Over hundreds of steps the per-batch losses are a band; a running mean shows the trend (the
        # raw losses stay faintly behind it, and the parity table compares them step by step).
        window = n // 50 if n > 200 else 1
        for c in group:
            losses = c.ok[0].step_losses
            style, width = plotting.style_of(c.loop)
            steps = range(1, len(losses) + 1)
            if window > 1:
                if c.loop == "manual":
                    ax.plot(steps, losses, "-", color="0.85", linewidth=0.5, label="manual, per step")
                losses = _running_mean(losses, window)
            ax.plot(steps, losses, linestyle=style, linewidth=width, label=c.loop)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss" + (f" (running mean over {window} steps)" if window > 1 else ""))
        ax.set_title(f"loss per step, {group_title(device, precision, variant)}")
        ax.legend()
        fig.tight_layout()
        path = plotting.png(ctx.out_md, device, precision, *([variant] if variant else []), "loss")  # no spaces in links
        made[(device, precision, variant)] = plotting.save(plt, fig, path)
    return made
