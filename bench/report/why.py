"""Why do they differ?  ``bench explain``: each difference between two loops' native setups, measured alone."""

from __future__ import annotations

from bench.report import markdown as md
from bench.analysis.explain import ALL, Explained
from bench.analysis.verdicts import PARITY_TOLERANCE
from bench.report.context import Context
from bench.report.format import f, head

HEADING = "Why do they differ?"
INTRO = ("Each loop ran with its library's own defaults (`--defaults native`, declared in `loops/native.py`); "
         "`bench explain` then ran the first loop with each differing setting set to the second's value, "
         "and each loop without the machinery only its library has. An effect is what the difference adds "
         "to the first loop's mean step to make the second's (paired repeats, median); positive is slower. "
         "What the single flips do not add up to is left as interactions and the loops' own code.")


def _ms(v) -> str:
    return "-" if v is None else f"{v * 1000:+.1f}"


def _seed_said(ctx: Context, e: Explained) -> str:
    """" / seed N, bs 4" where flips ran at more than one point of the plan (each point's flips pair
    with its own cells)."""
    return f" / {md.text(e.variant)}" if len({x.variant for x in ctx.explained}) > 1 else ""


def _effects(e: Explained, seed_said: str) -> list[str]:
    a, b = e.a, e.b
    lines = [f"### {e.device} / {e.precision}{seed_said}: {a} → {b}", "",
             f"Mean step: {a} {f(e.step_a_s and e.step_a_s * 1000)} ms, {b} "
             f"{f(e.step_b_s and e.step_b_s * 1000)} ms: {_ms(e.total_s)} ms to explain"
             + (" (their runs were measured on different machines: nothing to explain between them)"
                if e.total_s is None and e.step_a_s and e.step_b_s else "") + ".", "",
             *head("| difference | values (" + a + " → " + b + ") | flipped in | effect ms/step | runs | verdict | phase | "
                   "peak MiB | final loss | val F1 |")]
    for r in e.effects:
        values = f"{md.code(r.values[0])} → {md.code(r.values[1])}" if r.values else "library machinery"
        lines.append(f"| `{r.setting}` | {values} | {r.how} | {_ms(r.effect_s)} | {r.runs} | {r.verdict} | "
                     f"{r.phase_note} | {f(r.mem_mib, '{:+.0f}')} | {f(r.loss_final, '{:+.2e}')} | {f(r.f1, '{:+.4f}')} |")
    lines.append(f"| interactions and the loops' own code | | | {_ms(e.unexplained_s)} | | what the single flips "
                 "leave of the total | | | | |")
    return lines + [""]


def _lists(e: Explained) -> list[str]:
    diff, lines = e.differences, []
    if diff.inert:
        lines += ["Not flipped, since they cannot act in this cell: " + "; ".join(
            f"`{k}` ({loop}): {why}" for (loop, k), why in diff.inert.items()) + ".", ""]
    lines += ["Held the same in both, by bench: " + "; ".join(f"{k}: {why}" for k, why in diff.held.items()) + ".", ""]
    if diff.undeclared:
        lines += ["**Read back as different but declared nowhere** (the list above may be incomplete): "
                  + ", ".join(f"`{md.text(k)}`" for k in diff.undeclared) + ".", ""]
    every = e.everything
    if every:
        closes = every.parity is not None and every.parity <= PARITY_TOLERANCE
        lines += [f"{e.a} with every setting of {e.b} at once (`{ALL}`): step losses within {f(every.parity, '{:.1e}')} "
                  f"of {e.b}'s (against {f(e.parity_ab, '{:.1e}')} for {e.a} as it was): "
                  + ("**the listed settings are the whole difference in what is trained**" if closes else
                     f"**not within {PARITY_TOLERANCE:g}: something that changes training is missing from the list**")
                  + (f"; its mean step is {_ms(every.row.effect_s)} ms from {e.a}'s." if every.row.effect_s is not None
                     else "."), ""]
    return lines


def lines(ctx: Context) -> list[str]:
    if not ctx.explained:
        return []
    out = [f"## {HEADING}", "", INTRO, ""]
    drawn = ctx.plots_of(__name__)
    for e in ctx.explained:
        out += _effects(e, _seed_said(ctx, e)) + _lists(e)
        key = (e.device, e.precision, e.variant, e.a, e.b)
        if key in drawn:
            out += [f"![why {e.a} and {e.b} differ, {e.device} / {e.precision}{_seed_said(ctx, e)}]({drawn[key]})", ""]
    return out


def plots(ctx: Context, plt) -> dict:
    """From loop A's mean step to loop B's: each measured difference, then what is left."""
    from bench.report import plotting

    made = {}
    for e in ctx.explained:
        if e.step_a_s is None or e.step_b_s is None or e.total_s is None:
            continue  # nothing to explain, or the two loops' steps were measured on different machines
        steps = [(e.a, e.step_a_s * 1000, "total")] + [(r.setting, (r.effect_s or 0) * 1000, "delta") for r in e.effects]
        steps += [("rest", (e.unexplained_s or 0) * 1000, "delta"), (e.b, e.step_b_s * 1000, "total")]
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(steps) + 1), 4))
        level = 0.0
        for i, (name, value, kind) in enumerate(steps):
            if kind == "total":
                ax.bar(i, value, color="#4c72b0")
                level = value
            else:
                ax.bar(i, value, bottom=level, color="#c44e52" if value > 0 else "#55a868")
                level += value
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels([s[0] for s in steps], fontsize=8, rotation=20, ha="right")
        ax.set_ylabel("ms per optimizer step (mean)")
        ax.set_title(f"{e.a} → {e.b}, {e.device} / {e.precision}: what each difference adds")
        fig.tight_layout()
        where = [e.variant.replace(" ", "")] if _seed_said(ctx, e) else []
        made[(e.device, e.precision, e.variant, e.a, e.b)] = plotting.save(
            plt, fig, plotting.png(ctx.out_md, e.device, e.precision, *where, e.a, e.b, "why"))
    return made
