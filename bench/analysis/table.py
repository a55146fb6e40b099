"""The records as one table: a row per record, a column per entry of the column registry (units in
the names), then the record's other fields, its run config and its nested groups flattened with
stable names.  ``bench.load(OUT)`` makes it a pandas DataFrame, ``bench export`` a file, and the
experiment trackers their runs' parameters and figures.  Nothing here imports pandas.

The columns never depend on the data (a field no record has is a column of empty values), in this
order (``columns()``):

- ``results_line``: the record's line in results.jsonl, what each of its figures traces to;
  ``superseded``: a later record of the same cell replaced it (a failed cell run again on resume);
- ``IDENTITY``: the cell id, its label, loop, device, precision, the report's variant, repeat, seed,
  status and reason;
- the column registry (``bench/analysis/columns.py: COLUMNS``), each as this one run's figure: a
  figure of a cell's repeats (``samples_per_s_spread``, ``samples_per_s_cv``) is empty on a run's row
  (``report --csv`` has them per cell), and the speed-up is against the device's manual fp32 cell;
- every other field of the record that holds one value, under its own name (``timed_s``,
  ``device_choice``, ...);
- ``run.<field>``: the run config as the record wrote it (empty where an older record has no such field);
- ``<group>.<field>``: each nested group of the record (``setup_s.imports_s``,
  ``machine_load.others_cpu_fraction``, ``model.n_params``, ``failure.kind``, ...);
  ``eval_curve.<field>``: the periodic evaluations as parallel lists;
- ``phase_s_p50.<phase>``, ``phase_s_mean.<phase>`` and ``wall_s.<part>`` (bench/meter/phase_clock.py,
  bench/cell/wallclock.py);
- the lists and maps, whole: the per-step lists (``step_losses``, ``step_lrs``, ``step_s``, ...),
  ``step_phase_s.<phase>``, and the free-form maps (``settings``, ``env``, ``config``, ...).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.analysis.cells import CellStats, tutorial_baseline, varying_of, variant_of
from bench.analysis.columns import COLUMNS, TableContext
from bench.analysis.mfu import shared_peaks
from bench.config import Cell, RunConfig
from bench.records.vocabulary import PHASES
from bench.records import GROUPS, RESULTS_FILE, EvalPoint, Record, ResultsFileError, read_records
from bench.records.groups import NESTED
from bench.records.vocabulary import AFTER_RECORD, WALL_PARTS as PARTS

LEAD = ("results_line", "superseded")
IDENTITY = ("cell_id", "label", "loop", "device", "precision", "variant", "repeat", "seed", "status", "reason")
KEYED = {"phase_s_p50": PHASES, "phase_s_mean": PHASES, "wall_s": tuple(k for k, _ in PARTS) + (AFTER_RECORD[0],)}
# Lists and free-form maps kept whole, one column each (step_phase_s: one list per phase).
WHOLE = ("step_losses", "step_lrs", "step_s", "step_grad_norms", "step_samples", "step_real_tokens",
         "step_padded_tokens", "per_rank", "eval_accuracy_ci95", "machine_busy_why",
         "gpu_start", "gpu_end", "gpu_other_processes", "settings", "env", "config")


RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(Record))


def _fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(Record))


def _scalar_fields() -> list[str]:
    """The record's one-value fields not already a column before them."""
    taken = set(LEAD) | set(IDENTITY) | {c.name for c in COLUMNS}
    nested = set(GROUPS) | set(KEYED) | set(WHOLE) | {"eval_curve", "step_phase_s"}
    return [f.name for f in _fields() if f.name not in taken | nested]


def columns() -> list[str]:
    """Every column of the table, in order; the same whatever the records hold."""
    cols = [*LEAD, *IDENTITY, *(c.name for c in COLUMNS), *_scalar_fields()]
    cols += [f"run.{f.name}" for f in dataclasses.fields(RunConfig)]
    for name, group in GROUPS.items():
        cols += [column for f in dataclasses.fields(group) for column in _group_columns(name, f.name)]
    cols += [f"eval_curve.{f.name}" for f in dataclasses.fields(EvalPoint)]
    for name, keys in KEYED.items():
        cols += [f"{name}.{k}" for k in keys]
    cols += [*WHOLE[:7], *(f"step_phase_s.{p}" for p in PHASES), *WHOLE[7:]]
    assert len(set(cols)) == len(cols), "two columns of one name"
    return cols


def _group_columns(name: str, field_name: str) -> list[str]:
    inner = NESTED.get((name, field_name))
    if inner is None:
        return [f"{name}.{field_name}"]
    return [f"{name}.{field_name}.{g.name}" for g in dataclasses.fields(inner)]


def label_of(record: Record) -> str:
    """The cell's label as the sweep printed it (``manual/cpu/fp32#1 seed 3``)."""
    try:
        return Cell.from_dict(record.config).label
    except (KeyError, TypeError, ValueError):  # a record that failed before its config was recorded
        return f"{record.loop}/{record.device}/{record.precision}"


def _registry(record: Record, stats: CellStats, ctx: TableContext) -> dict:
    """Each registry column's figure for this one run."""
    row = {}
    for col in COLUMNS:
        if col.of is not None:
            row[col.name] = col.of(record)
        elif col.derive is not None:
            row[col.name] = col.derive(stats, ctx)
        elif col.name in RECORD_FIELDS:  # only text in the report (eval_f1_ci95): the record's own value
            row[col.name] = getattr(record, col.name)
        else:  # a figure of a cell's repeats, shown as text (the spread): none on one run's row
            text = col.text(stats, ctx)
            row[col.name] = None if text == "-" else text
    return row


def row_of(record: Record, line: int, superseded: bool, variant: str, ctx: TableContext,
           varying: set[str] = frozenset()) -> dict:
    """One record's row, keyed by ``columns()``."""
    as_dict = record.to_dict()
    row = {"results_line": line, "superseded": superseded, "label": label_of(record), "variant": variant}
    row.update({k: as_dict.get(k) for k in IDENTITY if k not in row})
    row.update(_registry(record, CellStats([record], set(varying)), ctx))
    row.update({k: as_dict.get(k) for k in _scalar_fields()})
    recorded = record.run_as_recorded
    row.update({f"run.{f.name}": recorded.get(f.name) for f in dataclasses.fields(RunConfig)})
    for name, group in GROUPS.items():
        values = as_dict.get(name) or {}
        for f in dataclasses.fields(group):
            inner = NESTED.get((name, f.name))
            if inner is None:
                row[f"{name}.{f.name}"] = values.get(f.name)
            else:  # a group inside the group: a column per field (model.adapter.r)
                nested = values.get(f.name) or {}
                row.update({f"{name}.{f.name}.{g.name}": nested.get(g.name) for g in dataclasses.fields(inner)})
    points = record.eval_curve
    row.update({f"eval_curve.{f.name}": [getattr(p, f.name) for p in points] for f in dataclasses.fields(EvalPoint)})
    for name, keys in KEYED.items():
        values = as_dict.get(name) or {}
        row.update({f"{name}.{k}": values.get(k) for k in keys})
    phases = record.step_phase_s or {}
    row.update({f"step_phase_s.{p}": phases.get(p) for p in PHASES})
    row.update({k: as_dict.get(k) for k in WHOLE})
    return {c: row.get(c) for c in columns()}


def numbered_records(path: str | Path) -> list[tuple[int, Record]]:
    """The records of a results file (or of OUT/results.jsonl), refused as ``read_records`` refuses
    them, each with its line number in the file."""
    path = Path(path)
    if path.is_dir() and path.name != RESULTS_FILE:
        path = path / RESULTS_FILE
    records = read_records(path)
    with open(path, "rb") as f:  # read_records skips blank lines: the same lines, counted
        lines = [n for n, line in enumerate(f.read().split(b"\n"), 1) if line.strip()]
    if len(lines) != len(records):
        raise ResultsFileError(f"{path}: changed while it was read; read it again")
    return list(zip(lines, records))


def _contexts(records: list[Record]) -> tuple[dict[str, TableContext], set[str]]:
    """Per device, what its registry columns need beside a run (the manual fp32 cell, the peaks), and
    what varies between the report's cells (which names their variant)."""
    from bench.analysis.cells import cells_of

    cells = cells_of(records)
    contexts = {}
    for device in dict.fromkeys(c.device for c in cells):
        ok = [c for c in cells if c.device == device and c.ok]
        contexts[device] = TableContext(base=tutorial_baseline(ok), peaks=shared_peaks(ok),
                                        counters=any(c.median(lambda r: r.peak_alloc_mib) is not None for c in ok))
    return contexts, varying_of(records)


def records_and_rows(path: str | Path, superseded: bool = False) -> list[tuple[Record, dict]]:
    """Each record kept with its row: one per cell (its latest record, as the report's tables use),
    or with ``superseded`` every record, the replaced ones marked."""
    numbered = numbered_records(path)
    keys = [r.cell_key or f"line {line}" for line, r in numbered]  # each record's key, computed once
    latest_line = {key: line for key, (line, _) in zip(keys, numbered)}
    kept = [(line, r, latest_line[key] != line) for key, (line, r) in zip(keys, numbered)]
    if not superseded:
        kept = [k for k in kept if not k[2]]
    contexts, varying = _contexts([r for _, r, replaced in kept if not replaced])
    empty = TableContext()
    return [(r, row_of(r, line, replaced, variant_of(r.run, varying), contexts.get(r.device, empty), varying))
            for line, r, replaced in kept]


def rows(path: str | Path, superseded: bool = False) -> list[dict]:
    """The table's rows (``records_and_rows``)."""
    return [row for _, row in records_and_rows(path, superseded)]
