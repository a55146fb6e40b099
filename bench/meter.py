"""The one meter that times all five loops.

A loop calls ``start()`` just before its first batch, ``observe(loss, batch)`` after each
forward/backward, and ``step()`` after each optimizer step (``step(loss, batch)`` does both).
The Trainer does the same through a callback.  A step's time is wall time from the end of the
previous optimizer step to the end of this one, so data loading, forward, backward, clipping,
optimizer and scheduler are all inside it, whatever the loop does in what order.

CPU: ``time.perf_counter``.  CUDA: an event recorded at every step end on the current stream and
read once at ``stop()`` after a synchronize, so the meter adds no sync of its own per step (the
device table, ``bench/devices.py``, says which timer a device gets).
Losses are kept as detached tensors and read at ``stop()`` for the same reason.

Where the time goes: the harness attaches a ``PhaseClock`` (``bench/phases.py``) to the model, and
the loop marks the two boundaries no hook can see: ``batches(loader)`` around its batch iterator
(``data``) and ``enter("optimizer")`` where its update begins.  Each step is then split into data,
forward, backward, optimizer and other, on the same marks as the step's own time.

Time-to-accuracy: given an ``evaluator`` and ``eval_every`` K, the meter evaluates after every K-th
step.  That time is cut out of the step times (so throughput is training only) but stays in the
wall clock, which is what time-to-accuracy is measured on.

A time budget (the sweep's ``--cell-timeout``): once a few steps past the timing warm-up have been
timed, a cell whose projected training time already overshoots its budget stops with
``WouldTimeOut``, saying how fast it ran, instead of spending the whole budget to learn the same.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time


def _rss_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20  # KiB on Linux, bytes on macOS


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


# Steps timed after the warm-up before a projection is trusted, and how far past the budget the
# projection must land: a cell that might just make it is left to run (the timeout still holds).
PROJECTION_MIN_STEPS = 3
PROJECTION_SLACK = 1.25


class StepMeter:
    def __init__(self, device: str, timing_warmup: int, total_steps: int, progress: bool = True,
                 description: str = "", evaluator=None, eval_every: int | None = None,
                 target_f1: float | None = None, budget: tuple[float, float] | None = None,
                 on_timed_start=None, grad_scaler: bool = False):
        """``budget``: (perf_counter value at which the cell's clock started, seconds it has);
        ``on_timed_start``: called once, when the timing warm-up is over (the machine-load watch)."""
        self.device = device
        self.on_timed_start = on_timed_start
        # Under fp16 loss scaling an inf gradient norm is an overflow the scaler skips, not divergence.
        self._check_grad_norms = not grad_scaler
        from bench.devices import device as device_kind

        self._dev = device_kind(device)  # its timer, sync and memory counters
        self._check_every = self._dev.finite_check_every  # nan/inf checks: each one reads the device
        self._checked = 0  # steps whose loss and gradient norm are known to be finite
        self.grad_norms: list = []  # per step: the total gradient norm the loop computed, or None
        self._pending_grad_norm = None
        self.budget = budget
        self._t_warm = None  # wall clock at the end of the timing warm-up
        self._eval_at_warm = 0.0
        self.timing_warmup = timing_warmup
        self.total_steps = total_steps
        self._bar = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, desc=description, unit="step", leave=False, file=sys.stderr)
        self._optimizer = None
        self._t_start = None
        self._t_stop = None
        self.last_step_end = None  # perf_counter at the end of the last step()
        self._marks: list = []  # per step end: perf_counter value or CUDA event
        self._starts: list = []  # per step start: the previous end, or the end of an evaluation
        self.evaluator, self.eval_every, self.target_f1 = evaluator, eval_every, target_f1
        self.eval_curve: list[dict] = []  # step, wall_s since start (evaluations included), scores
        self.eval_total_s = 0.0
        self._pending_loss: list = []
        self._pending_samples = self._pending_real = self._pending_padded = 0
        self.losses: list = []
        self.samples: list[int] = []
        self.real_tokens: list[int] = []
        self.padded_tokens: list[int] = []
        self.lrs: list[float] = []  # learning rate in force during each step
        self._lr_next = None
        self._checksum = 0  # of every batch's token ids and positions, in order (see observe)
        from bench.phases import PhaseClock

        self._phases = PhaseClock(self._dev)
        self._phases_on = False
        self.phases_off_why = "the harness did not attach the phase clock"

    # -- called by the harness -----------------------------------------------------------------
    def attach(self, model) -> None:
        """Split every step into phases, from hooks on ``model`` (see ``bench/phases.py``)."""
        self._phases.attach(model)
        self._phases_on, self.phases_off_why = True, ""

    # -- called by the loops -------------------------------------------------------------------
    def watch(self, optimizer) -> None:
        """Read the learning rate each step actually used from the live optimizer."""
        self._optimizer = optimizer

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
        if self._phases_on:
            self._phases.enter(phase)

    def start(self) -> None:
        self._dev.reset_peak_memory()
        mark = self._now_mark()
        self._starts.append(mark)
        if self._phases_on:
            self._phases.open(mark)
        self._t_start = time.perf_counter() if self._dev.event_timer else mark
        if self.timing_warmup == 0:
            self._t_warm = self._t_start
            self._timed_start()
        self._lr_next = self._current_lr()

    def _timed_start(self) -> None:
        if self.on_timed_start is not None:
            self.on_timed_start()

    def observe_grad_norm(self, norm) -> None:
        """The total gradient norm of this optimizer step, where the loop computes one (clipping,
        the Trainer's logging): checked for nan/inf like the loss."""
        self._pending_grad_norm = norm.detach() if hasattr(norm, "detach") else norm

    def observe(self, loss, batch) -> None:
        """One forward/backward: its loss (a tensor, not synchronised here) and its batch."""
        import torch

        self._pending_loss.append(loss.detach())
        mask = batch["attention_mask"]
        # A running checksum of which pairs came in which order, kept on the device (no sync):
        # equal checksums in two records mean the two loops saw the same batches in the same order.
        ids = batch["input_ids"]
        positions = torch.arange(1, ids.shape[1] + 1, device=ids.device)
        self._checksum = (self._checksum * 1000003 + (ids.long() * positions).sum()) % 2147483647
        self._pending_samples += int(mask.shape[0])
        self._pending_real += mask.sum()  # a tensor: summed lazily, no sync here
        self._pending_padded += int(mask.numel())

    def step(self, loss=None, batch=None) -> None:
        """End of one optimizer step."""
        if loss is not None:
            self.observe(loss, batch)
        if self._t_start is None:
            raise RuntimeError("StepMeter.step() before start()")
        if not self._pending_loss:
            raise RuntimeError("StepMeter.step() with no observed batch")
        mark = self._now_mark()
        self._marks.append(mark)
        self.last_step_end = time.perf_counter()  # host clock: where the loop's time after its steps begins
        if self._phases_on:
            self._phases.close(mark)
        n = len(self._pending_loss)
        self.losses.append(sum(self._pending_loss) / n if n > 1 else self._pending_loss[0])
        self.samples.append(self._pending_samples)
        self.real_tokens.append(self._pending_real)
        self.padded_tokens.append(self._pending_padded)
        self._pending_loss, self._pending_samples, self._pending_real, self._pending_padded = [], 0, 0, 0
        self.grad_norms.append(self._pending_grad_norm)
        self._pending_grad_norm = None
        self.lrs.append(self._lr_next)
        self._lr_next = self._current_lr()
        if self._bar is not None:
            self._bar.update(1)
        if self.evaluator is not None and self.eval_every and len(self.losses) % self.eval_every == 0:
            mark = self._evaluate()
            self.last_step_end = time.perf_counter()
        self._starts.append(mark)
        if self._phases_on:
            self._phases.open(mark)
        if len(self.losses) == self.timing_warmup:
            self._timed_start()
        if len(self.losses) - self._checked >= self._check_every:
            self.check_finite()
        if self.budget is not None:
            self._check_budget()

    def check_finite(self) -> None:
        """Raise ``Diverged`` at the first step since the last check whose loss or gradient norm is
        nan or inf."""
        import math

        import torch

        start, end = self._checked, len(self.losses)
        if start == end:
            return
        losses = torch.stack([torch.as_tensor(x, dtype=torch.float32).reshape(()).cpu() for x in self.losses[start:]])
        norms = [None if g is None else float(g) for g in self.grad_norms[start:]]
        finite = torch.isfinite(losses).tolist()
        for i in range(end - start):
            if not finite[i]:
                self._checked = end
                raise Diverged(start + i + 1, "loss", float(losses[i]))
            if self._check_grad_norms and norms[i] is not None and not math.isfinite(norms[i]):
                self._checked = end
                raise Diverged(start + i + 1, "gradient norm", norms[i])
        self._checked = end

    def _check_budget(self) -> None:
        done = len(self.losses)
        now = time.perf_counter()
        if done == self.timing_warmup:
            self._t_warm, self._eval_at_warm = now, self.eval_total_s
        if self._t_warm is None or done - self.timing_warmup < PROJECTION_MIN_STEPS:
            return
        timed = done - self.timing_warmup
        per_step = (now - self._t_warm - (self.eval_total_s - self._eval_at_warm)) / timed
        t0, budget_s = self.budget
        projected = now - t0 + (self.total_steps - done) * per_step
        if projected > PROJECTION_SLACK * budget_s:
            samples = sum(self.samples[self.timing_warmup:]) / (per_step * timed)
            if self._bar is not None:
                self._bar.close()
            raise WouldTimeOut(
                f"would not finish within --cell-timeout {budget_s:g} s: {per_step:.2f} s/step "
                f"({samples:.2f} samples/s) over steps {self.timing_warmup + 1}-{done} projects "
                f"{projected:.0f} s for {self.total_steps} steps; stopped after step {done}")

    def _now_mark(self):
        return self._dev.mark()

    def _evaluate(self):
        """Evaluate now; the next step's clock starts after it."""
        self._dev.synchronize()
        t0 = time.perf_counter()
        scores = self.evaluator()
        self._dev.synchronize()
        t1 = time.perf_counter()
        self.eval_total_s += t1 - t0
        if scores is not None:  # rank 0
            self.eval_curve.append({"step": len(self.losses), "wall_s": t1 - self._t_start,
                                    "eval_f1": scores["eval_f1"], "eval_accuracy": scores["eval_accuracy"]})
        return self._now_mark()

    def stop(self) -> None:
        if self._phases_on:
            self._phases.drop_open()  # the step opened after the last one never ran
            self._phases.detach()  # evaluation after training is not a step
        self._dev.synchronize()
        self._t_stop = time.perf_counter()
        if self._bar is not None:
            self._bar.close()

    # -- read by the harness -------------------------------------------------------------------
    def _phase_fields(self, steps: list[float], warmup: int) -> dict:
        from bench.phases import summarize

        if not self._phases_on:
            return {"phase_split": self.phases_off_why}
        per_step = self._phases.step_phase_s()
        cost = self._phases.cost_s()
        return {"phase_split": "", "phase_clock": self._phases.clock_name(), **summarize(per_step, steps, warmup),
                "phase_cost_s_p50": percentile(cost[warmup:], 50) if cost[warmup:] else None}

    @property
    def started_at(self) -> float | None:
        """perf_counter when the loop called ``start()`` (its setup ends there), None before."""
        return self._t_start

    def _current_lr(self):
        if self._optimizer is None:
            return None
        return float(self._optimizer.param_groups[0]["lr"])

    def step_seconds(self) -> list[float]:
        return [self._dev.seconds_between(a, b) for a, b in zip(self._starts, self._marks)]

    def summary(self) -> dict:
        """Throughput and memory over the timed steps (the first ``timing_warmup`` left out)."""
        if self._t_stop is None:
            raise RuntimeError("StepMeter.summary() before stop()")
        steps = self.step_seconds()
        w = self.timing_warmup
        timed = steps[w:]
        timed_s = sum(timed)
        n_samples = sum(self.samples[w:])
        real = [int(t) for t in self.real_tokens]
        out = {
            "steps": len(steps),
            "timed_steps": len(timed),
            "timing_warmup_steps": min(w, len(steps)),
            "timed_s": timed_s,
            "train_wall_s": self._t_stop - self._t_start,
            "samples_per_s": n_samples / timed_s if timed and timed_s > 0 else None,
            "real_tokens_per_s": sum(real[w:]) / timed_s if timed and timed_s > 0 else None,
            "padded_tokens_per_s": sum(self.padded_tokens[w:]) / timed_s if timed and timed_s > 0 else None,
            "padding_fraction": 1 - sum(real) / sum(self.padded_tokens) if self.padded_tokens else None,
            "step_s_p50": percentile(timed, 50) if timed else None,
            "step_s_p90": percentile(timed, 90) if timed else None,
            "step_s_mean": statistics.fmean(timed) if timed else None,
            "step_s": steps,
            "step_losses": [float(x) for x in self.losses],
            "step_grad_norms": [None if g is None else float(g) for g in self.grad_norms]
            if any(g is not None for g in self.grad_norms) else [],
            "step_lrs": self.lrs,
            "step_samples": self.samples,
            "step_real_tokens": real,
            "step_padded_tokens": self.padded_tokens,
            "samples_seen": sum(self.samples),
            "batch_order_checksum": int(self._checksum),
            "peak_rss_mib": _rss_peak_mib(),
        }
        out.update(self._phase_fields(steps, w))
        out["train_loss_final"] = out["step_losses"][-1] if out["step_losses"] else None
        out["eval_curve"] = self.eval_curve
        out["eval_during_training_s"] = self.eval_total_s
        hit = next((e for e in self.eval_curve if self.target_f1 is not None and e["eval_f1"] >= self.target_f1), None)
        out["time_to_target_s"] = hit["wall_s"] if hit else None
        out["time_to_target_step"] = hit["step"] if hit else None
        out.update(self._dev.peak_memory_mib())
        return out
