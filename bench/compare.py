"""``bench compare A B``: two result sets (a torch upgrade, another machine, before/after a change)
matched cell by cell, with the ratio B/A of each figure and a noise-aware verdict.

Cells are matched on loop, device, precision, processes and the run config.  What may differ is
what is outside the run config (library versions, the machine) and the config fields the user
names with ``--differ``; a cell of A and a cell of B that would match but for a field nobody named
are refused (exit 2, the fields named), since their ratio would measure that field and not what
the user thinks.  ``--fail-above PCT`` exits 1 when some cell's samples/s in B is more than PCT%
below A's (median over repeats): usable as a CI gate.  A pure function of the records, like the
report.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import markdown as md
from bench.analysis import GAP_TOLERANCE, CellStats, cells_of, paired_kind
from bench.config import ConfigError

COMPARE_TITLE = "# bench compare"
# Where the data lives, and whether the step is split into phases, change no training.
NOT_TRAINING = {"glue_dir", "phases", "peak_tflops"}  # MFU's denominator changes no training either


def _config(c: CellStats, named: set[str]) -> dict:
    return {k: v for k, v in c.run.items() if k not in NOT_TRAINING | named}


def _differing(a: dict, b: dict) -> list[str]:
    return [f"{k} ({a.get(k)!r} in A, {b.get(k)!r} in B)" for k in sorted(set(a) | set(b))
            if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True)]


def _axes(c: CellStats) -> tuple:
    return c.loop, c.device, c.precision, c.ok[0].get("world_size", 1) if c.ok else c.records[0].get("world_size", 1)


DATA_FIELD = "data_fingerprint"


def fingerprint(c: CellStats) -> str:
    """The data the cell trained and evaluated on (records before fingerprints: "")."""
    return next((r.get(DATA_FIELD) for r in c.records if r.get(DATA_FIELD)), "")


def check_named(cells: list[CellStats], named: set[str]) -> None:
    """``--differ`` names run settings (or the data): a name that is none of them is a typo, not a pass."""
    known = {k for c in cells for k in c.run} | {DATA_FIELD}
    unknown = sorted(named - known)
    if unknown:
        raise ConfigError(f"--differ {','.join(unknown)}: not a run setting of these records; the settings are: "
                          f"{', '.join(sorted(known - NOT_TRAINING))}")


def check_same_data(pairs: list, named: set[str]) -> None:
    """A pair trained on different data (another --glue-dir content, another slice) is refused
    unless ``--differ data_fingerprint`` says so on purpose."""
    if DATA_FIELD in named:
        return
    for a, b in pairs:
        fa, fb = fingerprint(a), fingerprint(b)
        if fa and fb and fa != fb:
            raise ConfigError(
                f"{a.loop}/{a.device}/{a.precision}: A and B trained on different data ({DATA_FIELD} {fa} in A, "
                f"{fb} in B: another copy or slice of MRPC). Name it with --differ {DATA_FIELD} if on purpose, or "
                "compare runs on the same data")


def match(cells_a: list[CellStats], cells_b: list[CellStats], named: set[str]) -> tuple[list, list, list]:
    """(pairs, only in A, only in B); refuses a pair that differs in an unnamed training setting."""
    pairs, left_b = [], list(cells_b)
    only_a = []
    for a in cells_a:
        twin = next((b for b in left_b if _axes(b) == _axes(a) and _config(b, named) == _config(a, named)), None)
        if twin is None:
            only_a.append(a)
        else:
            pairs.append((a, twin))
            left_b.remove(twin)
    for a in only_a:
        near = [b for b in left_b if _axes(b) == _axes(a)]
        if near:
            diffs = _differing(_config(a, named), _config(near[0], named))
            raise ConfigError(
                f"{a.loop}/{a.device}/{a.precision} differs between A and B in training settings nobody named: "
                f"{'; '.join(diffs)}. Name what you changed on purpose with --differ "
                f"{','.join(d.split(' ')[0] for d in diffs)}, or compare runs made with the same settings")
    return pairs, only_a, left_b


def _ratio(a, b):
    return b / a if a and b is not None else None


def row(a: CellStats, b: CellStats) -> dict:
    """B over A per figure; the verdict from the repeats paired by index (both ran them a round at a time)."""
    mem = "peak_alloc_mib" if a.median("peak_alloc_mib") is not None else "peak_rss_mib"
    by_rep = {r.get("repeat"): r["samples_per_s"] for r in a.ok if r.get("samples_per_s")}
    paired = [r["samples_per_s"] / by_rep[r.get("repeat")] for r in b.ok
              if r.get("samples_per_s") and r.get("repeat") in by_rep]
    sps = _ratio(a.median("samples_per_s"), b.median("samples_per_s"))
    return {"loop": a.loop, "device": a.device, "precision": a.precision,
            "sps_a": a.median("samples_per_s"), "sps_b": b.median("samples_per_s"), "sps_ratio": sps,
            "step_p50_ratio": _ratio(a.median("step_s_p50"), b.median("step_s_p50")),
            "mem_ratio": _ratio(a.median(mem), b.median(mem)),
            "setup_ratio": _ratio(a.startup_s(), b.startup_s()),
            "f1_a": a.median("eval_f1"), "f1_b": b.median("eval_f1"),
            "paired": paired, "busy": a.busy or b.busy, "verdict": verdict(sps, paired, a.busy or b.busy)}


def verdict(sps_ratio: float | None, paired: list[float], busy: bool) -> str:
    kind = paired_kind(sps_ratio, paired)  # a busy machine is said first, even of a single pair
    if kind == "n/a":
        return "no speed in one of them"
    change = f"{abs(sps_ratio - 1):.0%} {'faster' if sps_ratio > 1 else 'slower'} in B"
    if kind == "same":
        return f"same speed (within {GAP_TOLERANCE:.0%})"
    if busy:
        return f"{change}, but a run was measured on a busy machine: not called real"
    if kind == "single":
        return f"{change} in one pair of runs: cannot be told from noise (use --repeats 3 in both)"
    if kind == "real":
        return f"{change} in every one of {len(paired)} paired runs: real"
    return f"{change} at the median, not in every paired run ({min(paired):.2f}–{max(paired):.2f}): noise"


def broken_in_b(pairs: list, only_a: list[CellStats]) -> list[dict]:
    """For ``--fail-above``: each cell of A that B failed, only skipped, or lacks, with why."""
    broken = []
    for a, b in pairs:
        failed = [r for r in b.records if r["status"] == "failed"]
        if failed:
            why = f"failed in B: {failed[-1].get('reason') or 'no reason recorded'}"
        elif not b.ok:
            why = f"not run in B: {b.records[-1].get('reason') or b.records[-1]['status']}"
        else:
            continue
        broken.append({"loop": a.loop, "device": a.device, "precision": a.precision, "broken": why[:300]})
    for a in only_a:
        if a.ok:
            broken.append({"loop": a.loop, "device": a.device, "precision": a.precision, "broken": "missing in B"})
    return broken


def _env_line(records: list[dict]) -> dict:
    r = next((r for r in records if r["status"] == "ok"), records[0])
    env = r.get("env") or {}
    keys = ("torch", "transformers", "accelerate", "lightning", "cpu_name", "cpu_family_model", "torch_threads",
            "gpu_name", "git_sha")
    return {k: env.get(k) for k in keys}


def render(records_a: list[dict], records_b: list[dict], names: tuple[str, str], named: set[str],
           fail_above: float | None) -> tuple[str, list[dict]]:
    """The Markdown, and the rows whose slowdown is beyond ``fail_above`` percent."""
    check_named(cells_of(records_a) + cells_of(records_b), named)
    pairs, only_a, only_b = match(cells_of(records_a), cells_of(records_b), named)
    check_same_data(pairs, named)
    if not pairs:
        raise ConfigError("no cell of A has a counterpart in B (same loop, device, precision, processes and settings)")
    env_a, env_b = _env_line(records_a), _env_line(records_b)
    lines = [f"{COMPARE_TITLE}: {md.text(names[1])} (B) against {md.text(names[0])} (A)", "",
             "Each ratio is B over A, medians over each cell's repeats; the verdict pairs the repeats by index. "
             f"A change within {GAP_TOLERANCE:.0%} is called the same speed.", ""]
    env_diff = [f"{k}: {md.code(env_a[k])} → {md.code(env_b[k])}" for k in env_a if env_a[k] != env_b[k]]
    unknown_data = [label for label, cells in (("A", [a for a, _ in pairs]), ("B", [b for _, b in pairs]))
                    if any(not fingerprint(c) for c in cells)]
    if unknown_data:  # records made before the data was fingerprinted: not known to be the same
        env_diff.append(f"the data is not fingerprinted in {' and '.join(unknown_data)} (older records)")
    lines += ["What differs besides the code under test: " + ("; ".join(env_diff) if env_diff else "nothing recorded")
              + (f"; settings named with --differ: {', '.join(sorted(named))}" if named else "") + ".", ""]
    lines += ["| loop | device | precision | samples/s A | samples/s B | samples/s B/A | step p50 B/A | peak mem B/A | "
              "startup B/A | val F1 A → B | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows, failing = [row(a, b) for a, b in pairs], []

    def f(v, fmt):
        return "-" if v is None else fmt.format(v)

    for r in rows:
        lines.append(f"| {r['loop']} | {r['device']} | {r['precision']} | {f(r['sps_a'], '{:.1f}')} | "
                     f"{f(r['sps_b'], '{:.1f}')} | {f(r['sps_ratio'], '{:.3f}')} | {f(r['step_p50_ratio'], '{:.3f}')} | "
                     f"{f(r['mem_ratio'], '{:.3f}')} | {f(r['setup_ratio'], '{:.3f}')} | "
                     f"{f(r['f1_a'], '{:.4f}')} → {f(r['f1_b'], '{:.4f}')} | {r['verdict']} |")
        if fail_above is not None and r["sps_ratio"] is not None and (1 - r["sps_ratio"]) * 100 > fail_above:
            failing.append(r)
    lines.append("")
    if fail_above is not None:
        failing += broken_in_b(pairs, only_a)
    for label, cells in (("A", only_a), ("B", only_b)):
        if cells:
            lines += [f"Only in {label}: " + ", ".join(f"{c.loop}/{c.device}/{c.precision}" for c in cells) + ".", ""]
    if fail_above is not None:
        slower = [r for r in failing if "broken" not in r]
        broken = [r for r in failing if "broken" in r]
        lines += [(f"**Slower than the {fail_above:g}% limit:** " + ", ".join(
            f"{r['loop']}/{r['device']}/{r['precision']} ({(1 - r['sps_ratio']):.1%} fewer samples/s)" for r in slower))
            if slower else f"No cell is more than {fail_above:g}% slower in B.", ""]
        if broken:  # a gate that passed a run whose cells failed or are missing would pass a broken run
            lines += ["**Failed or missing in B:** " + "; ".join(
                f"{r['loop']}/{r['device']}/{r['precision']} ({r['broken']})" for r in broken) + ".", ""]
    return "\n".join(lines).rstrip() + "\n", failing


def cmd_compare(args) -> int:
    import sys

    from bench.records import read_records
    from bench.report import _written_by

    named = {k.strip().replace("-", "_") for k in (args.differ or "").split(",") if k.strip()}
    text, failing = render(read_records(args.a), read_records(args.b), (args.a, args.b), named, args.fail_above)
    if args.output:
        out = Path(args.output)
        if out.suffix.lower() != ".md" or out.is_dir():
            raise ConfigError(f"-o {out}: give a path ending in .md")
        if out.exists() and not _written_by(out, COMPARE_TITLE):
            raise ConfigError(f"-o {out}: exists and was not written by bench compare; give a new path")
        from bench.safeio import refuse_link, write_atomic

        refuse_link(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(out, text)
        except OSError as exc:  # a read-only folder, a name too long: one line
            raise ConfigError(f"-o {out}: cannot be written ({exc.strerror or exc}); give a path you can write to") from None
        print(f"compare: {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for r in failing:  # the gate's verdict in one line per cell, wherever the Markdown went
        why = r.get("broken") or f"{(1 - r['sps_ratio']):.1%} fewer samples/s than A, over the {args.fail_above:g}% limit"
        print(f"bench compare: {r['loop']}/{r['device']}/{r['precision']}: {why}", file=sys.stderr)
    return 1 if failing else 0
