"""The learning rate each step actually used, read from the live optimizer (not from the schedule's
formula): the one in force when the step began."""

from __future__ import annotations


class LearningRates:
    def __init__(self):
        self._optimizer = None
        self._next = None
        self.lrs: list = []  # learning rate in force during each step

    def watch(self, optimizer) -> None:
        self._optimizer = optimizer

    def _current(self):
        if self._optimizer is None:
            return None
        return float(self._optimizer.param_groups[0]["lr"])

    def start(self) -> None:
        self._next = self._current()

    def end_step(self) -> None:
        self.lrs.append(self._next)
        self._next = self._current()

    def fields(self, steps: list[float], warmup: int) -> dict:
        return {"step_lrs": self.lrs}
