"""The answer first: per device x precision (x variant), one sentence per loop, then what the
evidence supports and what it cannot tell.  Every figure links to the section it comes from."""

from __future__ import annotations

from bench import markdown as md
from bench.analysis.cells import CellStats, comparison_groups, manual_cell
from bench.analysis.columns import EVAL_F1, PEAK_MIB, SAMPLES_PER_S
from bench.analysis.gaps import GapRow, gap_rows, phase_note
from bench.analysis.machines import machine_count, same_machine
from bench.analysis.parity import Parity, parity_rows
from bench.analysis.verdicts import GAP_TOLERANCE, PARITY_TOLERANCE, Kind, say
from bench.report import gaps, parity, phases, quality, why
from bench.report.context import Context
from bench.report.format import anchor, f

HEADING = "Bottom line"


def _speed(c: CellStats, ref: CellStats | None, row: GapRow | None) -> str:
    sps, dev_link = c.median(SAMPLES_PER_S), anchor(c.device)
    if c is ref:
        return f"[{f(sps)} samples/s]({dev_link}), the reference"
    if row is None:
        return f"[{f(sps)} samples/s]({dev_link})"
    # The verdict judges the paired step ratio, so that is the figure said beside it (a samples/s
    # ratio of medians can sit apart from it when the repeats' noise or the batches differ).
    text = say(row.kind, "bottom", row.step_ratio)
    ratio = (f"step time {row.step_ratio:.2f}× manual's" if row.step_ratio is not None else
             f"{f(row.sps_ratio, '{:.2f}')}× manual's samples/s")
    speed = f"[{f(sps)} samples/s]({dev_link}), [{ratio}]({anchor(gaps.HEADING)}): {text}"
    if row.kind in (Kind.REAL, Kind.NOISE) and row.phase_delta_s:
        speed += f" ([{phase_note(row.phase_delta_s)}]({anchor(phases.HEADING)}))"
    return speed


def _quality(c: CellStats, base) -> str:
    f1, ci = c.median(EVAL_F1), c.f1_ci95()
    quality = f"[val F1 {f(f1, '{:.3f}')}]({anchor(c.device)})" + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
    if base and f1 is not None:
        if abs(f1 - base.f1) < 5e-5:
            quality += ", exactly the majority-class floor"
        elif ci and ci[0] > base.f1:
            quality += ", above the majority-class floor"
        elif ci and ci[1] < base.f1:
            quality += f", below the majority-class floor ({base.f1:.3f})"
        else:
            quality += f", not clearly above the majority-class floor ({base.f1:.3f})"
    return quality


def _group(ctx: Context, key: tuple, group: list[CellStats], base) -> list[str]:
    device, precision, variant = key
    runs = [r for c in group for r in c.ok]
    env = runs[0].env or {}
    counters = any(c.median(lambda r: r.peak_alloc_mib) is not None for c in group)
    mem_word = "allocated" if counters else "RSS"
    repeats = min(len(c.ok) for c in group)
    run = group[0].run
    length = f"{run.max_steps} steps" if run.max_steps else f"{run.epochs} epochs"
    where = (f"{env.get('cpu_name', '?')} family/model {env.get('cpu_family_model', '?')}, "
             f"{env.get('torch_threads', '?')} threads" if device == "cpu" else env.get("gpu_name") or device)
    envs = ctx.environments
    if envs.mixed_machines and machine_count(runs) > 1:
        where = f"{machine_count(runs)} machines: environments {', '.join(envs.letters(runs))}"
    elif envs.mixed:
        where += f"; {_env_said(envs.letters(runs))}"
    lines = [f"**{device} / {precision}{' / ' + variant if variant else ''}** ({where}; {length} of "
             f"{md.code(run.model)}, {repeats} run(s) per cell):", ""]
    across = not same_machine(runs)
    rows = {row.loop: row for row in gap_rows(group) if row.runs or not row.other_machine}  # no gap verdict between machines
    ref = manual_cell(group)
    for c in group:
        dev_link = anchor(c.device)
        lines.append(f"- **{c.loop}**: {_speed(c, ref, rows.get(c.loop))}; {_quality(c, base)}; "
                     f"[peak {f(c.median(PEAK_MIB), '{:.0f}')} MiB {mem_word}]({dev_link}); "
                     f"[startup {f(c.startup_s())} s]({dev_link}).")
    lines.append("")
    return lines + picks(group, rows, base, repeats, explained=ctx.explained_any, machines=_machines(ctx, runs),
                         across_machines=across)


def _env_said(letters: list[str]) -> str:
    return f"environment {', '.join(letters)}" if letters else "environment not recorded"


def _machines(ctx: Context, runs: list) -> str:
    """What the group's figures compare with, as the machines its runs and the report's ran on allow."""
    envs = ctx.environments
    if not envs.mixed_machines:
        return "one machine: these figures compare within this CPU/GPU class only"
    letters = ", ".join(envs.letters(runs))
    if machine_count(runs) > 1:
        return (f"these runs were measured on {machine_count(runs)} machines (environments {letters}; "
                f"[Environment]({anchor('Environment')})): their speed, memory and startup do not compare with "
                "each other, only their F1 does")
    return (f"{envs.machine_total} machines in these records ([Environment]({anchor('Environment')})): this "
            f"group's figures ({_env_said(envs.letters(runs))}) compare only with those measured on its machine")


def lines(ctx: Context) -> list[str]:
    groups = [(key, [c for c in group if c.ok]) for key, group in comparison_groups(ctx.main).items()]
    groups = [(key, group) for key, group in groups if group]
    if not groups:
        return [f"## {HEADING}", "", "No cell ran to the end: nothing to conclude (see *Skipped and failed cells*).", ""]
    base = next((r.eval_majority_baseline for r in ctx.main_ok if r.eval_majority_baseline), None)
    out = [f"## {HEADING}", ""]
    for key, group in groups:
        out += _group(ctx, key, group, base)
    return out + quality.bottom_lines(ctx)  # and what each loop delivers, across seeds


def _speed_supports(rows: dict) -> list[str]:
    gap_link = anchor(gaps.HEADING)
    real = [loop for loop, row in rows.items() if row.kind is Kind.REAL]
    out = []
    if real:
        out.append("speed: " + "; ".join(
            f"{loop} is {abs(rows[loop].step_ratio - 1):.0%} {'slower' if rows[loop].step_ratio > 1 else 'faster'} "
            f"than manual in every run, {phase_note(rows[loop].phase_delta_s)}" for loop in real)
            + f" ([gap table]({gap_link}))")
    if rows and all(row.kind is Kind.SAME for row in rows.values()):
        out.append(f"speed: every loop is within {GAP_TOLERANCE:.0%} of the manual loop's step time "
                   f"([gap table]({gap_link})): the choice between them is not a matter of speed here")
    elif rows and not real:
        out.append(f"speed: no loop's gap to the manual loop holds in every run ([gap table]({gap_link}))")
    return out


def _extremes(group: list[CellStats]) -> list[str]:
    """Which loop starts soonest and which peaks lowest, and by how much."""
    dev_link, out = anchor(group[0].device), []
    setups = {c.loop: c.startup_s() for c in group if c.startup_s() is not None}
    if len(setups) > 1:
        fast, slow = min(setups, key=setups.get), max(setups, key=setups.get)
        out.append(f"startup: {fast} reaches its first step soonest ([{setups[fast]:.1f} s]({dev_link})), {slow} "
                   f"last ([{setups[slow]:.1f} s]({dev_link})): what a short run pays on top of its steps")
    mems = {c.loop: c.median(PEAK_MIB) for c in group if c.median(PEAK_MIB) is not None}
    if len(mems) > 1:
        lo, hi = min(mems, key=mems.get), max(mems, key=mems.get)
        out.append(f"memory: {lo} peaks lowest ([{mems[lo]:.0f} MiB]({dev_link})), {hi} highest "
                   f"([{mems[hi]:.0f} MiB]({dev_link}), {mems[hi] / mems[lo] - 1:+.0%})")
    return out


