"""The two guards that stop training early, each with its own exception (``bench/meter/base.py``).

- Divergence: a nan or inf loss, or gradient norm where the loop computes one, stops the run at
  the first such step.  Each check reads the device, so a GPU checks every few steps.
- The time budget (the sweep's ``--cell-timeout``): once a few steps past the timing warm-up have
  been timed, a cell whose projected training time already overshoots its budget stops with
  ``WouldTimeOut``, saying how fast it ran, instead of spending the whole budget to learn the same.
"""

from __future__ import annotations

import math
import time

from bench.meter.base import Diverged, WouldTimeOut

# Steps timed after the warm-up before a projection is trusted, and how far past the budget the
# projection must land: a cell that might just make it is left to run (the timeout still holds).
PROJECTION_MIN_STEPS = 3
PROJECTION_SLACK = 1.25


class DivergenceGuard:
    def __init__(self, check_every: int, check_grad_norms: bool):
        self.check_every = check_every  # nan/inf checks: each one reads the device
        # Under fp16 loss scaling an inf gradient norm is an overflow the scaler skips, not divergence.
        self._check_grad_norms = check_grad_norms
        self.checked = 0  # steps whose loss and gradient norm are known to be finite
        self.grad_norms: list = []  # per step: the total gradient norm the loop computed, or None
        self._pending = None

    def observe_grad_norm(self, norm) -> None:
        self._pending = norm.detach() if hasattr(norm, "detach") else norm

    def end_step(self, losses: list) -> None:
        self.grad_norms.append(self._pending)
        self._pending = None
        if len(losses) - self.checked >= self.check_every:
            self.check(losses)

    def check(self, losses: list) -> None:
        """Raise ``Diverged`` at the first step since the last check whose loss or gradient norm is
        nan or inf."""
        import torch

        start, end = self.checked, len(losses)
        if start == end:
            return
        values = torch.stack([torch.as_tensor(x, dtype=torch.float32).reshape(()).cpu() for x in losses[start:]])
        norms = [None if g is None else float(g) for g in self.grad_norms[start:]]
        finite = torch.isfinite(values).tolist()
        self.checked = end
        for i in range(end - start):
            if not finite[i]:
                raise Diverged(start + i + 1, "loss", float(values[i]))
            if self._check_grad_norms and norms[i] is not None and not math.isfinite(norms[i]):
                raise Diverged(start + i + 1, "gradient norm", norms[i])

    def fields(self, steps: list[float], warmup: int) -> dict:
        norms = self.grad_norms
        return {"step_grad_norms": [None if g is None else float(g) for g in norms]
                if any(g is not None for g in norms) else []}


class BudgetGuard:
    def __init__(self, budget: tuple[float, float], timing_warmup: int, total_steps: int):
        """``budget``: (perf_counter value at which the cell's clock started, seconds it has)."""
        self.t0, self.budget_s = budget
        self.timing_warmup, self.total_steps = timing_warmup, total_steps
        self._t_warm = None  # wall clock at the end of the timing warm-up
        self._eval_at_warm = 0.0

    def start(self, t_start: float) -> None:
        if self.timing_warmup == 0:
            self._t_warm = t_start

    def check(self, done: int, eval_s: float, samples: list[int]) -> None:
        """After step ``done``: raise ``WouldTimeOut`` when the steps timed so far project past the
        budget.  ``eval_s``: seconds of evaluation during training so far (not training time)."""
        now = time.perf_counter()
        if done == self.timing_warmup:
            self._t_warm, self._eval_at_warm = now, eval_s
        if self._t_warm is None or done - self.timing_warmup < PROJECTION_MIN_STEPS:
            return
        timed = done - self.timing_warmup
        per_step = (now - self._t_warm - (eval_s - self._eval_at_warm)) / timed
        projected = now - self.t0 + (self.total_steps - done) * per_step
        if projected > PROJECTION_SLACK * self.budget_s:
            rate = sum(samples[self.timing_warmup:]) / (per_step * timed)
            raise WouldTimeOut(
                f"would not finish within --cell-timeout {self.budget_s:g} s: {per_step:.2f} s/step "
                f"({rate:.2f} samples/s) over steps {self.timing_warmup + 1}-{done} projects "
                f"{projected:.0f} s for {self.total_steps} steps; stopped after step {done}")

    def fields(self, steps: list[float], warmup: int) -> dict:
        return {}
