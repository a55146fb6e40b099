"""Where a cell's wall time goes: every second of the cell's process, named.

A record's ``wall_s`` holds one entry per part, each measured directly around the work it names
(never the remainder of a subtraction), and ``process_wall_s`` is measured on its own, from the
process's creation (the kernel's start time, to its clock tick: ``process_start_time``) to the moment the record is built.  The
parts add up to ``process_wall_s`` within ``SUM_TOLERANCE`` when nothing is left unnamed; a gap
means some work has no name.

The record cannot time its own writing: ``after_record_s`` (serialising and writing the record,
the interpreter's exit) is measured by the sweep, from the process's start time plus
``process_wall_s`` to the moment the process has exited, and is added to the record by the sweep.
It lies after ``process_wall_s`` and is not part of its sum.
"""

from __future__ import annotations

import datetime as _dt
import time
from contextlib import contextmanager


def process_start_time(pid: int | None = None) -> float | None:
    """Epoch seconds a process began, to the kernel's clock tick (10 ms): its start in ticks since
    boot (``/proc/PID/stat``, field 22) placed on ``CLOCK_BOOTTIME``.  psutil's ``create_time()``
    adds that to the boot time in *whole* seconds (``btime``), up to a second early (0.61 s seen),
    which ``interpreter_s`` and ``process_wall_s`` would absorb.  psutil's figure where there is no
    ``/proc`` (macOS); None for a process that is gone."""
    import os

    try:
        with open(f"/proc/{pid or 'self'}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the name may hold spaces and parentheses
        ticks = int(fields[19])  # field 22 of the whole line; 20th after the name's ")"
        since_start = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - since_start
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def utc_now() -> str:
    """Now in UTC, to the second: a record's ``started_at`` and ``finished_at``, a log's headers."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

# In the order they happen; (key, what it is).
PARTS = (
    ("interpreter_s", "process start to the cell's first line: the interpreter and bench.cell's own imports"),
    ("imports_s", "the libraries: torch, transformers, the loop's library, the harness's modules"),
    ("device_init_s", "the device's context: CUDA's driver context and cuBLAS handle, made before the model "
                      "(0 on the CPU); a user's script pays it too, at its first CUDA call"),
    ("peak_probe_s", "the GEMM peak probe for MFU (0 when the sweep hands the cell its device's figure)"),
    ("model_s", "model and tokenizer"),
    ("data_s", "MRPC loaded, tokenized, the shared sampler"),
    ("load_probes_s", "the machine-load GEMM probes before and after training"),
    ("loop_setup_s", "the loop's own setup up to its first step (Accelerator, Trainer, prepare, ...)"),
    ("warmup_steps_s", "the timing warm-up steps"),
    ("timed_steps_s", "the timed steps"),
    ("eval_during_training_s", "evaluations inside training (--eval-every)"),
    ("after_steps_s", "after the last step until the loop returns (its teardown, the meter's stop)"),
    ("settings_s", "the settings read back from the live objects"),
    ("eval_s", "the evaluation after training: forward passes and the metric"),
    ("eval_intervals_s", "the bootstrap intervals and the majority baseline"),
    ("env_s", "the environment: versions, CPU flags, git sha"),
    ("harness_s", "the harness's own bookkeeping: process state, meter, summary, gather, the record"),
)
AFTER_RECORD = ("after_record_s", "after process_wall_s: the record serialised and written, the process's exit "
                                  "(measured by the sweep)")
SUM_TOLERANCE = 0.02

# The report's columns: a few parts each.
GROUPS = (
    ("start", ("interpreter_s", "imports_s", "device_init_s")),
    ("model + data", ("model_s", "data_s")),
    ("probes", ("peak_probe_s", "load_probes_s")),
    ("loop setup", ("loop_setup_s",)),
    ("warm-up", ("warmup_steps_s",)),
    ("timed steps", ("timed_steps_s",)),
    ("evaluation", ("eval_during_training_s", "eval_s", "eval_intervals_s")),
    ("harness", ("after_steps_s", "settings_s", "env_s", "harness_s")),
)


class WallClock:
    """The parts of one cell's wall time.  ``lap(name)`` gives the seconds since the previous lap to
    ``name``, so the code between two laps is named by the second; ``add`` names seconds measured
    elsewhere (the meter's steps), after ``restart`` has left a stretch to them."""

    def __init__(self):
        self.parts: dict[str, float] = {}
        self._last = time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        if name not in _NAMES:
            raise KeyError(f"no wall-time part {name!r}")
        self.parts[name] = self.parts.get(name, 0.0) + seconds

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.add(name, now - self._last)
        self._last = now

    def restart(self) -> None:
        """Leave the time since the last lap unnamed here: its parts are added from other clocks."""
        self._last = time.perf_counter()

    def move(self, src: str, dst: str, seconds: float) -> None:
        """``seconds`` of ``src``'s lap were ``dst``'s (measured inside it)."""
        seconds = min(seconds, self.parts.get(src, 0.0))
        self.add(src, -seconds)
        self.add(dst, seconds)

    def as_dict(self) -> dict:
        """The parts in ``PARTS`` order, each present (0.0 when the cell had none of it)."""
        return {name: round(self.parts.get(name, 0.0), 6) for name, _ in PARTS}

    def add_steps(self, meter, t_train: float, t_returned: float) -> None:
        """The loop's stretch, from the meter's own marks: its setup up to the first step, the warm-up
        and timed steps, evaluations inside training, and what follows the last step."""
        if meter.started_at is None:  # it never reached a step: all of it was setup
            self.add("loop_setup_s", t_returned - t_train)
            return
        steps = meter.step_seconds()
        w = min(meter.timing_warmup, len(steps))
        self.add("loop_setup_s", meter.started_at - t_train)
        self.add("warmup_steps_s", sum(steps[:w]))
        self.add("timed_steps_s", sum(steps[w:]))
        self.add("eval_during_training_s", meter.eval_total_s)
        if meter.last_step_end is not None:
            self.add("after_steps_s", t_returned - meter.last_step_end)


_NAMES = {name for name, _ in PARTS}


def named_s(wall: dict) -> float:
    """Seconds the parts name, ``after_record_s`` apart."""
    return sum(v for k, v in wall.items() if k in _NAMES and v is not None)


def fixed_cost_s(record) -> float | None:
    """What a cell costs beyond its training and evaluation: ``process_wall_s`` less the warm-up and
    timed steps and the evaluations (the figure the fixed-cost benchmark gates)."""
    wall, total = record.wall_s or {}, record.process_wall_s
    if not wall or total is None:
        return None
    work = sum(wall.get(k, 0.0) for k in ("warmup_steps_s", "timed_steps_s", "eval_during_training_s", "eval_s"))
    return total - work
