"""The answer first: a table per device x precision (x variant), or, under ``--seeds``, one per
seed group over its seeds (or, where no other loop ran two of the manual loop's seeds, one table
with a row per seed and loop); then at most three sentences: what holds, what cannot be told, what to
run to tell it.  Every figure links to the section it comes from; each seed's own table is in
*Each seed's runs* (``bench/report/per_seed.py``)."""

from __future__ import annotations

from bench.analysis.siblings import FOREIGN, MARKS, worse

from loops import REFERENCE_LOOP
from bench.report import markdown as md
from bench.analysis.cells import CellStats, comparison_groups, manual_cell
from bench.analysis.columns import EVAL_F1, PEAK_MIB, SAMPLES_PER_S
from bench.analysis.gaps import GapRow, gap_rows, phase_note
from bench.analysis.machines import machine_count
from bench.analysis.siblings import mark
from bench.analysis.quality import QualityGroup
from bench.analysis.verdicts import GAP_TOLERANCE, Kind
from bench.report import evidence, gaps, phases, quality
from bench.report.context import Context
from bench.report.format import anchor, f, seeds_shown, table

HEADING = "Bottom line"
# The table's word for each kind of a step ratio (the gap table says it at length).
SHORT = {Kind.SAME: f"within {GAP_TOLERANCE:.0%}", Kind.REAL: "{pct} {dir} in every run",
         Kind.NOISE: "{pct} {dir}: noise", Kind.SINGLE: "{pct} {dir}, one run", Kind.BUSY: "{pct} {dir}, ⚠ busy",
         Kind.SHARED: "{pct} {dir}, ⚠ shared", Kind.NONE: "other batches"}


def _linked(value: str, link: str) -> str:
    return value if value == "-" else f"[{value}]({link})"


def _ratio(row: GapRow | None, c: CellStats, ref: CellStats | None) -> str:
    if c is ref:
        return "reference"
    if row is None or row.step_ratio is None:
        return "-" if row is None else SHORT[Kind.NONE]
    r = row.step_ratio
    words = SHORT[row.kind].format(pct=f"{abs(r - 1):.0%}", dir="slower" if r > 1 else "faster")
    if row.kind in (Kind.REAL, Kind.NOISE) and row.phase_delta_s:
        words += f" ([{phase_note(row.phase_delta_s)}]({anchor(phases.HEADING)}))"
    return f"[{r:.2f}×]({anchor(gaps.HEADING)}) {words}"


def _f1(c: CellStats, base) -> str:
    f1, ci = c.median(EVAL_F1), c.f1_ci95()
    if f1 is None:
        return "-"
    text = f"[{f1:.3f}]({anchor(c.device)})" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    if base:
        if abs(f1 - base.f1) < 5e-5:
            text += " = floor"
        elif ci and ci[0] > base.f1:
            text += " > floor"
        elif ci and ci[1] < base.f1:
            text += " < floor"
    return text


def _where(ctx: Context, device: str, runs: list) -> str:
    env = runs[0].env or {}
    where = (f"{env.get('cpu_name', '?')} family/model {env.get('cpu_family_model', '?')}, "
             f"{env.get('torch_threads', '?')} threads" if device == "cpu" else env.get("gpu_name") or device)
    envs = ctx.environments
    if envs.mixed_machines and machine_count(runs) > 1:
        return f"{machine_count(runs)} machines: environments {', '.join(envs.letters(runs))}"
    if envs.mixed:
        letters = envs.letters(runs)
        where += "; " + (f"environment {', '.join(letters)}" if letters else "environment not recorded")
    return where


