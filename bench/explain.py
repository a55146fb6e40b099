"""``bench explain OUT --from A --to B``: why two loops run with their own defaults differ.

For the two loops' native cells in OUT (``run --defaults native``), every difference between them is
listed (``loops/native.py`` declares them; the settings read back from the live objects confirm the
list is complete) and measured by flipping it alone, in paired repeats:

- a run-config setting (clipping, the AdamW implementation, weight decay, ...): loop A run with B's value;
- a library's own machinery (the Trainer's logging and checkpoints, Lightning's logger, ...): only that
  loop has the knob, so it is run with the machinery as under ``--defaults tutorial``, and the effect
  is the difference having it makes;
- and A with every setting of B at once: its step losses against B's show whether the list is complete
  (parity), and its speed what the single flips leave to interactions.

Flip cells are appended to OUT like any other cell (their run config names the flip), so ``explain``
continues where it stopped if run again, and ``bench report OUT`` shows them under "Why do they
differ?".  Planning and analysis are pure functions of records; running is the sweep's.
"""

from __future__ import annotations

import dataclasses
import json
import statistics

from bench.analysis import (GAP_TOLERANCE, CellStats, cells_of, loss_difference, paired_kind, phase_delta,
                            phase_note)
from bench.config import Cell, ConfigError, run_config_from_dict

NOT_A_SETTING = {"defaults", "loop_options", "flip", "glue_dir", "phases"}  # how a run is labelled, not trained
ALL = "*"  # the flip of every run-config setting at once


def flip_label(a: str, b: str, setting: str) -> str:
    return f"{a}->{b}:{setting}"


def parse_flip(label: str) -> tuple[str, str, str] | None:
    if not label or "->" not in label or ":" not in label:
        return None
    pair, setting = label.split(":", 1)
    a, b = pair.split("->", 1)
    return a, b, setting


def _native_cells(cells: list[CellStats], loop: str) -> list[CellStats]:
    """The loop's cells without a flip, those run with --defaults native first."""
    found = [c for c in cells if c.loop == loop and c.ok and not c.run.get("flip")]
    return sorted(found, key=lambda c: c.run.get("defaults") != "native")


def base_pairs(cells: list[CellStats], a: str, b: str) -> list[tuple[CellStats, CellStats]]:
    """(A's cell, B's cell) per device and precision, both without a flip."""
    pairs = []
    for ca in _native_cells(cells, a):
        cb = next((c for c in _native_cells(cells, b) if (c.device, c.precision) == (ca.device, ca.precision)), None)
        if cb is not None:
            pairs.append((ca, cb))
    if not pairs:
        raise ConfigError(f"no ok {a} and {b} cells on the same device and precision in these records: "
                          f"run `bench run --loops {a},{b} --defaults native --out OUT` first")
    return pairs


def differences(ca: CellStats, cb: CellStats) -> dict:
    """What differs between two cells: run-config settings (flippable in A), each loop's machinery
    (flippable in that loop, unless inert here), settings read back that no declaration explains."""
    from bench.analysis import loop_specific
    from loops.native import MACHINERY, held, inert, machinery

    run_a, run_b = ca.run, cb.run
    settings = {k: (run_a.get(k), run_b.get(k)) for k in sorted(set(run_a) | set(run_b) - NOT_A_SETTING)
                if k not in NOT_A_SETTING and json.dumps(run_a.get(k)) != json.dumps(run_b.get(k))}
    mach, inert_list = {}, {}
    world = ca.ok[0].get("world_size", 1)
    for cell in (ca, cb):
        config = run_config_from_dict(cell.run)
        now = machinery(cell.loop, config)
        tutorial = machinery(cell.loop, dataclasses.replace(config, defaults="tutorial", loop_options=()))
        for key in MACHINERY.get(cell.loop, {}):
            if now[key] == tutorial[key]:
                continue
            why = inert(cell.loop, key, cell.device, world, config.grad_accum)
            (inert_list if why else mach)[(cell.loop, key)] = (now[key], tutorial[key]) if not why else why
    # The read-back check: a setting in force that differs, and that no declared difference explains.
    sa, sb = ca.ok[0].get("settings") or {}, cb.ok[0].get("settings") or {}
    specific = loop_specific({ca.loop: sa, cb.loop: sb})
    undeclared = sorted(k for k in set(sa) | set(sb) if k not in specific
                        and json.dumps(sa.get(k), sort_keys=True, default=str) != json.dumps(sb.get(k), sort_keys=True, default=str)
                        and not any(_explains(setting, k) for setting in settings))
    return {"settings": settings, "machinery": mach, "inert": inert_list, "undeclared": undeclared,
            "held": held((ca.loop, cb.loop))}


