"""Where a step's time goes: ``data``, ``forward``, ``backward``, ``optimizer`` and ``other``.

The harness owns this clock as it owns the meter's.  A step (the meter's: from the end of the
previous optimizer step to the end of this one) is cut at phase boundaries; each stretch between
two boundaries belongs to the phase entered at its start.  The five phases of a step therefore
cover the step's time with no gap and no overlap, and the record checks that they add up.

Where each boundary comes from:

- ``forward``: a forward pre-hook and a forward hook on the model the harness built; they fire
  inside whatever wraps it (DDP, Accelerate's autocast, a LightningModule, the Trainer).
- ``backward``: a hook on the loss tensor that forward returned (the first gradient the backward
  pass computes) to a callback the autograd engine runs when that pass is over, queued behind DDP's
  own end-of-backward callback, so a gradient all-reduce the backward waits for is in ``backward``.
- ``data``: ``StepMeter.batches`` around the loop's batch iterator (the wait for the next batch,
  collate, and the host-to-device copy where the loader makes it); the Trainer's
  ``get_batch_samples``; in Lightning, from the end of a batch (``on_train_batch_end``) to the start
  of the next (``on_train_batch_start``): its fetcher, its batch transfer, and its loop's
  bookkeeping between the two hooks, which it gives no handle to tell apart.
- ``optimizer``: entered where the loop starts its update (before unscaling and clipping:
  ``StepMeter.enter("optimizer")``, the Trainer's gradient-norm methods, Lightning's
  ``on_before_optimizer_step``) and run to the end of the step: clipping, the scaler, the
  optimizer's step, the scheduler, ``zero_grad`` (Lightning calls ``zero_grad`` inside its closure,
  between forward and backward: there it is ``other``).
- ``other``: the rest, the loop's own machinery between those: loss handling between forward and
  backward, accumulation bookkeeping, callbacks, logging, and the meter's own per-step call.

CPU: ``time.perf_counter``; CUDA: an event per boundary on the current stream, read once when the
run is over (no synchronize per step), as the meter does.  What the clock costs is measured: one
boundary and one hooked forward call are timed in a calibration loop, and each step's cost is its
count of boundaries and forward calls times those (``phase_cost_s`` in the record).

Off under ``--compile`` (hooks that read a clock inside a compiled forward break its graph) and
with ``--no-phases``.
"""

from __future__ import annotations

import statistics
import time

from bench.records.vocabulary import PHASE_SUM_TOLERANCE, PHASES


