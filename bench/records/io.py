"""Reading and writing records: OUT/results.jsonl, one strict-JSON line per cell, appended whole.

Reading refuses anything untrustworthy (a truncated line, a foreign file, a newer schema, a field of
the wrong type) with one line naming the file and line, and returns ``Record`` objects.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from bench.config import ConfigError
from bench.records.schema import Record, ResultsFileError

RESULTS_FILE = "results.jsonl"


REQUIRED_FIELDS = ("loop", "device", "precision", "status")


def append_record(out_dir: str | Path, record: Record) -> None:
    """Append one line and make it durable before the next cell starts."""
    from bench.safeio import append_line

    path = Path(out_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    append_line(path, record.to_json() + "\n")  # whole, or the file as it was


def _refuse_constant(name: str):
    raise ValueError(f"non-finite number {name}")


# Fields the report and compare compute with: a value of the wrong type is an error naming it.
_NUMBER_FIELDS = ("samples_per_s", "real_tokens_per_s", "padded_tokens_per_s", "step_s_p50", "step_s_p90",
                  "step_s_mean", "timed_s", "peak_alloc_mib", "peak_reserved_mib", "peak_rss_mib", "eval_accuracy",
                  "eval_f1", "train_loss_final", "process_wall_s", "device_peak_tflops")
_LIST_FIELDS = ("step_losses", "step_s", "step_samples", "step_real_tokens", "step_padded_tokens", "step_lrs",
                "eval_accuracy_ci95", "eval_f1_ci95", "per_rank", "eval_curve")
_DICT_FIELDS = ("config", "settings", "model", "env", "setup_s", "machine_load", "failure", "phase_s_p50",
                "phase_s_mean", "step_phase_s")


def _wrong_type(rec: dict) -> str | None:
    """Why a record's field cannot be used as the record type says, or None."""
    for k in ("loop", "device", "precision", "status"):
        if not isinstance(rec.get(k), str):
            return f"field {k!r} is {rec.get(k)!r}, not a string"
    for k in _NUMBER_FIELDS:
        v = rec.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"field {k!r} is {v!r}, not a number"
    for k in _LIST_FIELDS:
        if k in rec and not isinstance(rec[k], list):
            return f"field {k!r} is {rec[k]!r}, not a list"
    for k in _DICT_FIELDS:
        if k in rec and not isinstance(rec[k], dict):
            return f"field {k!r} is {rec[k]!r}, not an object"
    cfg = rec.get("config")
    if rec.get("status") == "ok" and isinstance(cfg, dict) and cfg and not isinstance(cfg.get("run"), dict):
        return "field 'config' has no 'run' settings"
    if rec.get("status") == "ok" and cfg == {} and "cell_id" in rec and rec.get("cell_id"):
        return "field 'config' is empty (an ok record says what ran)"
    return None


def read_records(path: str | Path, allow_empty: bool = False) -> list[Record]:
    """All records of a results file (or of OUT/results.jsonl), refusing anything untrustworthy:
    a line that is not JSON (a truncated last write, a foreign file) is an error naming the line."""
    path = Path(path)
    if path.is_dir() and path.name != RESULTS_FILE:
        path = path / RESULTS_FILE
    if not path.exists():
        raise ResultsFileError(f"{path}: no such results file")
    if path.is_dir():
        raise ResultsFileError(f"{path}: is a folder, not a results file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    records = []
    for number, bline in enumerate(io.BytesIO(raw), 1):
        try:
            line = bline.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsFileError(f"{path}:{number}: not UTF-8 text (byte {bline[exc.start]:#04x} at column "
                                   f"{exc.start + 1}): not a bench record") from None
        if not line.strip():
            continue
        last = not line.endswith("\n")
        try:
            rec = json.loads(line, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            what = "truncated last line (a write that did not finish)" if last else "not a JSON record"
            raise ResultsFileError(f"{path}:{number}: {what}: {exc.msg}") from exc
        except ValueError as exc:  # NaN, Infinity: strict JSON (RFC 8259) has no such numbers
            raise ResultsFileError(f"{path}:{number}: {exc}: bench writes none (strict JSON), so the line "
                                   "was edited; not a bench record") from None
        if last:  # whole JSON but no newline: the next append would glue onto it
            raise ResultsFileError(f"{path}:{number}: truncated last line (no newline: a write that did not "
                                   "finish, or an edit)")
        missing = [k for k in REQUIRED_FIELDS if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise ResultsFileError(f"{path}:{number}: not a bench record (no {'/'.join(map(repr, missing))} field)")
        try:
            Record.check_keys(rec)  # a newer schema, a field this Record does not have
            wrong = _wrong_type(rec)
            if wrong:
                raise ResultsFileError(f"not a bench record: {wrong}")
            record = Record.from_dict(rec)  # the nested groups checked
            record.run  # noqa: B018 - its run config must be one this bench can read
        except (ResultsFileError, TypeError, ConfigError) as exc:
            raise ResultsFileError(f"{path}:{number}: {exc}") from None
        records.append(record)
    if not records and not allow_empty:
        raise ResultsFileError(f"{path}: holds no records (an empty file); nothing to report")
    return records


def latest_per_cell(records: list[Record]) -> list[Record]:
    """A cell run again (after a failure, on resume) keeps every record on disk; tables use its
    latest one."""
    latest: dict = {}
    for r in records:
        latest[r.cell_key or id(r)] = r
    return list(latest.values())
