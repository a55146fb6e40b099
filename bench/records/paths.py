"""``python -m bench.records.paths SRC DEST``: a copy of a results file with every string of every
record made portable (``bench.records.portable``), to share or commit; SRC is never rewritten."""

from __future__ import annotations

import sys

from bench.records.portable import portable_tree


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
