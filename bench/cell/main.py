"""Run one cell (loop x device x precision) and turn it into a Record.

``run_cell`` runs in the calling process (the tests use it directly); ``python -m bench.cell.main
CELL.json RESULT.json`` is how a sweep runs each cell in a fresh process of its own.  What the cell
does between its start and its record is in two steps of their own: ``bench/cell/steps.py`` (setup
and the loop's run) and ``bench/cell/record.py`` (the record, with DDP ranks merged).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import TYPE_CHECKING

from bench.config import Cell, ConfigError
from bench.cell.wallclock import utc_now

if TYPE_CHECKING:  # records import nothing heavy, but the cell imports them where it makes one
    from bench.records import Record

def resolve_loop(name: str):
    """The loop's ``train``, from the registry in ``loops/__init__.py``."""
    import loops

    if name not in loops.LOOPS:
        raise ConfigError(f"unknown loop {name!r}; choose from {', '.join(loops.LOOPS)}")
    missing = loops.missing_package(name)
    if missing:
        raise ConfigError(f"the {name} loop needs the package {missing!r}: pip install -e \".[{missing}]\"")
    return loops.resolve(name)


def skip_reason(cell: Cell) -> str | None:
    """Why this cell cannot run on this machine, or None."""
    from bench.precision import device_unavailable, precision_unsupported

    return device_unavailable(cell.device) or precision_unsupported(cell.device, cell.precision)


def _reset_process_state(cell: Cell) -> None:
    """Process-wide switches a previous cell in the same process may have left behind."""
    import torch

    from bench.precision import set_tf32

    # Only what an earlier cell can have left: a fresh process has no Accelerator state and no
    # deterministic mode, and importing accelerate or setting the mode (torch imports inductor's
    # config for it) would cost a second or more of every cell for nothing.
    if "accelerate.state" in sys.modules:
        sys.modules["accelerate.state"].AcceleratorState._reset_state(reset_partial_state=True)
    set_tf32(False)
    if cell.run.parity:
        # Same kernels, same reduction order, every run: what step-wise parity needs, with the
        # environment the device needs for it set before its first kernel (cuBLAS's workspace).
        # Where the device has such rules, a kernel without a deterministic form is an error, not
        # a warning, since parity cannot hold with it.
        from bench.devices import device

        needs = device(cell.device).deterministic_env
        late = [key for key, _ in needs if key not in os.environ and _device_in_use(cell.device)]
        if late:
            # cuBLAS reads its workspace configuration once, when this process first used it: set
            # now, strict determinism would raise at the first matmul (bench.sweep.driver sets it before
            # an --in-process sweep's first cell).
            raise ConfigError(f"--parity on {cell.device}: {', '.join(late)} must be set before this process first "
                              "uses the device, and an earlier cell in this process already has; run the cell in "
                              "a process of its own (without --in-process), or set it in the environment")
        for key, value in needs:
            os.environ.setdefault(key, value)
        torch.use_deterministic_algorithms(True, warn_only=not needs)
    elif torch.are_deterministic_algorithms_enabled() or getattr(sys.modules.get("torch._inductor.config"),
                                                                 "deterministic", False):
        torch.use_deterministic_algorithms(False)


def _device_in_use(name: str) -> bool:
    """Has this process already used the device (so its libraries have read their environment)?"""
    import torch

    from bench.devices import device

    return device(name).torch_type == "cuda" and torch.cuda.is_initialized()


def deterministic_env_for(cells) -> dict:
    """The environment every --parity cell among ``cells`` needs before its device's first kernel,
    for a process that runs them one after another (an --in-process sweep)."""
    from bench.devices import device

    env = {}
    for cell in cells:
        if cell.run.parity:
            env.update(dict(device(cell.device).deterministic_env))
    return env


def record_base(cell: Cell, command: str) -> dict:
    """The fields every record of this cell starts with, whatever becomes of it."""
    return dict(loop=cell.loop, device=cell.device, precision=cell.precision, cell_id=cell.cell_id,
                repeat=cell.repeat, seed=cell.run.seed, config=cell.to_dict(), command=command, started_at=utc_now())


def skipped_record(cell: Cell, command: str) -> "Record | None":
    """A ``skipped`` record if this machine cannot run the cell, else None."""
    from bench.records import Record

    reason = skip_reason(cell)
    return Record(status="skipped", reason=reason, finished_at=utc_now(), **record_base(cell, command)) if reason else None


def run_cell(cell: Cell, progress: bool = True, command: str = "",
             budget: tuple[float, float] | None = None,
             process_started: float | None = None, clock=None,
             peak: tuple[float, str] | None = None) -> "Record | None":
    """The cell's record (None on ranks other than 0 of a distributed cell).  ``budget``: the
    (perf_counter start, seconds) the cell has; see ``StepMeter``.  ``clock``: the process's
    ``WallClock`` (``bench/cell/wallclock.py``), started by ``main``; ``peak``: (TFLOP/s, where it comes
    from) measured once for this sweep's device and precision, instead of probing again here."""
    from bench.cell import dist
    from bench.cell.envinfo import git_sha
    from bench.records import Record
    from bench.cell.wallclock import WallClock

    git_sha()  # the commit of the code this process imported, read now, recorded at the end
    clock = clock or WallClock()

    if dist.is_distributed():
        from bench.devices import device

        # This rank's GPU first: anything asked of CUDA before (the capability check below) would
        # otherwise make a stray context on GPU 0 in every rank.
        device(cell.device).set_current(dist.local_rank())
    skipped = skipped_record(cell, command)
    if skipped:
        return skipped
    base = record_base(cell, command)
    if dist.is_distributed():
        # Under torchrun a rank that fails must exit non-zero, so that torchrun stops the others
        # instead of leaving them waiting in a collective; the sweep records the failure.
        return _run(cell, base, progress, budget, process_started, clock, peak)
    try:
        return _run(cell, base, progress, budget, process_started, clock, peak)
    except ConfigError as exc:
        return Record(status="failed", reason=str(exc), finished_at=utc_now(),
                      failure={"kind": "config", "message": str(exc), "last_lines": []}, **base)
    except Exception as exc:  # the cell failed, the sweep goes on
        tail = traceback.format_exc().strip().splitlines()[-12:]
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return Record(status="failed", reason=reason, finished_at=utc_now(),
                      failure={"kind": "exception", "message": reason, "last_lines": tail}, **base)


