"""What a report's evidence holds, what it cannot tell, and what would tell it: the bottom line's
three sentences, each thing said once across its groups (``bench/report/bottom_line.py``)."""

from __future__ import annotations

from bench.report import markdown as md
from bench.analysis.cells import CellStats
from bench.analysis.columns import EVAL_F1, PEAK_MIB
from bench.analysis.gaps import gap_rows, phase_note
from bench.analysis.machines import same_machine
from bench.analysis.siblings import FOREIGN, SIBLINGS
from bench.analysis.parity import Parity, parity_rows
from bench.analysis.quality import MIN_SEEDS, QualityGroup
from bench.analysis.verdicts import GAP_TOLERANCE, PARITY_TOLERANCE, Kind
from bench.report import parity, quality, why
from bench.report.context import Context
from bench.report.format import anchor

# A cell whose mean step is this far above its median step had slow outlier steps (a GPU's first
# step of each new batch shape, say): its samples/s (over the mean) and its step ratio (medians) part.
OUTLIER_MEAN_OVER_MEDIAN = 1.3


def seed_picks(q: QualityGroup) -> tuple[list[str], list[tuple]]:
    """What a seed group's paired verdicts support, and what they cannot tell."""
    title, holds = quality.title(q), []
    seeds = len(quality.seeds_said(q).split(", "))
    compared = {loop: v.comparison for loop, v in q.loops.items() if v.comparison}
    for word in ("better", "worse"):
        named = [f"{md.text(loop)} ({c.across.f1_diff:+.4f} F1)" for loop, c in compared.items() if c.verdict == word]
        if named:
            holds.append(f"{title}: " + ", ".join(named) + f" fine-tune{'s' if len(named) == 1 else ''} {word} than "
                         f"manual across {seeds} seeds")
    same = [md.text(loop) for loop, c in compared.items() if all(row.pairs_differing == 0 for row in c.per_seed)]
    if same:
        holds.append(f"{title}: " + ", ".join(same) + " predict" + ("s" if len(same) == 1 else "")
                     + " exactly what manual predicts, pair by pair, at every seed")
    apart = [md.text(loop) for loop, c in compared.items() if c.verdict == "not told apart" and md.text(loop) not in same]
    cannot = []
    if apart:
        cannot.append((f"{title}: whether " + ", ".join(apart) + f" fine-tune{'s' if len(apart) == 1 else ''} better "
                       f"or worse than manual (each F1 interval across {seeds} seeds includes 0)",
                       "more seeds narrow the intervals (`--seeds` with 10 or more)" if seeds < 10 else
                       "a difference this small needs more seeds or validation pairs than these"))
    # Run at fewer seeds than a verdict needs (a sweep grown by a loop at one seed, say): no interval
    # across seeds exists for it, so it is named apart from the loops whose interval includes 0.
    unjudged = [md.text(loop) for loop, c in compared.items() if c.verdict == "no verdict" and md.text(loop) not in same]
    if unjudged:
        cannot.append((f"{title}: whether " + ", ".join(unjudged) + f" fine-tune{'s' if len(unjudged) == 1 else ''} "
                       f"better or worse than manual (fewer than {MIN_SEEDS} seeds of "
                       f"{'it' if len(unjudged) == 1 else 'each'}: no interval across seeds)",
                       "every loop at the seeds the sweep ran (`--resume` with `--loops all` and the same `--seeds`)"))
    return holds, cannot


def _said_once(items: list) -> list:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def sentences(holds: list[str], cannot: list[tuple[str, str | None]]) -> list[str]:
    """What holds, what cannot be told, what to run to tell it: each said once, across groups."""
    out = []
    if holds:
        out.append("**Holds:** " + "; ".join(_said_once(holds)) + ".")
    cannot = _said_once(cannot)
    if cannot:
        out.append("**Cannot tell:** " + "; ".join(text for text, _ in cannot) + ".")
        remedies = _said_once([r for _, r in cannot if r])
        if remedies:
            out.append("**To tell:** " + "; ".join(remedies) + ".")
    return [" ".join(out), ""] if out else []


