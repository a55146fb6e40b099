"""What the meter's observers share: the ways training is stopped early, and a percentile."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]), as numpy's default."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class StopTraining(RuntimeError):
    """Training stopped early by the harness; the steps timed so far stay in the record."""

    def reason(self) -> str:
        return str(self)


class WouldTimeOut(StopTraining):
    """The cell cannot finish training within its time budget at the speed measured so far."""

    def reason(self) -> str:
        return f"WouldTimeOut: {self}"


class Diverged(StopTraining):
    """A non-finite loss (or gradient norm, where the loop computes one): nothing after it means anything."""

    def __init__(self, step: int, what: str, value: float):
        super().__init__(f"diverged at step {step} ({what} {value})")
        self.step = step
