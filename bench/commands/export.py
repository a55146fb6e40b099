"""``bench export OUT --format csv|parquet|jsonl``: the records as one table in one file, with the
columns of ``bench.load`` (``bench/analysis/table.py``).

The file is written whole (a temporary file beside it, renamed into place), never through a link,
never over the results file it reads, and over an existing file only when an earlier export wrote
it (its first column is ``results_line``; a Parquet file says so in its metadata).  Lists and maps
(the per-step lists, the settings) are JSON text in a CSV cell; in Parquet a list column keeps its
type where Arrow can hold it, else it is JSON text too; JSON lines keep them as they are.  A
non-finite number is written as empty (CSV) or null (JSON lines, Parquet).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from bench.config import ConfigError

FORMATS = ("csv", "parquet", "jsonl")
DEFAULT_NAME = "records"  # OUT/records.<format>
MARK_COLUMN = "results_line"  # the first column of every export, and how an earlier export is told
PARQUET_KEY = b"bench.export"


def target_of(results: Path, output: str | None, fmt: str) -> Path:
    """Where the export goes: ``-o FILE``, else ``OUT/records.<format>`` beside the results file."""
    target = Path(output) if output else results.parent / f"{DEFAULT_NAME}.{fmt}"
    suffix = target.suffix.lower().lstrip(".")
    if suffix in FORMATS and suffix != fmt:
        raise ConfigError(f"-o {target}: a .{suffix} name for --format {fmt}; name it .{fmt}, or say --format {suffix}")
    return target


def written_by_export(path: Path, fmt: str) -> bool:
    """An earlier ``bench export`` wrote this file (so it may be written over)."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return PARQUET_KEY in (pq.read_schema(path).metadata or {})
        with open(path, "rb") as f:
            head = f.read(64)
    except (OSError, ValueError, ImportError):
        return False
    start = {"csv": MARK_COLUMN.encode() + b",", "jsonl": b'{"' + MARK_COLUMN.encode() + b'"'}[fmt]
    return head.startswith(start)


def check_target(target: Path, results: Path, fmt: str) -> None:
    """Refused before anything is read: a link, a folder, the results file itself, a file that no
    export wrote (the user's, another tool's)."""
    from bench.safeio import refuse_link

    refuse_link(target)
    if target.is_dir():
        raise ConfigError(f"{target}: is a folder; give -o a file name")
    if not target.exists():
        return
    if results.exists() and os.path.samefile(target, results):
        raise ConfigError(f"{target}: is the results file this export reads; give another -o")
    if not written_by_export(target, fmt):
        raise ConfigError(f"{target}: exists and was not written by bench export; move it aside or give another -o")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _cell(value) -> str:
    """A CSV cell: empty for none, JSON text for a list or a map, else the value's own text."""
    value = _finite(value)
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, allow_nan=False, default=str)
    return str(value) if not isinstance(value, float) else repr(value)


def _write_csv(tmp: str, columns: list[str], rows: list[dict]) -> None:
    import csv

    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[_cell(row[c]) for c in columns] for row in rows])


def _write_jsonl(tmp: str, columns: list[str], rows: list[dict]) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({c: _finite(row[c]) for c in columns}, allow_nan=False, default=str) + "\n")


def _arrow_column(values: list):
    """A column as Arrow holds it: its own type where Arrow infers one, else JSON text; maps always
    as JSON text (their keys differ from loop to loop)."""
    import pyarrow as pa

    values = [_finite(v) for v in values]
    if not any(isinstance(v, dict) for v in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array([None if v is None else json.dumps(v, allow_nan=False, default=str) for v in values],
                    type=pa.string())


def _write_parquet(tmp: str, columns: list[str], rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: _arrow_column([row[c] for row in rows]) for c in columns})
    table = table.replace_schema_metadata({PARQUET_KEY: b"1"})
    pq.write_table(table, tmp)


WRITERS = {"csv": _write_csv, "parquet": _write_parquet, "jsonl": _write_jsonl}


def export(results: Path, target: Path, fmt: str, superseded: bool = False) -> int:
    """Write the table; the number of rows written."""
    from bench.analysis.table import columns, rows
    from bench.safeio import write_atomic

    check_target(target, results, fmt)
    table = rows(results, superseded)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, writer=lambda tmp: WRITERS[fmt](tmp, columns(), table))
    return len(table)


def cmd_export(args) -> int:
    from bench.records import RESULTS_FILE

    given = Path(args.results)
    results = given / RESULTS_FILE if given.is_dir() else given
    target = target_of(results, args.output, args.format)
    count = export(results, target, args.format, args.superseded)
    print(f"{count} record(s) -> {target}", file=sys.stderr)
    return 0
