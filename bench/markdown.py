"""Putting strings that come from users or the environment (model paths, commands, reasons,
settings) into Markdown without letting them change its structure: no closed code fence, no
injected heading, no broken table; and without the machine's paths (``bench/records/paths.py``)."""

from __future__ import annotations

import re

from bench.records.paths import portable

_SPECIAL = re.compile(r"([\\`\[\]<>|])")


def text(value) -> str:
    """Plain text for a table cell or a sentence: one line, Markdown's special characters escaped."""
    return _SPECIAL.sub(r"\\\1", " ".join(portable(str(value)).split()))


def code(value) -> str:
    """An inline code span that holds any string: a fence longer than its longest backtick run,
    one line, and ``|`` escaped (GitHub tables split on it even inside code)."""
    s = " ".join(portable(str(value)).split()).replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def fenced(lines: list[str]) -> list[str]:
    """A code block around lines that may themselves hold backtick fences."""
    body = [line for item in lines for line in portable(str(item)).splitlines()] or [""]
    longest = max((len(m) for line in body for m in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *body, fence]