# Which read-back settings each run-config setting accounts for (bench/settings.py names them).
_READ_BACK = {
    "max_grad_norm": ("grad_clip", "clip"),
    "adamw": ("optimizer_impl", "adamw", "fused", "foreach"),
    "weight_decay": ("weight_decay", "param_groups"),
    "weight_decay_exempt": ("param_groups", "weight_decay"),
    "warmup_steps": ("lr_first_step", "warmup", "lr_"),
    "pad_to_multiple_of": ("pad_to_multiple_of", "collator"),
    "pin_memory": ("pin_memory",),
}


def _explains(setting: str, read_back_key: str) -> bool:
    return any(part in read_back_key for part in _READ_BACK.get(setting, (setting,)))


def plan_flips(records: list[dict], a: str, b: str, repeats: int | None = None) -> tuple[list[Cell], list[dict]]:
    """The flip cells (repeat-major, as a sweep runs them), and per device/precision what was found."""
    found, per_repeat = [], {}
    for ca, cb in base_pairs(cells_of(records), a, b):
        diff = differences(ca, cb)
        found.append({"device": ca.device, "precision": ca.precision, **diff})
        rec_a = ca.ok[0]
        base_a = run_config_from_dict(ca.run)
        base_b = run_config_from_dict(cb.run)
        n = repeats or len(ca.ok)
        planned = []
        for setting, (_, value_b) in diff["settings"].items():
            planned.append((a, dataclasses.replace(base_a, **{setting: value_b}, flip=flip_label(a, b, setting))))
        if diff["settings"]:
            everything = {k: vb for k, (_, vb) in diff["settings"].items()}
            planned.append((a, dataclasses.replace(base_a, **everything, flip=flip_label(a, b, ALL))))
        for (loop, key), (_, tutorial_value) in diff["machinery"].items():
            base = base_a if loop == a else base_b
            options = tuple(p for p in base.loop_options if p[0] != key) + ((key, tutorial_value),)
            planned.append((loop, dataclasses.replace(base, loop_options=options, flip=flip_label(a, b, key))))
        for loop, run in planned:
            run.validate()
            for r in range(n):
                per_repeat.setdefault(r, []).append(Cell(loop=loop, device=ca.device, precision=ca.precision, run=run,
                                                         repeat=r, nproc=rec_a.get("config", {}).get("nproc", 1),
                                                         nnodes=rec_a.get("config", {}).get("nnodes", 1)))
    return [c for r in sorted(per_repeat) for c in per_repeat[r]], found


# ---- analysis: a pure function of the records, for the report -----------------------------------

def _paired_ms(base: CellStats, other: CellStats) -> list[float]:
    """Per repeat (paired by index): other's mean step minus base's, in seconds, over the timed steps."""
    out = []
    for r in other.ok:
        m = next((x for x in base.ok if x.get("repeat") == r.get("repeat")), None)
        if m is None or not r.get("step_s_mean") or not m.get("step_s_mean"):
            continue
        out.append(r["step_s_mean"] - m["step_s_mean"])
    return out


def _verdict(deltas: list[float], base_s: float) -> str:
    """``paired_kind`` of the step with the difference over the step without, per paired run."""
    if not deltas or not base_s:
        return "no paired runs"
    ratios = [1 + d / base_s for d in deltas]
    kind = paired_kind(statistics.median(ratios), ratios)
    return {"same": f"within {GAP_TOLERANCE:.0%} of a step",
            "single": "one run: cannot be told from noise",
            "real": f"real: beyond {GAP_TOLERANCE:.0%} in every one of {len(deltas)} runs",
            "noise": "noise: not beyond the tolerance in every run"}[kind]


