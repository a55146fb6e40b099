"""What a record is: one cell's outcome, a dataclass with units in its field names.

The groups of facts a record holds as one object each (its setup, the machine's load, a failure,
the quality floor, the model, the per-pair predictions, the evaluations on the way) are nested
dataclasses; on disk each is the JSON object of its fields (an empty object when absent), so a
line stays loadable with ``pandas.read_json(path, lines=True)``.  Free-form maps stay maps: the
settings read back from a loop (their keys are the loop's), the environment, the config asked for,
the per-phase and per-part seconds (keyed by phase and part).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from bench.config import RunConfig, run_config_from_dict
from bench.records.groups import (GROUPS, Adapter, Baseline, EvalPoint, Failure, MachineLoad, Model, Predictions,  # noqa: F401
                                  ResultsFileError, Setup)

# 2: device_peak_tflops is one device's (1: summed over DDP ranks); strict JSON; machine_load; failure.
# 3: seed and eval_predictions; wall_s; data_fingerprint; machine_busy may be null (too short to
# judge); phase_clock, device_peak_override and the GPU facts (gpu_*, joules_per_sample).  Every new
# field has a default, so records of schema 2 read as before.  4: device_choice (--device auto).
# 5: --finetune (model.finetune, model.n_params_trainable, model.adapter) and optimizer_state_bytes;
# cells_at_once; machine_load's timed window on the wall clock and own_cpu_cores; sibling_cells no
# longer written (the siblings are measured from the records' timed windows: bench/analysis/siblings.py).
SCHEMA = 5


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
    setup_s: Setup | None = None
    process_wall_s: float | None = None
    # Where the cell's wall time went (bench/cell/wallclock.py: PARTS): each part measured where its work
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
    # What the optimizer kept beside the weights after training (AdamW: two moments per trained
    # parameter and its step counts), summed over its state's tensors; one process's under DDP.
    optimizer_state_bytes: int | None = None
    # Quality, from the one shared evaluation after training.
    eval_accuracy: float | None = None
    eval_f1: float | None = None
    eval_examples: int | None = None
    eval_accuracy_ci95: list = field(default_factory=list)  # [lo, hi], bootstrap over the validation pairs
    eval_f1_ci95: list = field(default_factory=list)
    eval_majority_baseline: Baseline | None = None  # label, accuracy, f1 of predicting the majority
    # Per validation pair, parallel lists sorted by index: index, predicted label, reference label and
    # the positive-class probability (rounded to 6 digits), so every quality figure (F1, accuracy, their
    # intervals, paired differences between loops) can be recomputed from the record alone.
    eval_predictions: Predictions | None = None
    eval_s: float | None = None
    train_loss_final: float | None = None
    # Time to accuracy (--eval-every K --target-f1 F): wall seconds from the first step, evaluations
    # included, until validation F1 first reached F; the curve of every evaluation on the way.
    time_to_target_s: float | None = None
    time_to_target_step: int | None = None
    eval_curve: list[EvalPoint] = field(default_factory=list)
    eval_during_training_s: float | None = None
    # Where the time goes (bench/meter/phase_clock.py): each step split into data, forward, backward, optimizer
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
    # probe before and after training; busy by bench.records.vocabulary.BUSY_RULE.
    machine_load: MachineLoad | None = None
    machine_busy: bool | None = None
    machine_busy_why: list = field(default_factory=list)
    # MFU's denominator: the device's peak for this precision, and where that figure comes from.
    device_peak_tflops: float | None = None
    device_peak_source: str = ""
    device_peak_override: bool = False  # the peak is --peak-tflops, the user's, not measured or a datasheet's
    # The GPU through NVML (bench/cell/gpu_facts.py; the optional extra nvidia-ml-py): SM clock, throttle
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
    model: Model | None = None
    data_source: str = ""
    data_fingerprint: str = ""  # sha256 of the pairs and labels used (bench.data.data_fingerprint); "" before it existed
    env: dict = field(default_factory=dict)
    command: str = ""
    # What --device auto (the default) chose and why the devices before it were passed over; "" when the
    # devices were named.  Set by the sweep, which made the choice, before the record is written.
    device_choice: str = ""
    # Where the cell ran and beside what (--executor): the executor, cells of this sweep running at the
    # same time, the CPU cores and GPUs its process had (sched_getaffinity, CUDA_VISIBLE_DEVICES as seen
    # in the cell's task) and its node (its host's name; Ray's node id in schema 4).  Empty/0 for the
    # sequential executor.  cells_at_once: the most cells the sweep let run at once on the Ray it started
    # (0: a cluster's resources decide, or sequential).
    # sibling_cells: schema 4 only, the configured cells at once less one (what could run beside it, not
    # what did); from schema 5 cells_at_once says the configured figure, and the cells that did run
    # beside it are found from the records' timed windows (bench/analysis/siblings.py).
    executor: str = ""
    sibling_cells: int = 0
    cells_at_once: int = 0
    cpu_cores: str = ""
    cuda_visible_devices: str = ""
    node: str = ""
    # Why a failed cell failed: kind (config, exception, diverged, would-time-out, timeout, killed,
    # exit, check), the message, the process's last lines (and each DDP rank's own error lines).
    failure: Failure | None = None

    @classmethod
    def check_keys(cls, d: dict) -> None:
        """A newer schema is refused, an older one read (its fields are a subset; schema 1's failure
        output lived in ``env``), and a key this Record has no field for is an error, never dropped."""
        schema = d.get("schema", 1)
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise ResultsFileError(f"a record whose schema is {schema!r}, not a number: not a bench record")
        if schema < 1:
            raise ResultsFileError(f"a record of schema {schema!r}: bench's schemas start at 1, not a bench record")
        if schema > SCHEMA:
            raise ResultsFileError(f"a record of schema {schema!r}, newer than this bench reads ({SCHEMA}): upgrade bench")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ResultsFileError(f"not a bench record of schema {schema}: unknown field(s) {', '.join(unknown)}")

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """A record read back (``check_keys``), its nested groups built from their objects."""
        cls.check_keys(d)
        return cls(**d)

    def __setattr__(self, name, value):
        """A nested group set as its JSON object (a writer may hand either) becomes its dataclass; the
        rest is set as given."""
        if name in GROUPS:
            value = GROUPS[name].coerce(value)
        elif name == "eval_curve":
            value = [EvalPoint.coerce(p) for p in value or []]
        object.__setattr__(self, name, value)

    @property
    def run(self) -> RunConfig:
        """The run config the cell was asked to run (``config.run``; defaults where a record of an older
        schema has no such field, and for a cell that failed before its config was recorded)."""
        return run_config_from_dict((self.config or {}).get("run") or {})

    @property
    def run_as_recorded(self) -> dict:
        """``config.run`` as written: a record of an older schema names only the settings it had (what
        a report says of its settings, without today's defaults filled in)."""
        return (self.config or {}).get("run") or {}

    @property
    def cell_key(self) -> str:
        """Which cell this is a run of (``bench.records.portable.cell_key``); the recorded ``cell_id``
        where no configuration was recorded."""
        from bench.records.portable import cell_key

        return cell_key(self.config) if "run" in (self.config or {}) else self.cell_id

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        """The JSON object of the record: each group as its object, an absent group as {}."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in GROUPS:
            d[name] = d[name].to_dict() if d[name] is not None else {}
        d["eval_curve"] = [p.to_dict() for p in self.eval_curve]
        return {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in d.items()}

    def to_json(self) -> str:
        """One line of strict JSON (RFC 8259): a nan or inf anywhere is written as null."""
        return json.dumps(finite_or_null(self.to_dict()), allow_nan=False, default=str)


def finite_or_null(obj):
    """The same structure with every non-finite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj
