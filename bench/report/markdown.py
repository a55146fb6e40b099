"""Putting strings that come from users or the environment (model paths, commands, reasons,
settings) into Markdown without letting them change its structure: no closed code fence, no
injected heading, no broken table; and without the machine's paths (``bench/records/portable.py``)."""

from __future__ import annotations

import re

from bench.records.portable import portable

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


# The strings a record names its cell by: every section, table, heading, plot label and link shows
# them, so they are escaped once, as the records enter a report, instead of at each of those places.
IDENTITY = ("loop", "device", "precision")


_LOOKALIKE = str.maketrans({"|": "¦", "<": "‹", ">": "›", "`": "ʼ", "[": "(", "]": ")", "\\": "⧵", "*": "∗",
                            "_": "_", "#": "＃"})


def plain(value) -> str:
    """A name as text no Markdown or HTML reader takes for markup: one line, each special character
    replaced by a look-alike (``|`` by ``¦``, ``<`` by ``‹``, ...), so that it reads the same
    escaped or not, and escaping it again changes nothing."""
    return " ".join(str(value).split()).translate(_LOOKALIKE)


def shown(records: list) -> list:
    """The records as a Markdown document shows them: copies whose identity strings are ``plain``,
    so that a crafted loop, device or precision cannot break a table, start a heading or inject HTML
    in any section, heading, plot label or link.  Ordinary names (``manual``, ``cuda:1``, ``bf16``)
    come out unchanged."""
    import copy

    out = []
    for record in records:
        safe = {key: plain(getattr(record, key)) for key in IDENTITY if isinstance(getattr(record, key), str)}
        if all(safe[key] == getattr(record, key) for key in safe):
            out.append(record)
            continue
        twin = copy.copy(record)
        for key, value in safe.items():
            setattr(twin, key, value)
        out.append(twin)
    return out


def csv_cell(value):
    """A CSV field that a spreadsheet reads as text, never as a formula: a string starting with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe (OWASP's rule);
    newlines become spaces so that one cell stays one line."""
    if not isinstance(value, str):
        return value
    value = " ".join(value.splitlines()) if ("\n" in value or "\r" in value) else value
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
