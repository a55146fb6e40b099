"""The step clock: a step's time is wall time from the end of the previous optimizer step (or of an
evaluation during training) to the end of this one, so data loading, forward, backward, clipping,
optimizer and scheduler are all inside it, whatever the loop does in what order.

CPU: ``time.perf_counter``.  CUDA: an event recorded at every step end on the current stream and
read once after ``stop()``'s synchronize, so the clock adds no sync of its own per step (the device
table, ``bench/devices.py``, says which timer a device gets)."""

from __future__ import annotations

import statistics
import time

from bench.meter.base import percentile


class StepClock:
    MERGE = {"timed_s": max}  # the ranks step together: the cell's timed time is the slowest rank's
    PER_RANK = ("timed_s", "step_s_p50", "steps")

    def __init__(self, dev):
        self._dev = dev
        self._marks: list = []  # per step end: perf_counter value or CUDA event
        self._starts: list = []  # per step start: the previous end, or the end of an evaluation
        self.t_start = None  # perf_counter when the loop called start()
        self.t_stop = None
        self.last_step_end = None  # perf_counter at the end of the last step()

    def start(self):
        """The first step begins; returns its start mark."""
        mark = self._dev.mark()
        self._starts.append(mark)
        self.t_start = time.perf_counter() if self._dev.event_timer else mark
        return mark

    def end_step(self):
        """An optimizer step ends; returns its end mark."""
        mark = self._dev.mark()
        self._marks.append(mark)
        self.last_step_end = time.perf_counter()  # host clock: where the loop's time after its steps begins
        return mark

    def resume(self):
        """After an evaluation: the next step's clock starts now; returns that mark."""
        mark = self._dev.mark()
        self.last_step_end = time.perf_counter()
        return mark

    def open_step(self, mark) -> None:
        self._starts.append(mark)

    def stop(self) -> None:
        self._dev.synchronize()
        self.t_stop = time.perf_counter()

    def step_seconds(self) -> list[float]:
        return [self._dev.seconds_between(a, b) for a, b in zip(self._starts, self._marks)]

    def fields(self, steps: list[float], warmup: int) -> dict:
        timed = steps[warmup:]
        return {
            "steps": len(steps),
            "timed_steps": len(timed),
            "timing_warmup_steps": min(warmup, len(steps)),
            "timed_s": sum(timed),
            "train_wall_s": self.t_stop - self.t_start,
            "step_s_p50": percentile(timed, 50) if timed else None,
            "step_s_p90": percentile(timed, 90) if timed else None,
            "step_s_mean": statistics.fmean(timed) if timed else None,
            "step_s": steps,
        }