def _run(cell: Cell, base: dict, progress: bool, budget: tuple[float, float] | None,
         process_started: float | None = None, clock=None, peak: tuple[float, str] | None = None):
    """The cell's setup, its loop and its record, in that order (``bench/cell/steps.py``,
    ``bench/cell/record.py``); None on ranks other than 0."""
    import time

    from bench.cell import record as cellrecord
    from bench.cell import steps as cellrun
    from bench.cell import dist

    clock.lap("imports_s")
    cell.run.validate()
    if dist.world_size() != cell.world_size:
        raise ConfigError(f"cell wants {cell.world_size} processes, this one runs in a world of {dist.world_size()}")
    # Startup cost, the part of a short run users pay before the first step: the loop's imports
    # (torch, transformers, its library; ~0 when a process already has them), model, data, and the
    # loop's own setup (Accelerator, Trainer, prepare...) up to its first step.
    setup, t = {}, time.perf_counter()
    train = resolve_loop(cell.loop)
    import torch  # noqa: F401  (already imported by any loop; named so the cost is counted here)
    setup["imports_s"] = time.perf_counter() - t
    cellrun.quiet_libraries(progress)
    clock.lap("imports_s")
    _reset_process_state(cell)
    r = cellrun.CellRun(cell, base, clock, setup, process_started)
    cellrun.set_up(r, peak, progress, budget)
    result, stopped = cellrun.train(r, train)
    if stopped is not None:
        return cellrecord.stopped_record(r, stopped)
    scores = cellrecord.read_back(r, result)
    ranks = cellrecord.gather_ranks(r)
    if ranks is None:
        return None  # only rank 0 writes
    return cellrecord.finished_record(r, ranks, scores)


def _record_fields(summary: dict) -> dict:
    """The meter's summary as Record fields (``bench.cell.steps.record_fields``)."""
    from bench.cell.steps import record_fields

    return record_fields(summary)


def main(argv: list[str]) -> int:
    """``python -m bench.cell.main CELL.json RESULT.json [--no-progress] [--command CMD] [--time-budget S]``"""
    import os
    import time

    from bench.cell import dist

    started = time.perf_counter()
    entered = time.time()  # epoch seconds: the process's start time, from the kernel, is one too
    from bench.cell.wallclock import WallClock

    clock = WallClock()
    dist.die_with_parent()  # under torchrun too: a worker never outlives its launcher
    cell_path, result_path = argv[0], argv[1]
    progress = "--no-progress" not in argv
    command = argv[argv.index("--command") + 1] if "--command" in argv else ""
    with open(cell_path, encoding="utf-8") as f:
        cell = Cell.from_dict(json.load(f))
    budget = (started, float(argv[argv.index("--time-budget") + 1])) if "--time-budget" in argv else None
    peak = None
    if "--peak-tflops" in argv:  # measured once for this sweep's device and precision (bench.sweep.driver)
        peak = (float(argv[argv.index("--peak-tflops") + 1]), argv[argv.index("--peak-source") + 1])
    clock.lap("harness_s")
    try:
        from bench.cell.wallclock import process_start_time

        process_started = process_start_time()  # epoch seconds the process began, to the clock tick
        clock.add("interpreter_s", entered - process_started)
        clock.lap("imports_s")
        record = run_cell(cell, progress=progress, command=command, budget=budget,
                          process_started=process_started, clock=clock, peak=peak)
    except BaseException:
        if dist.is_distributed():  # torchrun's summary shows banners; the sweep reads the rank's own words
            lines = traceback.format_exc().strip().splitlines()[-8:]
            error = os.path.join(os.path.dirname(os.path.abspath(result_path)), f"error-rank{dist.rank()}.txt")
            with open(error, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        raise
    if record is not None:  # rank 0 (or a single process) writes the record
        with open(result_path, "w", encoding="utf-8") as f:
            f.write(record.to_json())
    _leave_process_group()
    return 0


def exit_now(code: int) -> None:
    """End the cell's process once its record is written, without the interpreter's teardown: freeing
    every module of torch, transformers and datasets one by one takes 0.5-3 s and serves no one (the
    record is closed, the output flushed, and a DataLoader's worker processes are ended first).  Under
    torchrun the ordinary exit, so that the process group ends as torch expects."""
    from bench.cell import dist

    if dist.is_distributed():
        sys.exit(code)
    if "multiprocessing" in sys.modules:
        for child in sys.modules["multiprocessing"].active_children():
            child.terminate()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _leave_process_group() -> None:
    """Tear down the process group a loop made (NCCL warns, and may hang at exit, without it)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
