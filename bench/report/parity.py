"""Do the loops train the same thing?  Step losses against the manual loop's, the final metrics, the
loss curves and the settings read back from each loop's live objects (those that differ first)."""

from __future__ import annotations

import json
from collections import OrderedDict

from loops import REFERENCE_LOOP
from bench.report import markdown as md
from bench.analysis.cells import SEED_DETAIL, CellStats, comparison_groups, loop_specific
from bench.analysis.columns import EVAL_ACCURACY, EVAL_F1, TRAIN_LOSS_FINAL
from bench.analysis.parity import Parity, parity_rows
from bench.analysis.verdicts import PARITY_TOLERANCE
from bench.report import plotting
from bench.report.context import Context
from bench.report.format import f, group_title, head, seeds_shown

HEADING = "Do the loops train the same thing?"


def _parity_table(group: list[CellStats]) -> list[str]:
    rows = parity_rows(group)
    if not rows:
        return []
    lines = head("| loop vs manual | steps compared | largest relative loss difference | at step | same batches, same order |")
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
    lines = head("| loop | val acc | val F1 | final loss |")
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
    lines = head("| setting | " + " | ".join(by_loop) + " | |")
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
    same = [(k, vals[0]) for k, mark, vals in rows if not mark]
    if not same:
        return lines
    # The rest is the same in every loop: one value each, on one line, folded.
    return lines + [f"<details><summary>The other {len(same)} settings read back from each loop's live objects, "
                    "the same in every loop</summary>", "",
                    "; ".join(f"{md.text(k)} {md.code(v)}" for k, v in same) + ".", "", "</details>", ""]


def _seed_groups(ctx: Context) -> OrderedDict:
    """Comparison groups (one per seed) gathered by what they share but the seed: one block each."""
    out: OrderedDict = OrderedDict()
    for key, group in comparison_groups(ctx.seed_cells).items():
        if sum(1 for c in group if c.ok) < 2:
            continue
        c = group[0]
        out.setdefault((c.device, c.precision, c.seedless_variant), []).append((key, group))
    return out


def _seed_of(group: list[CellStats]):
    return group[0].run.seed


def _with_seed(lines: list[str], seed, first: bool) -> list[str]:
    """A table's lines with a leading seed column (its header and rule only on the first seed's)."""
    out = []
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            continue
        if i == 0:
            if first:
                out.append("| seed " + line)
        elif i == 1:
            if first:
                out.append("|---" + line)
        else:
            out.append(f"| {md.text(seed)} " + line)
    return out


def _block(members: list, drawn: dict, super_key: tuple) -> list[str]:
    """One block: the parity and metrics tables over its seeds, one loss plot, and the settings said
    once for every run of settings that are the same at several seeds."""
    seeded = len(members) > 1
    out = []
    parity_lines, metric_lines = [], []
    if len(members) > SEED_DETAIL:
        parity_lines, members_shown = _over_seeds(members), []
    else:
        members_shown = members
    for i, (_, group) in enumerate(members_shown):
        table, metrics = _parity_table(group), _metrics(group)
        parity_lines += _with_seed(table, _seed_of(group), i == 0) if seeded else table[:-1]
        if not seeded:  # across seeds each run's F1 is in the quality comparison and each seed's table
            metric_lines += metrics[:-1]
    out += (parity_lines + [""] if parity_lines else []) + (metric_lines + [""] if metric_lines else [])
    if super_key in drawn:
        out += [f"![loss curves, {group_title(*super_key)}]({drawn[super_key]})", ""]
    said: OrderedDict = OrderedDict()  # the settings' lines -> the seeds they hold at
    for _, group in members:
        seed = _seed_of(group)
        # The sampler names its seed: said as the run's own, the seeds' settings are one text.
        text = tuple(line.replace(f"seed={seed} ", "seed=(the run's seed) ") if seeded else line
                     for line in settings_diff(group))
        said.setdefault(text, []).append(seed)
    for text, seeds in said.items():
        if seeded:
            where = "every seed" if len(seeds) == len(members) else (
                md.text(seeds_shown(seeds)))
            out += [f"Settings at {where}:", ""]
        out += list(text)
    return out


