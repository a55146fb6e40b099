"""The one meter that times all five loops.

Its face to a loop is what ``bench/loop_api.py``'s contract names, and nothing else:
``watch(optimizer)`` and ``start()`` before the first batch, ``observe(loss, batch)`` after each
micro-batch's backward, ``observe_grad_norm(norm)`` for each gradient norm the loop computes,
``step()`` after each optimizer step, ``stop()`` after the last; and the two phase boundaries no
hook on the model sees: ``batches(iterable)`` (or ``enter("data")`` / ``enter("other")`` around a
library's own fetch) and ``enter("optimizer")`` where the update begins.  The Trainer and the
Lightning Trainer make the same calls from a callback.  Behind that face each of the meter's jobs
is a small observer of its own, giving its own record fields (``fields()``) and, where the field is
measured per rank, how the ranks' values merge (``MERGE``, ``bench/cell/ranks.py``):

- ``clock.py``: each step's time, from the end of the previous step to the end of this one;
- ``counter.py``: each step's loss, samples and tokens, and the checksum of the batches' order;
- ``schedule.py``: the learning rate each step used, read from the live optimizer;
- ``split.py``: where each step's time goes (data, forward, backward, optimizer, other);
- ``guards.py``: divergence (a nan/inf loss or gradient norm) and the time budget (``WouldTimeOut``);
- ``evaluation.py``: evaluation every K steps, for time-to-accuracy, cut out of the step times;
- ``memory.py``: peak device memory and resident memory;
- ``progress.py``: the progress bar.

Losses are kept as detached tensors and read when the record is made, so the meter adds no device
sync of its own per step (a GPU checks for divergence every few steps).
"""

from __future__ import annotations

from bench.meter.base import Diverged, StopTraining, WouldTimeOut, percentile  # noqa: F401  (the meter's names)
from bench.meter.clock import StepClock
from bench.meter.counter import BatchCounter
from bench.meter.periodic_eval import PeriodicEvaluation
from bench.meter.guards import BudgetGuard, DivergenceGuard
from bench.meter.memory import PeakMemory
from bench.meter.progress import Progress
from bench.meter.schedule import LearningRates
from bench.meter.split import PhaseSplit