def _group_rows(ctx: Context, group: list[CellStats], base) -> list[list[str]]:
    """A row per loop of one comparison group, its step time against that group's manual loop."""
    rows = {row.loop: row for row in gap_rows(group) if row.runs or not row.other_machine}
    ref = manual_cell(group)
    dev = anchor(group[0].device)
    body = []
    for c in group:
        p50 = c.median(lambda r: r.step_s_p50)
        busy = mark(c.busy_kind)
        body.append([f"**{md.text(c.loop)}**", _linked(f(c.median(SAMPLES_PER_S)), dev) + busy,
                     f(p50 and p50 * 1000), _ratio(rows.get(c.loop), c, ref), _f1(c, base),
                     _linked(f(c.median(PEAK_MIB), "{:.0f}"), dev), _linked(f(c.startup_s()), dev)])
    return body


def _header(ctx: Context, title: str, groups: list[list[CellStats]]) -> tuple[str, list[str]]:
    """The line naming what ran where, and the table's columns, for one or more comparison groups."""
    cells = [c for group in groups for c in group]
    runs = [r for c in cells for r in c.ok]
    run = cells[0].run
    length = f"{run.max_steps} steps" if run.max_steps else f"{run.epochs} epochs"
    counters = any(c.median(lambda r: r.peak_alloc_mib) is not None for c in cells)
    line = (f"**{title}**: {md.text(_where(ctx, cells[0].device, runs))}; {length} of {md.code(run.model)}, "
            f"{min(len(c.ok) for c in cells)} run(s) per cell")
    return line, ["loop", "samples/s", "step p50 ms", "step time vs manual", "val F1 [95% CI]",
                  f"peak MiB {'allocated' if counters else 'RSS'}", "startup s"]


def group_table(ctx: Context, key: tuple, group: list[CellStats], base) -> list[str]:
    """One comparison group's table: a line naming what ran where, then a row per loop."""
    device, precision, variant = key
    title = f"{md.text(device)} / {md.text(precision)}" + (f" / {md.text(variant)}" if variant else "")
    line, header = _header(ctx, title, [group])
    return [line, "", *table(header, _group_rows(ctx, group, base)), ""]


def seeds_folded(ctx: Context, key: tuple, groups: list[list[CellStats]], base) -> list[str]:
    """Comparison groups that differ only by seed and that no across-seed table answers (one loop
    ran every seed, the others fewer): one table, a row per seed and loop, each loop's step time
    against the manual loop of its own seed, instead of a table per seed."""
    device, precision, seedless = key
    seeds = seeds_shown([str(group[0].seed) for group in groups])
    title = (f"{md.text(device)} / {md.text(precision)}" + (f" / {md.text(seedless)}" if seedless else "")
             + f", {seeds}")
    line, header = _header(ctx, title, groups)
    body = [[md.text(str(group[0].seed)), *row] for group in groups for row in _group_rows(ctx, group, base)]
    return [line, "", *table(["seed", *header], body), ""]


def speed_beside_manual(v) -> str:
    """A loop's samples/s over manual's, median over the seeds at which both ran on one machine; the
    seeds left out are named, and a loop never run beside manual says so instead of a ratio."""
    beside = [seed for seed, same in v.beside_reference.items() if same]
    if v.speed_ratio is None:
        if v.beside_reference and not beside:
            return "no ratio: never on manual's machine"
        return "-"
    apart = sorted((seed for seed, same in v.beside_reference.items() if not same), key=str)
    if not apart:
        return f"{v.speed_ratio:.2f}× manual's"
    return (f"{v.speed_ratio:.2f}× manual's ({seeds_shown(sorted(beside, key=str))}; "
            f"{', '.join(str(s) for s in apart)} on another machine)")


