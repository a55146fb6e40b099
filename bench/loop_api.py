"""The contract every loop keeps (``loops/__init__.py`` registers them; the contract test in
``tests/test_contract.py`` holds each registered loop to it).

    def train(cell: Cell, data: PreparedData, model, meter: StepMeter) -> LoopResult

``cell`` carries the run config (hyperparameters), the device and the precision; ``data`` is the
harness's PreparedData (tokenized splits, collator, shared sampler); ``model`` is built and seeded
by the harness on the CPU; ``meter`` is the harness's StepMeter.  A loop must:

1. draw its batches from ``data.sampler`` (the one shared order; under DDP a shard of it or of a
   ``DistributedSampler``), through ``data.collator``;
2. call ``meter.watch(optimizer)`` and ``meter.start()`` just before its first batch,
   ``meter.observe(loss, batch)`` after every micro-batch's backward, ``meter.step()`` once per
   optimizer step, after the scheduler's step, and ``meter.stop()`` after the last; and mark the two
   phase boundaries no hook sees: its batches through ``meter.batches(...)`` (or, where the library
   fetches them, ``meter.enter("data")`` / ``meter.enter("other")`` around the fetch) and
   ``meter.enter("optimizer")`` where its update begins (before unscaling and clipping);
3. pass each gradient norm it computes to ``meter.observe_grad_norm`` (for the divergence check);
4. average the loss over the micro-batches of an accumulation group, a short last group included;
5. not advance its schedule on an fp16 step the loss scaler skipped (``loops.common.ScaleWatch``:
   ``skipped()`` once per optimizer step, after the scaler's update);
6. return the live objects, unwrapped (no DDP, compile or library wrapper around ``model``,
   ``optimizer`` or ``scheduler``), so the harness reads the settings in force from them, and
   declare in ``extra`` its own facts (their keys are loop-specific in the report's settings
   table) and in ``extra_work`` the per-step work it does beyond the manual loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.config import ConfigError


class UnsupportedSetting(ConfigError):
    """A setting this loop cannot express; refused rather than silently run differently."""


@dataclass
class LoopResult:
    model: object  # the trained model, unwrapped, for the shared evaluation
    optimizer: object  # the torch optimizer that stepped (unwrapped)
    scheduler: object  # the LR scheduler that stepped (unwrapped)
    train_dataloader: object
    grad_scaler: object | None = None  # torch GradScaler in use, if any
    clip_max_norm: float | None = None  # gradient clipping in force (None: none)
    grad_accum: int = 1
    wrapped_model: object = None  # what ran the steps (DDP, compile wrapper), read for its DDP settings
    h2d_non_blocking: bool = False  # host-to-device batch copies asynchronous
    extra: dict = field(default_factory=dict)  # loop-specific facts worth recording
    extra_work: list = field(default_factory=list)  # per-step work beyond the manual loop, in words