class PhaseClock:
    def __init__(self, dev):
        self._dev = dev  # bench.devices.Device: its mark() and seconds_between()
        self._open = False
        self._current = None
        self._marks: list = []  # this step's boundaries: (mark, phase entered)
        self._forwards = 0
        self.steps: list = []  # per closed step: its boundaries, the last one (end, None)
        self.forward_calls: list[int] = []
        self._handles: list = []

    # -- set up by the harness -----------------------------------------------------------------
    def attach(self, model) -> None:
        """Hook the model's forward (and, through its loss, the backward pass)."""
        self._handles += [model.register_forward_pre_hook(self._forward_begins),
                          model.register_forward_hook(self._forward_ends)]

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- boundaries ----------------------------------------------------------------------------
    def enter(self, phase: str) -> None:
        if self._open and phase != self._current:
            self._marks.append((self._dev.mark(), phase))
            self._current = phase

    def open(self, start_mark) -> None:
        """A step starts at ``start_mark`` (the meter's), in ``other`` until a boundary says more."""
        self._marks, self._current, self._forwards, self._open = [(start_mark, "other")], "other", 0, True

    def close(self, end_mark) -> None:
        if self._open:
            self.steps.append(self._marks + [(end_mark, None)])
            self.forward_calls.append(self._forwards)
        self._open, self._marks = False, []

    def drop_open(self) -> None:
        self._open, self._marks = False, []

    def _forward_begins(self, module, args):
        if self._open:
            self._forwards += 1
            self.enter("forward")

    def _forward_ends(self, module, args, output):
        if not self._open:
            return
        self.enter("other")
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if loss is not None and getattr(loss, "requires_grad", False):
            loss.register_hook(self._backward_begins)

    def _backward_begins(self, grad):
        import torch

        self.enter("backward")
        engine = torch.autograd.Variable._execution_engine
        # Callbacks run in the order queued, and DDP queues its all-reduce wait during the pass,
        # after this one: queueing the end from inside the first callback puts it behind DDP's.
        engine.queue_callback(lambda: engine.queue_callback(self._backward_ends))

    def _backward_ends(self):
        self.enter("other")

    # -- read by the meter ---------------------------------------------------------------------
    def clock_name(self) -> str:
        """``host`` (perf_counter: when the CPU passed a boundary) or ``device-timeline`` (events:
        when the device reached it, in stream order).  On the device timeline, while the CPU runs
        ahead, host-side work (loading the next batch, a host sync) overlaps device work and is
        counted in whichever phase the device was busy with; ``data`` is then the time the device
        waited for a batch, not the time loading took.  The split's recorded cost is the CPU's
        cost of recording the events."""
        return "device-timeline" if self._dev.event_timer else "host"

    def step_phase_s(self) -> list[dict]:
        """Per closed step: seconds in each phase."""
        out = []
        for marks in self.steps:
            spent = dict.fromkeys(PHASES, 0.0)
            for (a, phase), (b, _) in zip(marks, marks[1:]):
                spent[phase] += self._dev.seconds_between(a, b)
            out.append(spent)
        return out

    def cost_s(self) -> list[float]:
        """Per closed step: what the clock itself cost (boundaries and hooked forward calls)."""
        per_mark_s, per_forward_s = _calibration(self._dev)
        return [(len(m) - 1) * per_mark_s + n * per_forward_s for m, n in zip(self.steps, self.forward_calls)]


_CALIBRATED: dict = {}  # device type -> (seconds per boundary, seconds per hooked forward call)


def _calibration(dev, n: int = 2000) -> tuple[float, float]:
    """Seconds one boundary costs (a mark and its bookkeeping, on a throwaway clock) and the hook
    dispatch of one forward call (a module with two hooks against the same module without), medians
    of 5 rounds; measured once per process and device type."""
    import torch

    if dev.name not in _CALIBRATED:
        probe = PhaseClock(dev)
        probe._open = True
        per_mark = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                probe._current = None
                probe.enter("data")
            per_mark.append((time.perf_counter() - t) / n)
        plain, hooked = torch.nn.Identity(), torch.nn.Identity()
        hooked.register_forward_pre_hook(lambda m, a: None)
        hooked.register_forward_hook(lambda m, a, o: None)
        x = torch.zeros(1)
        per_call = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                plain(x)
            t_plain = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(n):
                hooked(x)
            per_call.append(max(0.0, (time.perf_counter() - t - t_plain) / n))
        _CALIBRATED[dev.name] = (statistics.median(per_mark), statistics.median(per_call))
    return _CALIBRATED[dev.name]


def summarize(per_step: list[dict], step_s: list[float], warmup: int) -> dict:
    """Record fields from the per-step phases: medians and means over the timed steps, the steps
    themselves as one list per phase, and how many steps add up to their time within tolerance."""
    timed = per_step[warmup:]
    columns = {p: [s[p] for s in per_step] for p in PHASES}
    sums_ok = sum(1 for s, t in zip(per_step, step_s)
                  if t > 0 and abs(sum(s.values()) - t) <= PHASE_SUM_TOLERANCE * t)
    return {
        "phase_s_p50": {p: statistics.median([s[p] for s in timed]) for p in PHASES} if timed else {},
        "phase_s_mean": {p: statistics.fmean([s[p] for s in timed]) for p in PHASES} if timed else {},
        "step_phase_s": columns if per_step else {},
        "phase_sum_ok_steps": sums_ok,
    }
