"""How the report's plots are drawn and saved: PNGs beside the Markdown, written whole."""

from __future__ import annotations

from pathlib import Path

from bench.analysis.cells import LOOP_ORDER, order_of

LOOP_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
LOOP_STYLES = (("-", 2.5), ("--", 1.5), (":", 1.5), ("-.", 1.5), ((0, (5, 1)), 1.5), ((0, (1, 1)), 1.5))


def pyplot():
    """matplotlib's pyplot on the file-only backend (imported when a report is drawn, not before)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def color_of(loop: str) -> str:
    return LOOP_COLORS[order_of(loop, LOOP_ORDER) % len(LOOP_COLORS)]


def style_of(loop: str) -> tuple:
    return LOOP_STYLES[order_of(loop, LOOP_ORDER) % len(LOOP_STYLES)]


def png(out_md: Path, *pieces: str) -> Path:
    """A plot's path beside the report: the pieces (record fields) in a safe character set, so a
    crafted ``device`` cannot put a file outside the report's folder."""
    import hashlib

    from bench.safeio import inside, safe_name

    name = f"{out_md.stem}-{'-'.join(safe_name(p) for p in pieces)}"
    if len(name) > MAX_NAME:  # a crafted or long device string: a bounded name, unique by its hash
        name = name[:MAX_NAME - 17] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return inside(out_md.parent, out_md.parent / f"{name}.png")


# File names stay well under the 255 bytes a file system takes, with room for the temporary suffix a
# plot is written under before it is renamed into place.
MAX_NAME = 120


def save(plt, fig, path: Path) -> str:
    """Written beside its place and renamed into it: a full disk leaves the old plot, not half a new
    one.  Returns the file's name, as the Markdown links it."""
    from bench.safeio import write_atomic

    write_atomic(path, writer=lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path.name


def cell_label(c) -> str:
    return f"{c.loop}\n{c.precision}" + (f"\n{c.variant}" if c.variant else "")
