"""The document ``bench compare A B`` writes: B against A cell by cell, from ``analysis.compare``."""

from __future__ import annotations

from bench.report import markdown as md
from bench.analysis.cells import cells_of
from bench.analysis.columns import EVAL_F1, SAMPLES_PER_S
from bench.analysis.compare import Comparison, compare, fingerprint, ratio_columns
from bench.analysis.machines import machine_count
from bench.analysis.verdicts import GAP_TOLERANCE
from bench.records import Record
from bench.report.format import f

TITLE = "# bench compare"
ENV_KEYS = ("torch", "transformers", "accelerate", "lightning", "cpu_name", "cpu_family_model", "torch_threads",
            "gpu_name", "git_sha")


def _env(records: list[Record]) -> dict:
    r = next((r for r in records if r.status == "ok"), records[0])
    env = r.env or {}
    return {k: env.get(k) for k in ENV_KEYS}


def _differs_line(records_a: list[Record], records_b: list[Record], cmp: Comparison, named: set[str]) -> str:
    env_a, env_b = _env(records_a), _env(records_b)
    env_diff = [f"{k}: {md.code(env_a[k])} → {md.code(env_b[k])}" for k in env_a if env_a[k] != env_b[k]]
    unknown = [label for label, cells in (("A", [a for a, _ in cmp.pairs]), ("B", [b for _, b in cmp.pairs]))
               if any(not fingerprint(c) for c in cells)]
    if unknown:  # records made before the data was fingerprinted: not known to be the same
        env_diff.append(f"the data is not fingerprinted in {' and '.join(unknown)} (older records)")
    for label, records in (("A", records_a), ("B", records_b)):
        n = machine_count(records)
        if n > 1:  # the first run's environment above does not stand for all of them
            env_diff.append(f"{label}'s runs were measured on {n} machines (its report's *Environment* says which "
                            "ran where): rows of different cells may pair different machines, and a cell whose "
                            "repeats span them gets no ratio")
    return ("What differs besides the code under test: " + ("; ".join(env_diff) if env_diff else "nothing recorded")
            + (f"; settings named with --differ: {', '.join(sorted(named))}" if named else "") + ".")


def _table(cmp: Comparison) -> list[str]:
    ratios = ratio_columns()
    sps = SAMPLES_PER_S.name
    seeds = len({r.seed for r in cmp.rows}) > 1  # a --seeds sweep: which seed each row is
    header = (["loop", "device", "precision", *(["seed"] if seeds else []), f"{SAMPLES_PER_S.label} A",
               f"{SAMPLES_PER_S.label} B"]
              + [f"{c.label} B/A" for c in ratios] + [f"{EVAL_F1.label} A → B", "verdict"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in cmp.rows:
        cells = [r.loop, r.device, r.precision, *([str(r.seed)] if seeds else []), f(r.a[sps]), f(r.b[sps])]
        cells += [f(r.ratios[c.name], "{:.3f}") for c in ratios]
        cells += [f"{f(r.a[EVAL_F1.name], EVAL_F1.fmt)} → {f(r.b[EVAL_F1.name], EVAL_F1.fmt)}", r.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _gate(cmp: Comparison, fail_above: float) -> list[str]:
    lines = [(f"**Slower than the {fail_above:g}% limit:** " + ", ".join(
        f"{r.loop}/{r.device}/{r.precision} ({(1 - r.sps_ratio):.1%} fewer samples/s)" for r in cmp.slower))
        if cmp.slower else f"No cell is more than {fail_above:g}% slower in B.", ""]
    if cmp.broken:  # a gate passing cells that failed, are missing or cannot be judged would pass a broken run
        lines += ["**Failed, missing in B, or not judged:** " + "; ".join(
            f"{b.loop}/{b.device}/{b.precision} ({b.why})" for b in cmp.broken) + ".", ""]
    return lines


def render(records_a: list[Record], records_b: list[Record], names: tuple[str, str], named: set[str],
           fail_above: float | None) -> tuple[str, Comparison]:
    """The Markdown, and the comparison (its ``slower`` and ``broken`` the gate's failures)."""
    records_a, records_b = md.shown(records_a), md.shown(records_b)  # record strings as plain text
    cmp = compare(cells_of(records_a), cells_of(records_b), named, fail_above)
    lines = [f"{TITLE}: {md.text(names[1])} (B) against {md.text(names[0])} (A)", "",
             "Each ratio is B over A, medians over each cell's repeats; the verdict pairs the repeats by index. "
             f"A change within {GAP_TOLERANCE:.0%} is called the same speed.", "",
             _differs_line(records_a, records_b, cmp, named), ""]
    lines += _table(cmp)
    for label, cells in (("A", cmp.only_a), ("B", cmp.only_b)):
        if cells:
            lines += [f"Only in {label}: " + ", ".join(f"{c.loop}/{c.device}/{c.precision}" for c in cells) + ".", ""]
    if fail_above is not None:
        lines += _gate(cmp, fail_above)
    return "\n".join(lines).rstrip() + "\n", cmp