def explain_rows(records: list[dict]) -> list[dict]:
    """Per device/precision/pair of loops: the base cells, each flip's measured effect (signed toward
    B: what the difference adds to A's step to make B's), the all-settings cell, what is unexplained."""
    cells = cells_of(records)
    flips = [c for c in cells if parse_flip(c.run.get("flip"))]
    out = []
    for device, precision, a, b in dict.fromkeys((c.device, c.precision, *parse_flip(c.run["flip"])[:2]) for c in flips):
        try:
            ca, cb = next((x, y) for x, y in base_pairs(cells, a, b) if (x.device, x.precision) == (device, precision))
        except (StopIteration, ConfigError):
            continue
        step_a, step_b = ca.median("step_s_mean"), cb.median("step_s_mean")
        effects, everything = [], None
        for c in flips:
            la, lb, setting = parse_flip(c.run["flip"])
            if (c.device, c.precision, la, lb) != (device, precision, a, b):
                continue
            if c.loop == a:  # A with B's value: the effect is flip - A
                base, sign, where = ca, 1, f"{a} given {b}'s value"
            else:  # B with its machinery as A has none: the effect is B - flip
                base, sign, where = cb, -1, f"{b} without it"
            deltas = [sign * d for d in _paired_ms(base, c)]
            failed = next((r.get("reason") for r in reversed(c.records) if r["status"] != "ok"), "") if not c.ok else ""
            row = {"setting": setting, "loop": c.loop, "how": where, "deltas_s": deltas,
                   "effect_s": statistics.median(deltas) if deltas else None,
                   "verdict": f"could not be flipped in {c.loop}: {failed}" if failed else _verdict(deltas, step_a or 0),
                   "mem_mib": _delta(base, c, "peak_alloc_mib", "peak_rss_mib", sign),
                   "loss_final": _delta(base, c, "train_loss_final", None, sign),
                   "f1": _delta(base, c, "eval_f1", None, sign),
                   "phases": None, "runs": len(deltas)}
            ph = phase_delta(base, c)
            if ph:
                row["phases"] = {k: sign * v for k, v in ph.items()}
                row["phase_note"] = phase_note({"phase_delta_s": row["phases"]})
            value_a, value_b = ca.run.get(setting), cb.run.get(setting)
            row["values"] = (value_a, value_b) if setting in ca.run else None
            if setting == ALL:
                everything = {"cell": c, "row": row, "parity": _parity(c, cb)}
            else:
                effects.append(row)
        effects.sort(key=lambda r: -abs(r["effect_s"] or 0))
        total = step_b - step_a if step_a and step_b else None
        explained = sum(r["effect_s"] or 0 for r in effects)
        out.append({"device": device, "precision": precision, "a": a, "b": b, "cell_a": ca, "cell_b": cb,
                    "step_a_s": step_a, "step_b_s": step_b, "total_s": total, "effects": effects,
                    "unexplained_s": total - explained if total is not None else None,
                    "everything": everything, "parity_ab": _parity(ca, cb),
                    "differences": differences(ca, cb)})
    return out


def _delta(base: CellStats, other: CellStats, field: str, fallback: str | None, sign: int):
    if base.median(field) is None and fallback:
        field = fallback
    x, y = base.median(field), other.median(field)
    return sign * (y - x) if x is not None and y is not None else None


def _parity(c: CellStats, ref: CellStats) -> float | None:
    """Largest step-wise relative difference of c's step losses from ref's (first runs)."""
    if not c.ok or not ref.ok:
        return None
    return loss_difference(c.ok[0].get("step_losses") or [], ref.ok[0].get("step_losses") or [])[0]


def cmd_explain(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from bench.outdir import OutLock, check_writable
    from bench.records import read_records
    from bench.report import render
    from bench.sweep import run_sweep

    out = Path(args.out)
    if args.from_loop == args.to_loop:
        raise ConfigError(f"--from and --to are both {args.from_loop}: explain compares two loops")
    if not out.is_dir():
        raise ConfigError(f"{out}: no such results folder")
    records = read_records(out)
    cells, found = plan_flips(records, args.from_loop, args.to_loop, args.repeats)
    for f in found:
        print(f"{f['device']}/{f['precision']}: {args.from_loop} and {args.to_loop} differ in "
              f"{len(f['settings'])} setting(s) ({', '.join(f['settings']) or 'none'}) and "
              f"{len(f['machinery'])} piece(s) of machinery ({', '.join(k for _, k in f['machinery']) or 'none'}); "
              f"not flipped: {', '.join(k for _, k in f['inert']) or 'none'} (inert here)"
              + (f"; read back but not declared: {', '.join(f['undeclared'])}" if f["undeclared"] else ""),
              file=sys.stderr)
    check_writable(out)
    lock = OutLock(out).acquire()  # one writer per OUT, as for a sweep
    try:
        print(f"{len(cells)} flip cells -> {out}/", file=sys.stderr)
        run_sweep(cells, out, cell_timeout=args.cell_timeout, resume=True,
                  progress=not args.no_progress and sys.stderr.isatty(),
                  command=shlex.join(["bench", *sys.argv[1:]]))
    finally:
        lock.release()
    records = read_records(out)
    text = render(records, out / "report.md")
    section = text.split("## Why do they differ?")
    print("## Why do they differ?" + section[1].split("\n## ")[0] if len(section) > 1 else "(no flip measured)")
    print(f"report: {out / 'report.md'}", file=sys.stderr)
    return 0