class StepMeter:
    def __init__(self, device: str, timing_warmup: int, total_steps: int, progress: bool = True,
                 description: str = "", evaluator=None, eval_every: int | None = None,
                 target_f1: float | None = None, budget: tuple[float, float] | None = None,
                 on_timed_start=None, grad_scaler: bool = False):
        """``budget``: (perf_counter value at which the cell's clock started, seconds it has);
        ``on_timed_start``: called once, when the timing warm-up is over (the machine-load watch)."""
        from bench.devices import device as device_kind

        self.device = device
        self._dev = dev = device_kind(device)  # its timer, sync and memory counters
        self.timing_warmup, self.total_steps = timing_warmup, total_steps
        self.on_timed_start = on_timed_start
        self.clock = StepClock(dev)
        self.counter = BatchCounter()
        self.schedule = LearningRates()
        self.split = PhaseSplit(dev)
        self.divergence = DivergenceGuard(dev.finite_check_every, check_grad_norms=not grad_scaler)
        self.budget = BudgetGuard(budget, timing_warmup, total_steps) if budget is not None else None
        self.evaluation = PeriodicEvaluation(dev, evaluator, eval_every, target_f1)
        self.memory = PeakMemory(dev)
        self.progress = Progress(total_steps, description, progress)

    def observers(self) -> list:
        """Every observer that gives record fields, in the order their fields are gathered."""
        return [o for o in (self.clock, self.counter, self.schedule, self.divergence, self.split,
                            self.evaluation, self.memory, self.budget, self.progress) if o is not None]

    # -- called by the harness -----------------------------------------------------------------
    def attach(self, model) -> None:
        """Split every step into phases, from hooks on ``model`` (see ``bench/meter/phase_clock.py``)."""
        self.split.attach(model)

    # -- called by the loops -------------------------------------------------------------------
    def watch(self, optimizer) -> None:
        """Read the learning rate each step actually used from the live optimizer."""
        self.schedule.watch(optimizer)

    def batches(self, iterable):
        """The loop's batches, as they come; the wait for each (and whatever the iterator does to
        make it: collate, the copy to the device) is the step's ``data`` phase."""
        self.enter("data")
        iterator = iter(iterable)  # a DataLoader starts its workers here: data too
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                self.enter("other")
                return
            self.enter("other")
            yield batch
            self.enter("data")

    def enter(self, phase: str) -> None:
        """A phase boundary the hooks cannot see (``optimizer``, before unscaling and clipping)."""
        self.split.enter(phase)

    def start(self) -> None:
        self.memory.start()
        mark = self.clock.start()
        self.split.open(mark)
        if self.budget is not None:
            self.budget.start(self.clock.t_start)
        if self.timing_warmup == 0:
            self._timed_start()
        self.schedule.start()

    def _timed_start(self) -> None:
        if self.on_timed_start is not None:
            self.on_timed_start()

    def observe_grad_norm(self, norm) -> None:
        """The total gradient norm of this optimizer step, where the loop computes one (clipping,
        the Trainer's logging): checked for nan/inf like the loss."""
        self.divergence.observe_grad_norm(norm)

    def observe(self, loss, batch) -> None:
        """One forward/backward: its loss (a tensor, not synchronised here) and its batch."""
        self.counter.observe(loss, batch)

    def step(self, loss=None, batch=None) -> None:
        """End of one optimizer step."""
        if loss is not None:
            self.observe(loss, batch)
        if self.clock.t_start is None:
            raise RuntimeError("StepMeter.step() before start()")
        if not self.counter.pending:
            raise RuntimeError("StepMeter.step() with no observed batch")
        mark = self.clock.end_step()
        self.split.close(mark)
        self.counter.end_step()
        self.schedule.end_step()
        self.progress.update()
        done = len(self.counter.losses)
        if self.evaluation.due(done):
            self.evaluation.run(done, self.clock.t_start)
            mark = self.clock.resume()  # the next step's clock starts after the evaluation
        self.clock.open_step(mark)
        self.split.open(mark)
        if done == self.timing_warmup:
            self._timed_start()
        self.divergence.end_step(self.counter.losses)
        if self.budget is not None:
            try:
                self.budget.check(done, self.evaluation.total_s, self.counter.samples)
            except WouldTimeOut:
                self.progress.close()
                raise

    def check_finite(self) -> None:
        """Raise ``Diverged`` at the first step since the last check whose loss or gradient norm is
        nan or inf."""
        self.divergence.check(self.counter.losses)

    def stop(self) -> None:
        self.split.stop()
        self.clock.stop()
        self.progress.close()

    # -- read by the harness -------------------------------------------------------------------
    @property
    def started_at(self) -> float | None:
        """perf_counter when the loop called ``start()`` (its setup ends there), None before."""
        return self.clock.t_start

    @property
    def last_step_end(self) -> float | None:
        return self.clock.last_step_end

    @property
    def losses(self) -> list:
        return self.counter.losses

    @property
    def samples(self) -> list[int]:
        return self.counter.samples

    @property
    def lrs(self) -> list:
        return self.schedule.lrs

    @property
    def _checksum(self):
        return self.counter.checksum

    @property
    def _phases(self):
        return self.split.clock

    @property
    def eval_total_s(self) -> float:
        return self.evaluation.total_s

    @property
    def phases_off_why(self) -> str:
        return self.split.off_why

    @phases_off_why.setter
    def phases_off_why(self, why: str) -> None:
        self.split.off_why = why

    def step_seconds(self) -> list[float]:
        return self.clock.step_seconds()

    def summary(self) -> dict:
        """Every observer's record fields; throughput and memory over the timed steps (the first
        ``timing_warmup`` left out)."""
        if self.clock.t_stop is None:
            raise RuntimeError("StepMeter.summary() before stop()")
        steps = self.step_seconds()
        out = {}
        for observer in self.observers():
            out.update(observer.fields(steps, self.timing_warmup))
        return out

    def rank_fields(self, summary: dict) -> dict:
        """What this rank sends rank 0 of a distributed cell: its timed samples and tokens, and each
        observer's per-rank fields."""
        out = self.counter.timed_counts(summary["timing_warmup_steps"])
        for observer in self.observers():
            out.update({k: summary.get(k) for k in getattr(observer, "PER_RANK", ())})
        return out

    def merge_rules(self) -> dict:
        """How each per-rank record field of the meter's merges across ranks (``bench/cell/ranks.py``)."""
        rules = {}
        for observer in self.observers():
            rules.update(getattr(observer, "MERGE", {}))
        return rules
