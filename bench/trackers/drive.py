"""The trackers of one OUT, driven: each connected before any work, every record not yet logged
logged between cells, the report logged once rendered; every outcome one line of the tracker log,
``OUT/trackers.jsonl`` (appended whole, never rewritten, like the records).

A tracker log line: ``at`` (UTC), ``tracker``, ``kind`` (cell or report), ``key`` (the record's
cell id @ its start time), ``name`` (the run's), ``status`` (``logged``, ``failed``, ``off``),
``where`` (the store, folder or server), ``run`` (the tracker's id or folder of the run) and
``message`` (why it failed).  A record counts as logged by a tracker once a ``logged`` line names
it; one that failed is tried again after the next cell and by ``bench report --report-to``.  A
tracker that failed on ``OFF_AFTER`` records in a row is off for the rest of the sweep (said once).
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import ConfigError
from bench.trackers import TRACKERS, missing
from bench.trackers.content import Session, TrackedRun, cell_run, record_key, report_run

LOG_FILE = "trackers.jsonl"
OFF_AFTER = 2


@dataclass
class Trackers:
    out: Path
    sessions: dict  # name -> Session
    failed_in_a_row: dict = field(default_factory=dict)
    off: set = field(default_factory=set)


def experiment_name(out: Path) -> str:
    """A sweep's experiment (MLflow), group (W&B) or project (Trackio): OUT's folder name."""
    return Path(out).resolve().name


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{exc.__class__.__name__}: {text[:300]}"


def open_trackers(names: list[str], out: Path) -> Trackers | None:
    """Each tracker connected for OUT, or a ConfigError naming the first that cannot be (its package
    missing, its store or server unreachable): one line, before any cell runs."""
    if not names:
        return None
    line = missing(names)
    if line:
        raise ConfigError(line)
    sessions = {}
    for name in names:
        module = importlib.import_module(TRACKERS[name][0])
        try:
            sessions[name] = module.connect(Path(out), experiment_name(out))
        except Exception as exc:  # noqa: BLE001 - whatever the library raises is said in one line
            raise ConfigError(f"--report-to {name}: cannot log to it ({_one_line(exc)})") from None
    return Trackers(out=Path(out), sessions=sessions)


def read_log(out: Path) -> list[dict]:
    """The tracker log's entries (a line that is not whole JSON, as a crash mid-append could leave,
    is skipped: the log only says what was logged, and a record it does not name is logged again)."""
    path = Path(out) / LOG_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _append(out: Path, entry: dict) -> None:
    from bench.safeio import append_line
    from bench.cell.wallclock import utc_now

    append_line(Path(out) / LOG_FILE, json.dumps(dict({"at": utc_now()}, **entry), default=str) + "\n")


def _name_for(entries: list[dict], tracker: str, label: str, key: str) -> str:
    """The run's name: the label, numbered when another record of that label was logged before."""
    before = {e["key"] for e in entries if e.get("tracker") == tracker and e.get("status") == "logged"
              and e.get("label") == label and e.get("key") != key}
    return label if not before else f"{label} ({len(before) + 1})"


def _log(t: Trackers, name: str, run: TrackedRun, label: str) -> str | None:
    """Log one run to one tracker; the warning, or None."""
    session: Session = t.sessions[name]
    module = importlib.import_module(TRACKERS[name][0])
    entry = {"tracker": name, "kind": run.kind, "key": run.key, "name": run.name, "label": label,
             "where": session.where}
    try:
        made = module.log_run(session, run)
    except Exception as exc:  # noqa: BLE001 - a tracker never fails a cell
        t.failed_in_a_row[name] = t.failed_in_a_row.get(name, 0) + 1
        _append(t.out, dict(entry, status="failed", message=_one_line(exc)))
        warning = f"{name}: not logged ({_one_line(exc)}; see {t.out / LOG_FILE})"
        if t.failed_in_a_row[name] >= OFF_AFTER:
            t.off.add(name)
            _append(t.out, dict(entry, status="off", message=f"failed on {OFF_AFTER} runs in a row"))
            warning += (f"; {name} is off for the rest of this sweep (`bench report {t.out} --report-to {name}` logs "
                        "what it missed)")
        return warning
    t.failed_in_a_row[name] = 0
    _append(t.out, dict(entry, status="logged", run=made))
    return None


def log_pending(t: Trackers | None) -> list[str]:
    """Log every record of OUT that a tracker in use has not logged yet (the one just appended, and
    any an earlier failure or an earlier sweep without the tracker left); the warnings."""
    if t is None or not set(t.sessions) - t.off:
        return []
    from bench.analysis.table import records_and_rows
    from bench.sweep.celllog import LOG_DIR

    entries = read_log(t.out)
    warnings = []
    for record, row in records_and_rows(t.out, superseded=True):
        key = record_key(record)
        for name in [n for n in t.sessions if n not in t.off]:
            if any(e.get("tracker") == name and e.get("key") == key and e.get("status") == "logged" for e in entries):
                continue
            log = t.out / LOG_DIR / f"{record.cell_id}.log" if record.cell_id else None
            run = cell_run(record, row, _name_for(entries, name, row["label"], key), log)
            warning = _log(t, name, run, row["label"])
            if warning:
                warnings.append(f"{row['label']}: {warning}")
            else:
                entries.append({"tracker": name, "key": key, "status": "logged", "label": row["label"]})
    return warnings


def log_report(t: Trackers | None, report: Path) -> list[str]:
    """Log the rendered report as a run of its own (``report``) to each tracker in use; the warnings."""
    if t is None:
        return []
    entries = read_log(t.out)
    warnings = []
    for name in [n for n in t.sessions if n not in t.off]:
        run = report_run(report, _name_for(entries, name, "report", "report@"))
        warning = _log(t, name, run, "report")
        if warning:
            warnings.append(f"report: {warning}")
    return warnings


def say(warnings: list[str]) -> None:
    for line in warnings:
        print(f"bench: warning: {line}", file=sys.stderr)
