"""The report's sections, in order: each a module with ``lines(ctx)`` (its Markdown) and, where it
draws, ``plots(ctx, plt)`` (its PNGs, by keys its ``lines`` reads back from ``ctx.plots_of``)."""

from __future__ import annotations

from bench.report import (bottom_line, concurrency, fast_path, finetune, gaps, not_run, parity, per_seed, phases, quality, setup, time_to_accuracy, title, wall, why)
from bench.report import per_device as devices

SECTIONS = (
    title,  # what the report is made from
    bottom_line,  # the answer: speed and quality per loop, what the evidence supports and cannot tell
    finetune,  # each loop's LoRA cells beside its full fine-tuning cells (--finetune full,lora)
    setup,  # the command, the environment, what was trained
    devices,  # per device, every table column of the registry
    fast_path,  # each loop under a preset beside its tutorial settings
    gaps,  # each loop's step time against the manual loop's
    phases,  # where a step's time goes
    wall,  # where a cell's wall time goes
    why,  # bench explain: each difference between two loops' native setups
    quality,  # quality across seeds, paired on the same validation pairs
    per_seed,  # each seed's loops side by side, the detail behind a seed group's answer
    time_to_accuracy,  # validation F1 during training
    parity,  # do the loops train the same thing, and their settings side by side
    concurrency,  # cells run beside each other (--executor ray), and whether they contended
    not_run,  # skipped and failed cells
)
