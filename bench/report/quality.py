"""Does any loop fine-tune better?  Per seed group, each loop's F1 across seeds paired against the
manual loop's on the same validation pairs, its time to target, and its F1 over the steps."""

from __future__ import annotations

from bench.analysis.siblings import mark

import math

from loops import REFERENCE_LOOP
from bench.analysis.bootstrap import RESAMPLES
from bench.analysis.cells import SEED_DETAIL
from bench.analysis.quality import (MIN_SEEDS, MLPERF_MIN_RUNS, QualityGroup, TimeToTarget, f1_curves,
                                    seed_groups)
from bench.report import plotting
from bench.report.context import Context
from bench.report.format import anchor, f, head
from bench.report.parity import HEADING as PARITY_HEADING

HEADING = "Does any loop fine-tune better?"


def pm(mean, sd) -> str:
    """An F1 mean with its seed sd, or the value alone at one seed."""
    if mean is None:
        return "-"
    return f"{mean:.4f} ± {sd:.4f}" if sd is not None else f"{mean:.4f} (one seed)"


def ci_signed(ci) -> str:
    return f"{ci[0]:+.4f} to {ci[1]:+.4f}" if ci else "-"


def title(q: QualityGroup) -> str:
    return f"{q.device} / {q.precision}" + (f" / {q.variant}" if q.variant else "")


def seeds_said(q: QualityGroup) -> str:
    seeds = sorted({row.seed for loop in q.loops.values() if loop.comparison for row in loop.comparison.per_seed},
                   key=str)
    return ", ".join(str(s) for s in seeds)


def to_target_short(t: TimeToTarget | None) -> str:
    """A loop's time to target over seeds, for a table cell."""
    if not t:
        return ""
    if not t.reached:
        return f"F1 {t.target_f1} never reached (0/{t.seeds})"
    median = "not at the median" if math.isinf(t.median_s) else f"median {t.median_s:.0f} s (step {t.median_step:.0f})"
    return f"F1 {t.target_f1}: {median}, {t.reached}/{t.seeds} seeds"


def _reference_said(q: QualityGroup) -> str:
    """What the comparison against manual means under the group's defaults mode."""
    if not q.reference_is_tutorial:
        return ""
    if q.defaults == "native":
        return ("Out of the box (`--defaults native`): each library runs with its own defaults (`loops/native.py` "
                "names each one and where it comes from) and the manual loop is the tutorial's loop as the tutorial "
                "writes it, so `F1 − manual` is what a library's defaults deliver against the tutorial's loop.")
    return ("At the tutorial's settings (`--defaults tutorial`): every loop is set to train what the tutorial's loop "
            "(manual) trains, so each is expected to match it; a difference here is a fault of that loop "
            f"([parity]({anchor(PARITY_HEADING)})), not what its library delivers.")


INTRO = ("Each loop against the manual loop on the same validation pairs. A seed fixes the classifier head's "
         "initialisation, the sample order and the dropout stream, the same in every loop, so at one seed two "
         "loops' predictions pair up pair by pair: `F1 − manual` is the loop's F1 minus manual's on the same "
         f"pairs, with a 95% paired bootstrap interval ({RESAMPLES} resamples of the pairs, the same for both "
         "loops). Across seeds it is the mean of those differences, with a two-level bootstrap interval "
         "(resample the seeds, then the pairs inside each drawn seed), which holds both the seed's draw and the "
         "validation set's size; under 10 seeds, resampling them understates their spread, so the interval is "
         "the wider of that and a Student's t-interval over the per-seed differences (said under the table); `seed sd` is the standard deviation of the loop's F1 across seeds. A loop is "
         f"called better or worse only when that interval lies wholly on one side of 0, with at least {MIN_SEEDS} "
         "seeds. Every figure is recomputed from the records' per-pair predictions (`eval_predictions`).")


def _loop_table(q: QualityGroup) -> list[str]:
    lines = head("| loop | seeds | val F1 mean ± seed sd | val acc mean | F1 − manual | 95% CI (seeds and pairs) | "
                 "acc − manual | 95% CI (seeds and pairs) | verdict |")
    for loop, v in q.loops.items():
        c = v.comparison
        if loop == REFERENCE_LOOP:
            cols = ["reference", "", "", "", ""]
        elif c is None:
            cols = ["-", "-", "-", "-", "no predictions on manual's pairs at a shared seed"]
        else:
            a = c.across
            cols = [f"{a.f1_diff:+.4f}", ci_signed(a.f1_diff_ci95), f"{a.acc_diff:+.4f}",
                    ci_signed(a.acc_diff_ci95), f"**{c.verdict}**: {c.why}"]
        lines.append(f"| {loop} | {v.seeds} | {pm(v.f1_mean, v.f1_sd)} | {f(v.acc_mean, '{:.4f}')} | "
                     + " | ".join(cols) + " |")
    made = {f"{loop}: {v.comparison.across.interval}" for loop, v in q.loops.items()
            if v.comparison is not None and v.comparison.across.seeds > 1}
    if made:
        lines += ["", "Intervals across seeds: " + "; ".join(sorted(made)) + "."]
    return lines + [""]


def _n(value, fmt: str) -> str:
    return "-" if value is None else ("not reached" if math.isinf(value) else fmt.format(value))


