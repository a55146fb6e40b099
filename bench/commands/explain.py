"""``bench explain OUT --from A --to B``: plan the flip cells of two loops' native setups, run them
into OUT, and print the report's "Why do they differ?" section.

Flip cells are appended to OUT like any other cell (their run config names the flip), so ``explain``
continues where it stopped if run again, and ``bench report OUT`` shows them too.  Planning is a pure
function of records (``plan_flips``); the analysis is ``bench.analysis.explain``; running is the sweep's.
"""

from __future__ import annotations

import dataclasses

from bench.analysis.cells import cells_of
from bench.analysis.explain import ALL, Differences, base_pairs, differences, flip_label
from bench.config import Cell, ConfigError, RunConfig
from bench.records import Record


def _planned(a: str, b: str, diff: Differences, base_a: RunConfig, base_b: RunConfig) -> list[tuple[str, RunConfig]]:
    """(loop, run config) of each flip: every setting of B alone in A, all of them at once, and each
    loop's own machinery switched to the tutorial's in the loop that has it."""
    planned = [(a, dataclasses.replace(base_a, **{setting: value_b}, flip=flip_label(a, b, setting)))
               for setting, (_, value_b) in diff.settings.items()]
    if diff.settings:
        everything = {k: vb for k, (_, vb) in diff.settings.items()}
        planned.append((a, dataclasses.replace(base_a, **everything, flip=flip_label(a, b, ALL))))
    for (loop, key), (_, tutorial_value) in diff.machinery.items():
        base = base_a if loop == a else base_b
        options = tuple(p for p in base.loop_options if p[0] != key) + ((key, tutorial_value),)
        planned.append((loop, dataclasses.replace(base, loop_options=options, flip=flip_label(a, b, key))))
    return planned


def plan_flips(records: list[Record], a: str, b: str, repeats: int | None = None) -> tuple[list[Cell], list[dict]]:
    """The flip cells (repeat-major, as a sweep runs them), and per device/precision what was found."""
    found, per_repeat = [], {}
    for ca, cb in base_pairs(cells_of(records), a, b):
        diff = differences(ca, cb)
        found.append({"device": ca.device, "precision": ca.precision, "seed": ca.seed, "differences": diff})
        config = ca.ok[0].config or {}
        for loop, run in _planned(a, b, diff, ca.run, cb.run):
            run.validate()
            for r in range(repeats or len(ca.ok)):
                per_repeat.setdefault(r, []).append(Cell(loop=loop, device=ca.device, precision=ca.precision, run=run,
                                                         repeat=r, nproc=config.get("nproc", 1),
                                                         nnodes=config.get("nnodes", 1)))
    return [c for r in sorted(per_repeat) for c in per_repeat[r]], found


def _say_found(found: list[dict], a: str, b: str) -> None:
    import sys

    for f in found:
        d = f["differences"]
        print(f"{f['device']}/{f['precision']}: {a} and {b} differ in "
              f"{len(d.settings)} setting(s) ({', '.join(d.settings) or 'none'}) and "
              f"{len(d.machinery)} piece(s) of machinery ({', '.join(k for _, k in d.machinery) or 'none'}); "
              f"not flipped: {', '.join(k for _, k in d.inert) or 'none'} (inert here)"
              + (f"; read back but not declared: {', '.join(d.undeclared)}" if d.undeclared else ""),
              file=sys.stderr)


def cmd_explain(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from bench.sweep.outdir import OutLock, check_writable
    from bench.records import read_records
    from bench.report import why
    from bench.report.render import render_with_context, section_text
    from bench.sweep.driver import run_sweep

    out = Path(args.out)
    if args.from_loop == args.to_loop:
        raise ConfigError(f"--from and --to are both {args.from_loop}: explain compares two loops")
    if not out.is_dir():
        raise ConfigError(f"{out}: no such results folder")
    cells, found = plan_flips(read_records(out), args.from_loop, args.to_loop, args.repeats)
    _say_found(found, args.from_loop, args.to_loop)
    check_writable(out)
    lock = OutLock(out).acquire()  # one writer per OUT, as for a sweep
    try:
        print(f"{len(cells)} flip cells -> {out}/", file=sys.stderr)
        run_sweep(cells, out, cell_timeout=args.cell_timeout, resume=True,
                  progress=not args.no_progress and sys.stderr.isatty(), command=shlex.join(["bench", *sys.argv[1:]]))
    finally:
        lock.release()
    records = read_records(out)
    _, report = render_with_context(records, out / "report.md")
    print(section_text(report, why).strip() or "(no flip measured)")
    print(f"report: {out / 'report.md'}", file=sys.stderr)
    return 0
