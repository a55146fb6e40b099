"""``bench compare A B``: two result sets (a torch upgrade, another machine, before/after a change)
matched cell by cell, with the ratio B/A of each figure and a noise-aware verdict.

``--differ`` names the run settings that differ on purpose; ``--fail-above PCT`` exits 1 when some
cell's samples/s in B is more than PCT% below A's (median over repeats), or a cell of A failed or is
missing in B: usable as a CI gate.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.config import ConfigError


def _write(out: Path, text: str) -> None:
    from bench.commands.report import written_by
    from bench.report.compare import TITLE
    from bench.safeio import refuse_link, write_atomic

    if out.suffix.lower() != ".md" or out.is_dir():
        raise ConfigError(f"-o {out}: give a path ending in .md")
    if out.exists() and not written_by(out, TITLE):
        raise ConfigError(f"-o {out}: exists and was not written by bench compare; give a new path")
    refuse_link(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, text)
    except OSError as exc:  # a read-only folder, a name too long: one line
        raise ConfigError(f"-o {out}: cannot be written ({exc.strerror or exc}); give a path you can write to") from None
    print(f"compare: {out}", file=sys.stderr)


def cmd_compare(args) -> int:
    from bench.records import read_records
    from bench.report.compare import render

    named = {k.strip().replace("-", "_") for k in (args.differ or "").split(",") if k.strip()}
    text, cmp = render(read_records(args.a), read_records(args.b), (args.a, args.b), named, args.fail_above)
    if args.output:
        _write(Path(args.output), text)
    else:
        sys.stdout.write(text)
    for r in cmp.slower:  # the gate's verdict in one line per cell, wherever the Markdown went
        print(f"bench compare: {r.loop}/{r.device}/{r.precision}: {(1 - r.sps_ratio):.1%} fewer samples/s than A, "
              f"over the {args.fail_above:g}% limit", file=sys.stderr)
    for b in cmp.broken:
        print(f"bench compare: {b.loop}/{b.device}/{b.precision}: {b.why}", file=sys.stderr)
    return 1 if cmp.slower or cmp.broken else 0