def _speed_holds(rows: dict, title: str) -> list[str]:
    real = [loop for loop, row in rows.items() if row.kind is Kind.REAL]
    out = []
    if real:
        out.append(f"{title}: " + ", ".join(
            f"{md.text(loop)} {abs(rows[loop].step_ratio - 1):.0%} {'slower' if rows[loop].step_ratio > 1 else 'faster'} "
            f"than manual in every run ({phase_note(rows[loop].phase_delta_s)})" for loop in real))
    if rows and all(row.kind is Kind.SAME for row in rows.values()):
        out.append(f"{title}: every loop within {GAP_TOLERANCE:.0%} of the manual loop's step time")
    return out


def _extremes(group: list[CellStats], title: str) -> list[str]:
    """Which loop starts soonest and which peaks lowest, and by how much (only where it is large)."""
    out = []
    setups = {c.loop: c.startup_s() for c in group if c.startup_s() is not None}
    if len(setups) > 1:
        fast, slow = min(setups, key=setups.get), max(setups, key=setups.get)
        if setups[slow] > 1.25 * setups[fast]:
            out.append(f"{title}: {md.text(fast)} reaches its first step soonest ({setups[fast]:.1f} s), "
                       f"{md.text(slow)} last ({setups[slow]:.1f} s)")
    mems = {c.loop: c.median(PEAK_MIB) for c in group if c.median(PEAK_MIB) is not None}
    if len(mems) > 1:
        lo, hi = min(mems, key=mems.get), max(mems, key=mems.get)
        if mems[hi] > 1.1 * mems[lo]:
            out.append(f"{title}: {md.text(hi)} peaks {mems[hi] / mems[lo] - 1:.0%} above {md.text(lo)} in memory")
    return out


def _training(group: list[CellStats], title: str, explained: bool) -> tuple[list[str], list[tuple]]:
    """(what the parity rows support, what they cannot tell) of a --parity group."""
    if not group[0].run.parity:
        return [], []
    rows = parity_rows(group)
    agree = [row for row in rows if row.verdict in (Parity.AGREES, Parity.FAILS)]
    differ = [row for row in rows if row.verdict is Parity.DIFFERS]
    link, why_link = anchor(parity.HEADING), f" (what each difference is worth: [{why.HEADING}]({anchor(why.HEADING)}))"
    out = []
    if differ:
        out.append(f"{title}: " + ", ".join(md.text(row.loop) for row in differ)
                   + f" ran with settings that differ from the manual loop's ([parity]({link})), so they are not "
                   "expected to train the same thing" + (why_link if explained else ""))
    if agree:
        worst = max((row.max_rel_diff or 0) for row in agree)
        same = worst <= PARITY_TOLERANCE
        out.append(f"{title}: " + (f"every loop's step losses agree with the manual loop's within {worst:.1e}, so "
                                   "they train the same thing" if same else
                                   f"some loop's step losses differ from the manual loop's by up to {worst:.1e}, so "
                                   "they do not train the same thing" + (why_link if explained else ""))
                   + f" ([parity]({link}))")
    cannot = []
    elsewhere = [row for row in rows if row.verdict is Parity.ELSEWHERE]
    if elsewhere:
        cannot.append((f"{title}: whether " + ", ".join(md.text(row.loop) for row in elsewhere)
                       + " trains the same thing as manual (step losses apart, measured on another machine)",
                       "run both on one machine"))
    return out, cannot


