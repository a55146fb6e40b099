"""Records: one JSON line per cell in OUT/results.jsonl, appended and flushed as each cell ends.

Plain dataclass, units in the field names.  Loadable with ``pandas.read_json(path, lines=True)``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import ConfigError

RESULTS_FILE = "results.jsonl"
# 2: device_peak_tflops is one device's (1: summed over DDP ranks); strict JSON; machine_load; failure.
# 3: seed and eval_predictions; wall_s; data_fingerprint; machine_busy may be null (too short to
# judge); phase_clock, device_peak_override and the GPU facts (gpu_*, joules_per_sample).  Every new
# field has a default, so records of schema 2 read as before.
SCHEMA = 3


class ResultsFileError(ConfigError):
    """results.jsonl cannot be trusted as it is; the message names the file and line."""


@dataclass
class Record:
    loop: str
    device: str
    precision: str
    status: str  # "ok" | "skipped" | "failed"
    reason: str = ""
    cell_id: str = ""
    repeat: int = 0
    seed: int | None = None  # the run config's seed (head init, sample order, dropout): a sweep axis, never a repeat
    schema: int = SCHEMA
    started_at: str = ""
    finished_at: str = ""
    # Throughput over the timed steps (first --timing-warmup steps excluded).
    samples_per_s: float | None = None
    real_tokens_per_s: float | None = None
    padded_tokens_per_s: float | None = None
    padding_fraction: float | None = None
    step_s_p50: float | None = None
    step_s_p90: float | None = None
    step_s_mean: float | None = None
    steps: int | None = None
    timed_steps: int | None = None
    timing_warmup_steps: int | None = None
    timed_s: float | None = None
    train_wall_s: float | None = None
    # Startup: imports_s, model_s, data_s, loop_setup_s (the loop's own, up to its first step) and
    # total_s of those; harness_peak_probe_s apart.  process_wall_s: process start to record built.
    setup_s: dict = field(default_factory=dict)
    process_wall_s: float | None = None
    # Where the cell's wall time went (bench/wallclock.py: PARTS): each part measured where its work
    # is done, adding up to process_wall_s (taken just before the record is serialised); the sweep
    # adds after_record_s, the record's writing and the process's exit, which lie after it.
    wall_s: dict = field(default_factory=dict)
    samples_seen: int | None = None
    batch_order_checksum: int | None = None  # equal across loops = same batches, same order
    # Processes: global throughput above is every rank's samples over the slowest rank's time.
    world_size: int = 1
    per_rank: list = field(default_factory=list)  # per rank: samples_per_s, timed_s, peak memory, ...
    # Memory (the largest of the ranks under DDP).
    peak_alloc_mib: float | None = None
    peak_reserved_mib: float | None = None
    peak_rss_mib: float | None = None
    # Quality, from the one shared evaluation after training.
    eval_accuracy: float | None = None
    eval_f1: float | None = None
    eval_examples: int | None = None
    eval_accuracy_ci95: list = field(default_factory=list)  # [lo, hi], bootstrap over the validation pairs
    eval_f1_ci95: list = field(default_factory=list)
    eval_majority_baseline: dict = field(default_factory=dict)  # label, accuracy, f1 of predicting the majority
    # Per validation pair, parallel lists sorted by index: index, predicted label, reference label and
    # the positive-class probability (rounded to 6 digits), so every quality figure (F1, accuracy, their
    # intervals, paired differences between loops) can be recomputed from the record alone.
    eval_predictions: dict = field(default_factory=dict)
    eval_s: float | None = None
    train_loss_final: float | None = None
    # Time to accuracy (--eval-every K --target-f1 F): wall seconds from the first step, evaluations
    # included, until validation F1 first reached F; the curve of every evaluation on the way.
    time_to_target_s: float | None = None
    time_to_target_step: int | None = None
    eval_curve: list = field(default_factory=list)
    eval_during_training_s: float | None = None
    # Where the time goes (bench/phases.py): each step split into data, forward, backward, optimizer
    # and other; medians and means over the timed steps, per step one list per phase, how many steps'
    # phases add up to their step_s within 2%, and the split's own cost per step (median).
    phase_split: str = ""  # "" when on, else why it is off
    # Which clock the split is on: "host" (perf_counter: when the CPU passed each boundary) or
    # "device-timeline" (CUDA events: when the GPU reached it, in stream order); "" when off.
    phase_clock: str = ""
    phase_s_p50: dict = field(default_factory=dict)
    phase_s_mean: dict = field(default_factory=dict)
    step_phase_s: dict = field(default_factory=dict)
    phase_sum_ok_steps: int | None = None
    phase_cost_s_p50: float | None = None
    step_losses: list = field(default_factory=list)
    step_s: list = field(default_factory=list)
    step_lrs: list = field(default_factory=list)
    step_grad_norms: list = field(default_factory=list)  # where the loop computes one (clipping, the Trainer)
    step_samples: list = field(default_factory=list)
    step_real_tokens: list = field(default_factory=list)
    step_padded_tokens: list = field(default_factory=list)
    # Was the machine quiet?  Other processes' CPU time during the timed steps, load averages, a GEMM
    # probe before and after training; busy by bench.machine.BUSY_RULE.
    machine_load: dict = field(default_factory=dict)
    machine_busy: bool | None = None
    machine_busy_why: list = field(default_factory=list)
    # MFU's denominator: the device's peak for this precision, and where that figure comes from.
    device_peak_tflops: float | None = None
    device_peak_source: str = ""
    device_peak_override: bool = False  # the peak is --peak-tflops, the user's, not measured or a datasheet's
    # The GPU through NVML (bench/gpu_facts.py; the optional extra nvidia-ml-py): SM clock, throttle
    # reasons, temperature, power and utilization at the cell's start and at the end of training;
    # other processes on the GPU at the start; the energy counter over the timed steps and per
    # timed sample.  Null where not read, and gpu_facts_why says why.
    gpu_start: dict | None = None
    gpu_end: dict | None = None
    gpu_other_processes: list | None = None
    gpu_energy_j: float | None = None
    joules_per_sample: float | None = None
    gpu_facts_why: str = ""
    # What ran: the settings read back from the live objects, the config asked for, the model and
    # data actually used, the machine and the library versions.
    settings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    data_source: str = ""
    data_fingerprint: str = ""  # sha256 of the pairs and labels used (bench.data.data_fingerprint); "" before it existed
    env: dict = field(default_factory=dict)
    command: str = ""
    # Why a failed cell failed: kind (config, exception, diverged, would-time-out, timeout, killed,
    # exit, check), the message, the process's last lines (and each DDP rank's own error lines).
    failure: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """A record read back: a newer schema is refused, an older one read (its fields are a subset;
        schema 1's failure output lived in ``env``), and a key this Record has no field for is an
        error, never dropped."""
        schema = d.get("schema", 1)
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise ResultsFileError(f"a record whose schema is {schema!r}, not a number: not a bench record")
        if schema > SCHEMA:
            raise ResultsFileError(f"a record of schema {schema!r}, newer than this bench reads ({SCHEMA}): upgrade bench")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ResultsFileError(f"not a bench record of schema {schema}: unknown field(s) {', '.join(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        """One line of strict JSON (RFC 8259): a nan or inf anywhere is written as null."""
        return json.dumps(finite_or_null(dataclasses.asdict(self)), allow_nan=False, default=str)


def finite_or_null(obj):
    """The same structure with every non-finite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


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


def read_records(path: str | Path, allow_empty: bool = False) -> list[dict]:
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
            Record.from_dict(rec)  # the schema and the fields checked; the report reads the plain dict
        except (ResultsFileError, TypeError) as exc:
            raise ResultsFileError(f"{path}:{number}: {exc}") from None
        wrong = _wrong_type(rec)
        if wrong:
            raise ResultsFileError(f"{path}:{number}: not a bench record: {wrong}")
        records.append(rec)
    if not records and not allow_empty:
        raise ResultsFileError(f"{path}: holds no records (an empty file); nothing to report")
    return records
