"""The plan of a sweep: every axis of the matrix expanded in one place, each run config validated
once.

Axes: loops x devices x precisions x presets x batch sizes x fine-tunings (full, LoRA) x seeds x
repeats.  The run config depends on the device, the preset, the batch size and the fine-tuning (a preset fills the fast-path options per device; flags
given on the command line win), never on the loop or the precision, so the loops compared side by
side train the same configuration -- except under ``--defaults native``, where each loop gets its
own library's defaults (``loops/native.py``) on purpose.

Order: a round of every cell (repeat 0), then the next round, ...; inside a round by seed, device,
preset, batch size, fine-tuning, precision, then loop.  Cells compared side by side thus run close together in time,
and a slow spell of a shared machine lands on one repeat of each loop, not on one loop.

Seeds (``--seeds``) are an axis of the run config, not repeats: a seed fixes the classifier head's
initialisation, the sample order and the dropout stream, the same in every loop, so the loops of one
seed are compared pair by pair and seeds measure how much the result depends on the draw.  Each seed
has its own cell ids; ``--repeats`` repeats one seed to measure timing noise.
"""

from __future__ import annotations

from bench.config import Cell, RunConfig


def plan_cells(loops: list[str], devices: list[str], precisions: list[str], runs: list[RunConfig],
               presets: list[str | None] = (None,), repeats: int = 1, nproc: int = 1, nnodes: int = 1,
               explicit: set[str] = frozenset(), seeds: list[int] | None = None) -> list[Cell]:
    """Every cell of the matrix, in the order above.  ``runs``: one base run config per batch size and fine-tuning;
    ``presets``: preset names (None: the tutorial's settings); ``explicit``: the fast-path fields the
    user set by flag, which a preset leaves alone; ``seeds``: the seeds to sweep (None: each run
    config's own seed)."""
    import dataclasses

    from bench.sweep.presets import apply_preset

    configs = []  # (device, run config) in device, preset, batch-size order; each validated once
    for device in devices:
        for preset in presets:
            for base in runs:
                run = apply_preset(base, device, preset, explicit)
                run.validate()
                configs.append((device, run))
    seeded = []  # (device, run config) in seed, device, preset, batch-size order
    for seed in seeds or [None]:
        for device, run in configs:
            if seed is not None:
                run = dataclasses.replace(run, seed=seed)
                run.validate()
            seeded.append((device, run))
    return [Cell(loop=loop, device=device, precision=precision, run=native_run(run, loop, device, precision, explicit),
                 repeat=repeat, nproc=nproc, nnodes=nnodes)
            for repeat in range(repeats) for device, run in seeded for precision in precisions for loop in loops]


def native_run(run: RunConfig, loop: str, device: str, precision: str, explicit: set[str] = frozenset()) -> RunConfig:
    """Under ``--defaults native``, the loop's own library defaults (loops/native.py) in the fields the
    user did not set by flag; under ``tutorial``, the run config unchanged."""
    import dataclasses

    from loops.native import settings_for

    if run.defaults != "native":
        return run
    native = {k: v for k, v in settings_for(loop, device, precision).items() if k not in explicit}
    out = dataclasses.replace(run, **native)
    out.validate()
    return out
