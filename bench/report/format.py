"""Numbers and links as the report writes them."""

from __future__ import annotations

import math
import re


def f(value, fmt: str = "{:.1f}", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return fmt.format(value)


def anchor(heading: str) -> str:
    """The link GitHub (and most Markdown renderers) give a heading."""
    return "#" + re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def group_title(device: str, precision: str, variant: str) -> str:
    return f"{device} / {precision}" + (f" / {variant}" if variant else "")


def head(header: str) -> list[str]:
    """A table's header line and its rule, the rule made from the header's own columns: the one place
    a Markdown table's shape is written (a header's cells are the report's own words, never a record's)."""
    return [header, "|" + "---|" * (header.count("|") - 1)]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the header, its rule, one line per row."""
    return head("| " + " | ".join(header) + " |") + ["| " + " | ".join(r) + " |" for r in rows]


def seeds_shown(seeds: list, most: int = 10) -> str:
    """Seeds as a reader takes them in: "seed 3", "seeds 1, 2, 3", or past ``most`` "2500 seeds (1–2500)"."""
    if len(seeds) <= most:
        return ("seeds " if len(seeds) > 1 else "seed ") + ", ".join(str(s) for s in seeds)
    ints = sorted(s for s in seeds if isinstance(s, int))
    span = f" ({ints[0]}–{ints[-1]})" if len(ints) == len(seeds) else ""
    return f"{len(seeds)} seeds{span}"