def picks(ctx: Context, key: tuple, group: list[CellStats], base, detail: bool = True) -> tuple[list[str], list[tuple]]:
    """What one group's evidence supports, and what it cannot tell (with what would tell it);
    ``detail`` False for one seed of a seed group, whose quality and extremes the seeds table answers."""
    device, precision, variant = key
    title = f"{device} / {precision}" + (f" / {variant}" if variant else "")
    runs = [r for c in group for r in c.ok]
    across = not same_machine(runs)
    rows = {row.loop: row for row in gap_rows(group) if row.runs or not row.other_machine}
    run = group[0].run
    holds = [] if across or not detail else _speed_holds(rows, title)
    cannot: list[tuple] = []
    if not detail:
        return [], _general(ctx, group, rows, title, across)
    cis = {c.loop: c.f1_ci95() for c in group if c.f1_ci95()}
    f1s = [c.median(EVAL_F1) for c in group]
    floor = base and f1s and all(v is not None and abs(v - base.f1) < 5e-5 for v in f1s)
    if floor:
        cannot.append((f"quality after {run.max_steps or run.epochs} {'steps' if run.max_steps else 'epochs'}: every "
                       f"loop scores exactly the majority-class floor (F1 {base.f1:.4f})",
                       "train longer (`--epochs 3`) for F1 that ranks the loops"))
    elif len(cis) > 1 and max(lo for lo, _ in cis.values()) <= min(hi for _, hi in cis.values()):
        # Under --seeds some loop already ran other seeds: what is missing is the others at those seeds.
        some_seeds = group[0].variant != group[0].seedless_variant
        cannot.append(("quality at one seed: every loop's F1 interval overlaps every other's",
                       "every loop at the seeds the sweep ran (`--resume` with `--loops all` and the same `--seeds`) "
                       "for a paired verdict across seeds" if some_seeds else
                       "`--seeds 1,2,3` for a paired verdict across seeds"))
    train_holds, train_cannot = _training(group, title, ctx.explained_any)
    holds += ([] if across else _extremes(group, title)) + train_holds
    return holds, cannot + train_cannot + _general(ctx, group, rows, title, across)


def _general(ctx: Context, group: list[CellStats], rows: dict, title: str, across: bool) -> list[tuple]:
    """What no group can tell for the run's own reasons: repeats, a busy machine, outlier steps, machines."""
    cannot = []
    if min(len(c.ok) for c in group) < 2 and any(row.kind is Kind.SINGLE for row in rows.values()):
        cannot.append(("a step-time gap beyond 5% from one run per cell", "`--repeats 3`"))
    if any(c.busy_kind == FOREIGN for c in group):
        cannot.append(("the speed of runs measured on a busy machine (⚠ busy)", "rerun them on a quiet machine"))
    if any(c.busy_kind == SIBLINGS for c in group):
        cannot.append(("the speed of runs measured beside other cells of their sweep sharing their cores or GPU "
                       "(⚠ shared)", "rerun them one at a time (the sequential executor)"))
    outliers = [c.loop for c in group if _outlier_steps(c) and not c.busy]  # a busy run is said as such
    if outliers:
        short = bool(group[0].run.max_steps)
        cannot.append((f"{title}: samples/s of " + ", ".join(md.text(x) for x in outliers) + f" (mean step over "
                       f"{OUTLIER_MEAN_OVER_MEDIAN:g}× the median: slow outlier steps, such as a GPU's first step "
                       "of each new batch shape; the step ratio compares medians)",
                       "a longer run amortises one-off steps (`--epochs 3`), fixed shapes avoid them "
                       "(`--pad-to-multiple-of`)" if short else "the step-time plot shows where the slow steps fall"))
    if across:
        cannot.append((f"{title}: speed, memory and startup across the machines its runs were measured on",
                       "rerun its loops on one machine"))
    elif ctx.environments.mixed_machines:
        cannot.append((f"time figures across the {ctx.environments.machine_total} machines in these records: each "
                       f"group's compare only with those of its machine ([Environment]({anchor('Environment')}))", None))
    else:
        cannot.append(("how these figures carry to another CPU or GPU class (one machine)", None))
    return cannot


def _outlier_steps(c: CellStats) -> bool:
    mean, p50 = c.median(lambda r: r.step_s_mean), c.median(lambda r: r.step_s_p50)
    return bool(mean and p50 and mean > OUTLIER_MEAN_OVER_MEDIAN * p50)
