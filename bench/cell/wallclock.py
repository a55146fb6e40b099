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

from bench.records.vocabulary import WALL_PART_NAMES, WALL_PARTS


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

class WallClock:
    """The parts of one cell's wall time.  ``lap(name)`` gives the seconds since the previous lap to
    ``name``, so the code between two laps is named by the second; ``add`` names seconds measured
    elsewhere (the meter's steps), after ``restart`` has left a stretch to them."""

    def __init__(self):
        self.parts: dict[str, float] = {}
        self._last = time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        if name not in WALL_PART_NAMES:
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
        """The parts in ``WALL_PARTS`` order, each present (0.0 when the cell had none of it)."""
        return {name: round(self.parts.get(name, 0.0), 6) for name, _ in WALL_PARTS}

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


