"""What a tracker gets of one record: the same run for every tracker, built here from the record and
its row of the records table (``bench/analysis/table.py``), with no tracker library imported.

- **name**: the cell's label as the sweep printed it (``manual/cpu/fp32#1``); a cell run again (a
  failed cell on resume) gets `` (2)``, `` (3)``, ... in the same experiment;
- **params**: the run config as recorded (``run.<field>``), the cell (loop, device, precision,
  repeat, seed, processes, the device ``--device auto`` chose), the model, the data, the library
  versions (``env.<key>``) and every setting read back from the live objects (``settings.<key>``; a
  list or a map as JSON text);
- **metrics**: the summary figures, ``summary/<column>``: every finite number of the record's row
  that is a figure (the column registry's, the timings, the setup, the machine's load, the phases,
  the wall-clock parts), logged once, at the last step;
- **series**, against the optimizer step (from 1, the Trainer's ``global_step``):
  ``train/loss``, ``train/lr``, ``train/step_s`` (every step, the timing warm-up included),
  ``train/grad_norm`` where the loop computes one, and ``eval/f1``, ``eval/accuracy`` at each periodic
  evaluation (``--eval-every``) and at the last step (the evaluation after training);
- **artifact**: the record exactly as results.jsonl holds it (``record.json``), and the cell's log
  (``logs/<cell_id>.log``) where it has one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.records import Record

SERIES = (("train/loss", "step_losses"), ("train/lr", "step_lrs"), ("train/step_s", "step_s"),
          ("train/grad_norm", "step_grad_norms"))
# Columns of the row that are not figures: the identity, counters and codes, and what params hold.
NOT_FIGURES = {"results_line", "superseded", "repeat", "seed", "schema", "batch_order_checksum", "world_size",
               "timing_warmup_steps", "failure.peak_rss_bytes", "failure.limit_bytes", "eval_majority_baseline.label"}
NOT_FIGURE_PREFIXES = ("run.", "model.", "failure.")
PARAM_VALUE_CHARS = 500  # a longer setting is cut (the record artifact holds it whole)


@dataclass
class TrackedRun:
    key: str  # the record's identity in OUT's tracker log: cell id @ start time
    name: str
    kind: str  # "cell" or "report"
    tags: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)  # name -> [(step, value)]
    files: dict = field(default_factory=dict)  # artifact name -> text
    paths: list = field(default_factory=list)  # files logged as they are (the cell's log, the report's plots)
    last_step: int = 0
    failed: bool = False


def record_key(record: Record) -> str:
    return f"{record.cell_id or record.loop + '/' + record.device + '/' + record.precision}@{record.started_at}"


def _text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= PARAM_VALUE_CHARS else text[:PARAM_VALUE_CHARS - 1] + "…"


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def params_of(record: Record, row: dict) -> dict:
    out = {k: row[k] for k in row if k.startswith(("run.", "model."))}
    out.update({k: row[k] for k in ("loop", "device", "precision", "repeat", "seed", "world_size", "variant",
                                    "device_choice", "data_source", "data_fingerprint")})
    out.update({f"env.{k}": v for k, v in (record.env or {}).items()})
    out.update({f"settings.{k}": v for k, v in (record.settings or {}).items()})
    return {k: _text(v) for k, v in out.items() if v is not None and v != ""}


def metrics_of(row: dict) -> dict:
    out = {}
    for name, value in row.items():
        number = _number(value)
        if number is not None and name not in NOT_FIGURES and not name.startswith(NOT_FIGURE_PREFIXES):
            out[f"summary/{name}"] = number
    return out


def series_of(record: Record) -> tuple[dict, int]:
    out = {}
    for name, field_name in SERIES:
        points = [(i, _number(v)) for i, v in enumerate(getattr(record, field_name) or [], 1)]
        points = [(i, v) for i, v in points if v is not None]
        if points:
            out[name] = points
    last = max((len(getattr(record, f) or []) for _, f in SERIES), default=0)
    f1 = [(p.step, p.eval_f1) for p in record.eval_curve]
    accuracy = [(p.step, p.eval_accuracy) for p in record.eval_curve]
    if record.eval_f1 is not None and last and not any(step == last for step, _ in f1):
        f1.append((last, record.eval_f1))
        accuracy.append((last, record.eval_accuracy))
    for name, points in (("eval/f1", f1), ("eval/accuracy", accuracy)):
        points = [(s, _number(v)) for s, v in points if _number(v) is not None]
        if points:
            out[name] = points
    return out, last


def cell_run(record: Record, row: dict, name: str, log_file: Path | None) -> TrackedRun:
    """One record as a tracker's run (``name``: its label, numbered when the cell ran before)."""
    series, last = series_of(record)
    tags = {"bench.kind": "cell", "bench.cell_id": record.cell_id, "bench.status": record.status,
            "bench.label": row["label"], "bench.results_line": str(row["results_line"])}
    if record.reason:
        tags["bench.reason"] = _text(record.reason)
    if record.command:
        tags["bench.command"] = _text(record.command)
    return TrackedRun(key=record_key(record), name=name, kind="cell", tags=tags, params=params_of(record, row),
                      metrics=metrics_of(row), series=series, files={"record.json": record.to_json() + "\n"},
                      paths=[log_file] if log_file is not None and log_file.is_file() else [],
                      last_step=last, failed=record.status == "failed")


def report_run(report: Path, name: str) -> TrackedRun:
    """The report as a tracker's run: its Markdown, and the plots and the cells CSV it links to."""
    text = report.read_text(encoding="utf-8")
    linked = [p for p in sorted(report.parent.iterdir()) if p.suffix in (".png", ".csv") and p.is_file()
              and not p.is_symlink() and p.name in text]
    return TrackedRun(key=f"report@{report.stat().st_mtime_ns}", name=name, kind="report",
                      tags={"bench.kind": "report"}, files={"report.md": text}, paths=linked)


@dataclass
class Session:
    """One tracker, connected for one OUT: where it logs (said in the tracker log), and its handle."""
    name: str
    out: Path
    experiment: str
    where: str
    handle: object = None
