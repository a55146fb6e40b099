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


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the header, its rule, one line per row."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