def seeds_table(q: QualityGroup) -> list[str]:
    """A seed group's answer: per loop over its seeds, the speed ratio, F1 and the paired verdict."""
    ref = q.loops.get(REFERENCE_LOOP)
    seeds = seeds_shown(quality.seeds_said(q).split(", "))
    native = " out of the box (`--defaults native`)" if q.defaults == "native" else ""
    body = []
    for loop, v in q.loops.items():
        busy = sorted(set(v.busy_seeds) | set(ref.busy_seeds if ref else ()), key=str)
        kind = worse(*v.busy_kinds.values(), *(ref.busy_kinds.values() if ref else ()))  # a busy machine, or siblings
        mark = f" {MARKS.get(kind, MARKS[FOREIGN])} at {', '.join(str(s) for s in busy)}" if busy else ""
        t = quality.to_target_short(v.time_to_target)
        if loop == REFERENCE_LOOP:
            name = "**manual** (the tutorial's loop)" if q.reference_is_tutorial else "**manual**"
            mixed = f" (median over {v.machines} machines)" if v.machines > 1 else ""
            body.append([name, f"{f(v.samples_per_s)} samples/s{mixed}{mark}", quality.pm(v.f1_mean, v.f1_sd),
                         "reference", "", t])
            continue
        c = v.comparison
        diff = "-" if c is None else f"{c.across.f1_diff:+.4f} [{quality.ci_signed(c.across.f1_diff_ci95)}]"
        verdict = "no paired predictions" if c is None else f"**{c.verdict}**: {c.why}"
        body.append([f"**{md.text(loop)}**", f"{speed_beside_manual(v)}{mark}",
                     quality.pm(v.f1_mean, v.f1_sd), diff, verdict, t])
    header = ["loop", "speed (median over seeds)", "val F1 mean ± seed sd", "F1 − manual [95% CI]", "verdict",
              "time to target"]
    return [f"**{md.text(quality.title(q))}, across {seeds}{native}** "
            f"([paired comparison]({anchor(quality.HEADING)})):", "", *table(header, body), ""]


def seeded(ctx: Context) -> list[QualityGroup]:
    """The seed groups answered over their seeds: more than one seed, with a paired comparison."""
    return [q for q in ctx.quality if REFERENCE_LOOP in q.loops and len(quality.seeds_said(q).split(", ")) > 1
            and any(v.comparison for v in q.loops.values())]


def per_seed_keys(ctx: Context) -> set:
    """The comparison groups a seed group's table answers (each seed's own table is detail)."""
    covered = {(q.device, q.precision, q.variant) for q in seeded(ctx)}
    return {(c.device, c.precision, c.variant) for c in ctx.main + ctx.seed_cells
            if (c.device, c.precision, c.seedless_variant) in covered}


def groups_of(ctx: Context) -> list[tuple]:
    groups = [(key, [c for c in group if c.ok]) for key, group in comparison_groups(ctx.main).items()]
    return [(key, group) for key, group in groups if group]


def majority_floor(ctx: Context):
    return next((r.eval_majority_baseline for r in ctx.main_ok if r.eval_majority_baseline), None)


def lines(ctx: Context) -> list[str]:
    groups = groups_of(ctx)
    if not groups:
        return [f"## {HEADING}", "", "No cell ran to the end: nothing to conclude (see *Skipped and failed cells*).", ""]
    base = majority_floor(ctx)
    out = [f"## {HEADING}", ""]
    for q in seeded(ctx):
        out += seeds_table(q)
    answered = per_seed_keys(ctx)
    holds, cannot = [], []
    for q in seeded(ctx):
        h, c = evidence.seed_picks(q)
        holds += h
        cannot += c
    # Groups apart only by their seed share one table, a row per seed and loop.
    by_seedless: dict[tuple, list[list[CellStats]]] = {}
    for key, group in groups:
        if key not in answered:
            by_seedless.setdefault((key[0], key[1], group[0].seedless_variant), []).append(group)
    for key, group in groups:
        if key in answered:
            pass
        elif len(folded := by_seedless[(key[0], key[1], group[0].seedless_variant)]) > 1 and \
                len({g[0].seed for g in folded}) == len(folded):
            if group is folded[0]:
                out += seeds_folded(ctx, (key[0], key[1], group[0].seedless_variant), folded, base)
        else:
            out += group_table(ctx, key, group, base)
        h, c = evidence.picks(ctx, key, group, base, detail=key not in answered)
        holds += h
        cannot += c
    return out + evidence.sentences(holds, cannot)
