"""Where each step's time goes: the harness attaches a ``PhaseClock`` (``bench/meter/phase_clock.py``) to the
model, and the loop marks the two boundaries no hook can see: ``StepMeter.batches(loader)`` around
its batch iterator (``data``) and ``enter("optimizer")`` where its update begins.  Each step is then
split into data, forward, backward, optimizer and other, on the same marks as the step's own time."""

from __future__ import annotations

from bench.meter.base import percentile


class PhaseSplit:
    def __init__(self, dev):
        from bench.meter.phase_clock import PhaseClock

        self.clock = PhaseClock(dev)
        self.on = False
        self.off_why = "the harness did not attach the phase clock"

    def attach(self, model) -> None:
        self.clock.attach(model)
        self.on, self.off_why = True, ""

    def enter(self, phase: str) -> None:
        if self.on:
            self.clock.enter(phase)

    def open(self, mark) -> None:
        if self.on:
            self.clock.open(mark)

    def close(self, mark) -> None:
        if self.on:
            self.clock.close(mark)

    def stop(self) -> None:
        if self.on:
            self.clock.drop_open()  # the step opened after the last one never ran
            self.clock.detach()  # evaluation after training is not a step

    def fields(self, steps: list[float], warmup: int) -> dict:
        from bench.meter.phase_clock import summarize

        if not self.on:
            return {"phase_split": self.off_why}
        cost = self.clock.cost_s()
        return {"phase_split": "", "phase_clock": self.clock.clock_name(),
                **summarize(self.clock.step_phase_s(), steps, warmup),
                "phase_cost_s_p50": percentile(cost[warmup:], 50) if cost[warmup:] else None}
