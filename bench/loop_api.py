"""The one shape shared by the three loops.

    train(cell, data, model, meter) -> LoopResult

``cell`` carries the run config (hyperparameters) and the device and precision; ``data`` is the
harness's PreparedData (tokenized splits, collator, shared sampler); ``model`` is built and seeded
by the harness on the CPU; ``meter`` is the harness's StepMeter.  The loop returns the live
objects it trained with, so the harness can read the settings actually in force from them.
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