def _over_seeds(members: list) -> list[str]:
    """Past SEED_DETAIL seeds, one row per loop: its worst seed and how many seeds agree."""
    by_loop: OrderedDict = OrderedDict()
    for _, group in members:
        for row in parity_rows(group):
            by_loop.setdefault(row.loop, []).append((_seed_of(group), row))
    lines = head("| loop vs manual | seeds | largest relative loss difference | at seed | seeds within "
                 f"{PARITY_TOLERANCE:.0e} | same batches at every seed |")
    for loop, rows in by_loop.items():
        known = [(seed, row) for seed, row in rows if row.max_rel_diff is not None]
        seed, worst = max(known, key=lambda x: x[1].max_rel_diff) if known else (None, None)
        agree = sum(1 for _, row in known if row.max_rel_diff <= PARITY_TOLERANCE)
        lines.append(f"| {md.text(loop)} | {len(rows)} | {f(worst and worst.max_rel_diff, '{:.2e}')} | "
                     f"{md.text(seed) if seed is not None else '-'} | {agree} of {len(rows)} | "
                     f"{'yes' if all(row.same_batches for _, row in rows) else '**no**'} |")
    return lines


def lines(ctx: Context) -> list[str]:
    out = [f"## {HEADING}", "",
           "Same data order, same initial weights, same RNG state at the first step: the step losses should "
           "agree. The largest step-wise relative difference of each loop's loss against the manual loop's, the "
           "final metrics, and the settings read back from each loop's live objects (said once for the seeds "
           "they are the same at):", ""]
    drawn = ctx.plots_of(__name__)
    for super_key, members in _seed_groups(ctx).items():
        seeds = [_seed_of(group) for _, group in members]
        out += [f"### {group_title(*super_key)}" + (f" ({md.text(seeds_shown(seeds))})"
                                                      if len(members) > 1 else ""), ""]
        out += _block(members, drawn, super_key)
    return out


def _running_mean(losses: list, window: int) -> list:
    return [sum(losses[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(losses))]


# Above this many seeds a loop's curves are drawn as a band (10th to 90th percentile) and its median.
MAX_SEED_LINES = 10


def _curves(c_by_seed: list[CellStats]) -> list[list]:
    return [c.ok[0].step_losses or [] for c in c_by_seed if c.ok]


def plots(ctx: Context, plt) -> dict:
    """Per block: each loop's loss per step (a running mean over long runs), its seeds as thin lines,
    or, past ``MAX_SEED_LINES`` seeds, as a band and its median: one plot whatever the seeds."""
    import numpy as np

    made = {}
    for super_key, members in _seed_groups(ctx).items():
        by_loop: OrderedDict = OrderedDict()
        for _, group in members:
            for c in group:
                if c.ok:
                    by_loop.setdefault(c.loop, []).append(c)
        curves = {loop: _curves(cells) for loop, cells in by_loop.items()}
        n = max((len(x) for cs in curves.values() for x in cs), default=0)
        if not n:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        # Over hundreds of steps the per-batch losses are a band; a running mean shows the trend (the
        # raw losses stay faintly behind it, and the parity table compares them step by step).
        window = n // 50 if n > 200 else 1
        seeds = len(members)
        for loop, cs in curves.items():
            style, width = plotting.style_of(loop)
            if window > 1 and loop == REFERENCE_LOOP and seeds == 1:
                ax.plot(range(1, len(cs[0]) + 1), cs[0], "-", color="0.85", linewidth=0.5, label="manual, per step")
            smooth = [_running_mean(x, window) if window > 1 else x for x in cs if x]
            if seeds > MAX_SEED_LINES:
                length = min(len(x) for x in smooth)
                arr = np.array([x[:length] for x in smooth])
                steps = range(1, length + 1)
                (line,) = ax.plot(steps, np.median(arr, axis=0), linestyle=style, linewidth=width,
                                  label=f"{loop} (median of {len(smooth)} seeds)")
                ax.fill_between(steps, np.percentile(arr, 10, axis=0), np.percentile(arr, 90, axis=0),
                                color=line.get_color(), alpha=0.2, linewidth=0)
                continue
            color = None
            for i, x in enumerate(smooth):
                (line,) = ax.plot(range(1, len(x) + 1), x, linestyle=style, color=color,
                                  linewidth=width if seeds == 1 else max(0.6, width / 2),
                                  alpha=1.0 if seeds == 1 else 0.7, label=loop if i == 0 else None)
                color = line.get_color()
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss" + (f" (running mean over {window} steps)" if window > 1 else ""))
        what = "" if seeds == 1 else (f", {seeds} seeds (10th-90th percentile)" if seeds > MAX_SEED_LINES
                                      else f", {seeds} seeds")
        ax.set_title(f"loss per step, {group_title(*super_key)}{what}")
        ax.legend()
        fig.tight_layout()
        path = plotting.png(ctx.out_md, super_key[0], super_key[1], *([super_key[2]] if super_key[2] else []), "loss")
        made[super_key] = plotting.save(plt, fig, path)
    return made