def _training(group: list[CellStats], explained: bool) -> tuple[list[str], list[str]]:
    """(what the parity rows support, what they cannot tell) of a --parity group."""
    if not group[0].run.parity:
        return [], []
    rows = parity_rows(group)
    agree = [row for row in rows if row.verdict in (Parity.AGREES, Parity.FAILS)]
    differ = [row for row in rows if row.verdict is Parity.DIFFERS]
    link, why_link = anchor(parity.HEADING), f"[{why.HEADING}]({anchor(why.HEADING)})"
    out = []
    if differ:
        names = ", ".join(f"{row.loop} (step losses up to {row.max_rel_diff or 0:.1e} apart)" for row in differ)
        out.append(f"training: {names} {'runs' if len(differ) == 1 else 'run'} with settings that differ from the "
                   f"manual loop's ([parity]({link})): not expected to train the same thing"
                   + (f" (what each difference is worth: {why_link})" if explained else ""))
    if agree:
        worst = max((row.max_rel_diff or 0) for row in agree)
        same = worst <= PARITY_TOLERANCE
        out.append((f"training: every loop's step losses agree with the manual loop's within {worst:.1e} " if same else
                    f"training: some loop's step losses differ from the manual loop's by up to {worst:.1e} ")
                   + f"([parity]({link})): "
                   + ("they train the same thing" if same else "they do not train the same thing"
                      + (f" (what differs, and what each difference is worth: {why_link})" if explained else "")))
    cannot = []
    elsewhere = [row for row in rows if row.verdict is Parity.ELSEWHERE]  # apart, on another machine: no verdict
    if elsewhere:
        names = ", ".join(f"{row.loop} (up to {row.max_rel_diff or 0:.1e})" for row in elsewhere)
        cannot.append(f"training: the step losses of {names} differ from the manual loop's, but were measured on "
                      f"another machine than manual's ([parity]({link})): whether they train the same thing needs "
                      "both on one machine")
    return out, cannot


def picks(group: list[CellStats], rows: dict, base, repeats: int, explained: bool = False,
          machines: str = "one machine: these figures compare within this CPU/GPU class only",
          across_machines: bool = False) -> list[str]:
    """What the evidence of one group supports, and what it cannot tell; ``machines``: what its
    figures compare with, as the machines of its runs allow; ``across_machines``: its runs were
    measured on more than one machine, so nothing is said of their speed, memory or startup."""
    run = group[0].run
    supports, cannot = ([] if across_machines else _speed_supports(rows)), []
    cis = {c.loop: c.f1_ci95() for c in group}
    cis = {k: v for k, v in cis.items() if v}
    if len(cis) > 1 and max(lo for lo, _ in cis.values()) <= min(hi for _, hi in cis.values()):
        supports.append("quality: every loop's F1 interval overlaps every other's: this validation set does not tell "
                        "them apart")
    f1s = [c.median(EVAL_F1) for c in group]
    if base and f1s and all(v is not None and abs(v - base.f1) < 5e-5 for v in f1s):
        cannot.append(f"quality: every loop scores exactly the majority-class floor (F1 {base.f1:.4f}): after "
                      f"{run.max_steps or run.epochs} {'steps' if run.max_steps else 'epochs'} none "
                      "has learned beyond the class balance, so quality cannot rank them; train longer")
    training_supports, training_cannot = _training(group, explained)
    supports += ([] if across_machines else _extremes(group)) + training_supports
    cannot += training_cannot
    if repeats < 2:
        cannot.append("one run per cell: a gap cannot be told from this machine's run-to-run noise (`--repeats 3`)")
    if any(c.busy for c in group):
        cannot.append("some runs were measured on a busy machine (⚠ busy): their speed is the machine's")
    cannot.append(machines)
    return (["Supported: " + "; ".join(supports) + "."] if supports else []) + \
        ["", "Cannot tell: " + "; ".join(cannot) + ".", ""]