def _target_table(q: QualityGroup) -> list[str]:
    targets = {loop: v.time_to_target for loop, v in q.loops.items() if v.time_to_target}
    if not targets:
        return []
    lines = ["Time to target over seeds: wall seconds (evaluations included) and optimizer steps until "
             "validation F1 first reached the target; a seed that never reached it counts as slower than "
             f"every seed that did. The MLPerf mean drops the fastest and the slowest seed (from "
             f"{MLPERF_MIN_RUNS} seeds)." + _machines_said(q), "",
             *head("| loop | target F1 | seeds reached | median s | median steps | MLPerf mean s | MLPerf mean steps |")]
    for loop, t in targets.items():
        lines.append(f"| {loop} | {t.target_f1} | {t.reached}/{t.seeds} | {_n(t.median_s, '{:.1f}')} | "
                     f"{_n(t.median_step, '{:.0f}')} | {_n(t.mlperf_mean_s, '{:.1f}')} | {_n(t.mlperf_mean_step, '{:.0f}')} |")
    return lines + [""]


def _machines_said(q: QualityGroup) -> str:
    if q.machines < 2:
        return ""
    return (f" These runs were measured on {q.machines} machines ([Environment]({anchor('Environment')})): a median "
            "over seeds mixes them; the per-seed table below sets a loop's time beside manual's only where both "
            "ran on one machine" + (", and some seed's loops did not." if q.seed_split else
                                    " (every seed's loops did)."))


def _per_seed_table(q: QualityGroup) -> list[str]:
    per_seed = [(loop, row) for loop, v in q.loops.items() if v.comparison for row in v.comparison.per_seed]
    if not per_seed:
        return []
    ref = q.loops.get(REFERENCE_LOOP)
    timed = bool(ref and ref.to_target_s)
    lines = ["Per seed, paired on the same validation pairs:", "",
             *head("| loop | seed | val F1 | manual's val F1 | F1 − manual | 95% CI (pairs) | acc − manual | "
                   "95% CI (pairs) | pairs predicted differently |" + (" s to target | manual's |" if timed else ""))]
    for loop, row in per_seed:
        line = (f"| {loop} | {row.seed} | {row.f1_b:.4f} | {row.f1_a:.4f} | {row.f1_diff:+.4f} | "
                f"{ci_signed(row.f1_diff_ci95)} | {row.acc_diff:+.4f} | "
                f"{ci_signed(row.acc_diff_ci95)} | {row.pairs_differing} of {row.pairs} |")
        if timed and not q.loops[loop].beside_reference.get(row.seed, True):
            line += " another machine than manual's | - |"
        elif timed:
            line += (f" {_seconds(q.loops[loop].to_target_s, row.seed, q.loops[loop].busy_kinds)} | "
                     f"{_seconds(ref.to_target_s, row.seed, ref.busy_kinds)} |")
        lines.append(line)
    return lines + [""]


def _seconds(times: dict, seed, busy: dict) -> str:
    """A seed's seconds to the target ('⚠ busy' when its run was measured on a busy machine, '⚠ shared'
    beside sibling cells); '-' where the loop evaluated toward none."""
    if seed not in times:
        return "-"
    return ("not reached" if times[seed] is None else f"{times[seed]:.0f}") + mark(busy.get(seed, ""))


def lines(ctx: Context) -> list[str]:
    if not ctx.quality:
        return []
    out = [f"## {HEADING}", "", INTRO, ""]
    drawn = ctx.plots_of(__name__)
    for q in ctx.quality:
        said = _reference_said(q)
        per_seed = _per_seed_table(q) if len(seeds_said(q).split(", ")) <= SEED_DETAIL else [
            f"Per seed: not listed past {SEED_DETAIL} seeds (each seed's figures are in `report --csv`'s table).", ""]
        out += [f"### {title(q)}", ""] + ([said, ""] if said else []) + _loop_table(q) + _target_table(q) + per_seed
        key = (q.device, q.precision, q.variant)
        if key in drawn:
            out += [f"![validation F1 over steps, {title(q)}]({drawn[key]})", ""]
    return out


def _draw_curves(plt, curves: dict, by_loop: dict, key: tuple, out_md) -> str:
    device, precision, variant = key
    fig, ax = plt.subplots(figsize=(7, 4))
    for loop, cv in curves.items():
        color, (style, width) = plotting.color_of(loop), plotting.style_of(loop)  # loops that agree stay visible
        ax.plot(cv["step"], cv["mean"], color=color, linestyle=style, linewidth=width,
                label=f"{loop} (mean of {cv['seeds']} seed(s))")
        if cv["seeds"] > 1:
            ax.fill_between(cv["step"], cv["lo"], cv["hi"], color=color, alpha=0.15, linewidth=0)
    target = next((c.run.target_f1 for by_seed in by_loop.values() for c in by_seed.values() if c.run.target_f1), None)
    if target:
        ax.axhline(target, color="0.5", linestyle=":", linewidth=1, label=f"target F1 {target}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation F1 (band: lowest to highest seed)")
    ax.set_title(f"validation F1, {device} / {precision}" + (f" / {variant}" if variant else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return plotting.save(plt, fig, plotting.png(out_md, device, precision, *([variant] if variant else []), "f1"))


def plots(ctx: Context, plt) -> dict:
    """Per seed group with per-pair predictions and evaluation curves: validation F1 over the steps,
    one line per loop (mean over seeds) with a band from its lowest to its highest seed."""
    wanted = {(q.device, q.precision, q.variant) for q in ctx.quality}
    made = {}
    for key, by_loop in seed_groups(ctx.seed_cells).items():
        curves = f1_curves(by_loop) if key in wanted else {}
        if curves:
            made[key] = _draw_curves(plt, curves, by_loop, key, ctx.out_md)
    return made
