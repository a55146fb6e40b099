"""Run one cell (loop x device x precision) and turn it into a Record.

``run_cell`` runs in the calling process (the tests use it directly); ``python -m bench.cell
CELL.json RESULT.json`` is how a sweep runs each cell in a fresh process of its own.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import traceback
from typing import TYPE_CHECKING

from bench.config import Cell, ConfigError

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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
            # now, strict determinism would raise at the first matmul (bench.sweep sets it before
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

    return name.split(":")[0] == "cuda" and torch.cuda.is_initialized()


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
                repeat=cell.repeat, seed=cell.run.seed, config=cell.to_dict(), command=command, started_at=_now())


def skipped_record(cell: Cell, command: str) -> "Record | None":
    """A ``skipped`` record if this machine cannot run the cell, else None."""
    from bench.records import Record

    reason = skip_reason(cell)
    return Record(status="skipped", reason=reason, finished_at=_now(), **record_base(cell, command)) if reason else None


def run_cell(cell: Cell, progress: bool = True, command: str = "",
             budget: tuple[float, float] | None = None,
             process_started: float | None = None, clock=None,
             peak: tuple[float, str] | None = None) -> "Record | None":
    """The cell's record (None on ranks other than 0 of a distributed cell).  ``budget``: the
    (perf_counter start, seconds) the cell has; see ``StepMeter``.  ``clock``: the process's
    ``WallClock`` (``bench/wallclock.py``), started by ``main``; ``peak``: (TFLOP/s, where it comes
    from) measured once for this sweep's device and precision, instead of probing again here."""
    from bench import dist
    from bench.records import Record
    from bench.wallclock import WallClock

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
        return Record(status="failed", reason=str(exc), finished_at=_now(),
                      failure={"kind": "config", "message": str(exc), "last_lines": []}, **base)
    except Exception as exc:  # the cell failed, the sweep goes on
        tail = traceback.format_exc().strip().splitlines()[-12:]
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return Record(status="failed", reason=reason, finished_at=_now(),
                      failure={"kind": "exception", "message": reason, "last_lines": tail}, **base)


# What each rank sends rank 0 after training (the rest of the record is rank 0's own).
_PER_RANK = ("samples_per_s", "real_tokens_per_s", "timed_s", "step_s_p50", "peak_rss_mib", "peak_alloc_mib",
             "peak_reserved_mib", "steps")


def _process_wall_s(process_started: float | None) -> float | None:
    """Seconds since the cell's process started (None when the cell runs in a process of its caller)."""
    import time

    return None if process_started is None else time.time() - process_started


def _run(cell: Cell, base: dict, progress: bool, budget: tuple[float, float] | None,
         process_started: float | None = None, clock=None, peak: tuple[float, str] | None = None):
    import dataclasses

    from bench import dist
    from bench.data import prepare
    from bench.envinfo import environment
    from bench.evaluation import evaluate_model
    from bench.machine import LoadWatch, busy_verdict
    from bench.meter import Diverged, StepMeter, StopTraining
    from bench.models import load_model
    from bench.peak import device_peak
    from bench.precision import plan
    from bench.records import Record
    from bench.settings import PrecisionProbe, precision_mismatch, read_settings

    import time

    clock.lap("imports_s")
    run = cell.run
    run.validate()
    if dist.world_size() != cell.world_size:
        raise ConfigError(f"cell wants {cell.world_size} processes, this one runs in a world of {dist.world_size()}")
    # Startup cost, the part of a short run users pay before the first step: the loop's imports
    # (torch, transformers, its library; ~0 when a process already has them), model, data, and the
    # loop's own setup (Accelerator, Trainer, prepare...) up to its first step.
    setup, t = {}, time.perf_counter()
    train = resolve_loop(cell.loop)
    import torch  # noqa: F401  (already imported by any loop; named so the cost is counted here)
    setup["imports_s"] = time.perf_counter() - t
    if not progress:  # the libraries' own bars (weights loading, dataset maps) would be frames in a log
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    clock.lap("imports_s")
    _reset_process_state(cell)
    watch = LoadWatch(cell.device)
    clock.lap("harness_s")
    from bench.gpu_facts import GpuWatch

    gpu = GpuWatch(cell.device)  # NVML: other processes on the GPU, clocks, power, the energy counter
    gpu.start()
    # MFU's denominator: the user's (--peak-tflops), recorded as an override; else the figure this
    # sweep measured once for the device and precision, handed to every cell; else measured (CPU,
    # unknown GPU) before training, while the device is idle.
    t = time.perf_counter()
    if run.peak_tflops:
        peak_tflops, peak_source = run.peak_tflops, f"override: --peak-tflops {run.peak_tflops:g}, {cell.precision}"
    else:
        peak_tflops, peak_source = peak if peak is not None else device_peak(cell.device, cell.precision)
    setup["harness_peak_probe_s"] = time.perf_counter() - t  # the harness's own, not the loop's: not in the total
    clock.lap("peak_probe_s")
    t = time.perf_counter()
    model, tokenizer, info = load_model(run)
    setup["model_s"] = time.perf_counter() - t
    clock.lap("model_s")
    t = time.perf_counter()
    data = prepare(run, tokenizer)
    setup["data_s"] = time.perf_counter() - t
    clock.lap("data_s")
    precision = plan(cell.precision)

    def evaluator():  # the same shared evaluation, on the model as it is at that step
        scores = evaluate_model(model, data, cell.device, precision.torch_dtype(), run.eval_batch_size,
                                intervals=False)
        model.train()
        return scores

    compiles_at = {}

    def timed_start():  # the machine's load, and compilations counted from here on, cover the timed steps
        watch.timed_start()
        gpu.timed_start()
        compiles_at.update(_dynamo_counts())

    meter = StepMeter(cell.device, run.timing_warmup, cell.run.total_steps(cell.world_size),
                      progress=progress and dist.rank() == 0, description=cell.label,
                      evaluator=evaluator if run.eval_every else None, eval_every=run.eval_every,
                      target_f1=run.target_f1, budget=budget, on_timed_start=timed_start,
                      grad_scaler=precision.grad_scaler)
    if run.compile:
        meter.phases_off_why = "off under --compile (hooks that read a clock inside a compiled forward break its graph)"
    elif not run.phases:
        meter.phases_off_why = "off (--no-phases)"
    else:
        meter.attach(model)  # where each step's time goes: hooks on the model (bench/phases.py)
    probe = PrecisionProbe(model, cell.device)
    clock.lap("harness_s")
    watch.probe("before")
    clock.lap("load_probes_s")
    # Every loop starts from the same RNG state, so dropout draws the same masks in all five (the
    # Trainer reseeds in its constructor with the same seed; the others draw from here on).
    from transformers import set_seed

    set_seed(run.seed)
    stopped = None
    clock.lap("harness_s")
    t_train = time.perf_counter()
    try:
        result = train(cell, data, model, meter)
        t_returned = time.perf_counter()
        meter.check_finite()  # the steps since the last check (on a GPU the meter checks every few)
    except StopTraining as exc:
        if dist.is_distributed():
            raise  # the rank exits non-zero, torchrun stops the others, the sweep records why
        stopped = exc
        meter.stop()
        t_returned = time.perf_counter()
    clock.add_steps(meter, t_train, t_returned)  # the loop's stretch, from the meter's own marks
    clock.restart()
    window = watch.timed_end()
    gpu.timed_end()
    if meter.started_at is not None:  # perf_counter at the loop's first step
        setup["loop_setup_s"] = meter.started_at - t_train
    setup["total_s"] = sum(setup.get(k, 0.0) for k in ("imports_s", "model_s", "data_s", "loop_setup_s"))
    fields_extra = {"setup_s": setup, "process_wall_s": _process_wall_s(process_started)}
    clock.lap("harness_s")
    watch.probe("after")
    clock.lap("load_probes_s")
    probe.remove()
    summary = meter.summary()
    fields = _record_fields(summary)
    clock.lap("harness_s")
    if stopped is not None:
        # Diverged, or could not finish in time: the steps up to there are the record's evidence.
        load = watch.finish([window])
        busy, why = _with_gpu_busy(busy_verdict(load), gpu)
        kind = "diverged" if isinstance(stopped, Diverged) else "would-time-out"
        clock.lap("harness_s")
        env = environment(cell.device)
        clock.lap("env_s")
        fields_extra.update(gpu.fields(gpu.energy_j(), _timed_samples(summary)))
        record = Record(status="failed", reason=stopped.reason(), model=dataclasses.asdict(info), **fields_extra,
                        failure={"kind": kind, "message": stopped.reason(), "last_lines": []},
                        data_source=data.source, data_fingerprint=data.fingerprint, machine_load=load, machine_busy=busy, machine_busy_why=why,
                        env=env, finished_at=_now(), **fields, **base)
        return _with_wall(record, clock, process_started)

    settings = read_settings(result, meter, probe, data.collator, info)
    settings["device"] = cell.device
    # What was in force, not what was asked: --batch-size 100000 on 64 pairs trains batches of 64.
    settings["batch_size_in_force"], settings["grad_accum_in_force"] = run.in_force(cell.world_size)
    if run.compile:  # graphs compiled in all, and compilations that happened inside the timed steps
        counts = _dynamo_counts()
        settings["compile_graphs"] = counts["graphs"]
        settings["compile_frames_in_timed_steps"] = counts["frames"] - compiles_at.get("frames", counts["frames"])
    if run.parity:  # what the device needed for deterministic kernels, as it was in force
        from bench.devices import device

        settings.update({f"env_{k}": os.environ.get(k) for k, _ in device(cell.device).deterministic_env})
    clock.lap("settings_s")
    scores = evaluate_model(result.model, data, cell.device, precision.torch_dtype(), run.eval_batch_size)
    clock.lap("eval_s")
    if scores is not None:
        clock.move("eval_s", "eval_intervals_s", scores.pop("eval_intervals_s", 0.0))
    ranks = dist.gather_to_rank0(
        {"rank": dist.rank(), "samples": sum(summary["step_samples"][summary["timing_warmup_steps"]:]),
         "real_tokens": sum(summary["step_real_tokens"][summary["timing_warmup_steps"]:]),
         "padded_tokens": sum(summary["step_padded_tokens"][summary["timing_warmup_steps"]:]),
         "peak_tflops": peak_tflops, "load_window": window, "gpu_energy_j": gpu.energy_j(),
         **{k: summary.get(k) for k in _PER_RANK}}, cell.device)
    if ranks is None:
        return None  # only rank 0 writes
    load = watch.finish([r.pop("load_window") for r in ranks])
    busy, why = _with_gpu_busy(busy_verdict(load), gpu)
    energies = [r.pop("gpu_energy_j") for r in ranks]
    fields_extra.update(gpu.fields(sum(energies) if None not in energies else None, sum(r["samples"] for r in ranks)))
    problems = []
    mismatch = precision_mismatch(precision, settings)
    if mismatch:
        problems.append(mismatch)
    if summary["steps"] != cell.run.total_steps(cell.world_size):
        problems.append(f"took {summary['steps']} optimizer steps, expected {cell.run.total_steps(cell.world_size)}")
    if len(ranks) > 1:
        # Global throughput: every rank's timed samples over the slowest rank's timed time.
        slowest = max(r["timed_s"] for r in ranks)
        fields.update(samples_per_s=sum(r["samples"] for r in ranks) / slowest,
                      real_tokens_per_s=sum(r["real_tokens"] for r in ranks) / slowest,
                      padded_tokens_per_s=sum(r["padded_tokens"] for r in ranks) / slowest, timed_s=slowest,
                      peak_rss_mib=max(r["peak_rss_mib"] for r in ranks))
        if "peak_alloc_mib" in fields:
            fields.update(peak_alloc_mib=max(r["peak_alloc_mib"] for r in ranks),
                          peak_reserved_mib=max(r["peak_reserved_mib"] for r in ranks))
        # One device's peak (the slowest rank's measurement, or the datasheet's): MFU multiplies
        # it by the world size, so cells of any world size share one peak in a report.
        peak_tflops = min(r["peak_tflops"] for r in ranks)
        peak_source += f", per device ({len(ranks)} ranks)"
    fields_extra["process_wall_s"] = _process_wall_s(process_started)  # after evaluation and the gather
    clock.lap("harness_s")
    env = environment(cell.device)
    clock.lap("env_s")
    record = Record(status="failed" if problems else "ok", reason="; ".join(problems), **fields_extra,
                    failure={"kind": "check", "message": "; ".join(problems), "last_lines": []} if problems else {},
                    settings=settings, model=dataclasses.asdict(info), data_source=data.source,
                    data_fingerprint=data.fingerprint,
                    device_peak_tflops=peak_tflops, device_peak_source=peak_source,
                    device_peak_override=bool(run.peak_tflops),
                    world_size=len(ranks), per_rank=ranks if len(ranks) > 1 else [],
                    machine_load=load, machine_busy=busy, machine_busy_why=why,
                    env=env, finished_at=_now(), **fields, **scores, **base)
    return _with_wall(record, clock, process_started)


def _with_wall(record: "Record", clock, process_started: float | None) -> "Record":
    """The record with where its wall time went, and ``process_wall_s`` taken last, just before the
    record is serialised (its writing is the sweep's ``after_record_s``)."""
    clock.lap("harness_s")
    record.wall_s = clock.as_dict()
    if process_started is not None:
        record.process_wall_s = _process_wall_s(process_started)
    return record


def _with_gpu_busy(verdict: tuple[bool, list[str]], gpu) -> tuple[bool, list[str]]:
    """The machine's busy verdict, with other processes computing on the cell's GPU counted in."""
    busy, why = verdict
    gpu_why = gpu.busy_why()
    return (True, why + [gpu_why]) if gpu_why else (busy, why)


def _timed_samples(summary: dict) -> int:
    return sum(summary["step_samples"][summary["timing_warmup_steps"]:])


def _dynamo_counts() -> dict:
    """torch.compile's own counters (no TORCH_LOGS needed): frames compiled and graphs made so far."""
    import sys

    if "torch._dynamo" not in sys.modules:
        return {"frames": 0, "graphs": 0}
    from torch._dynamo.utils import counters

    return {"frames": int(counters["frames"]["total"]), "graphs": int(counters["stats"]["unique_graphs"])}


def _record_fields(summary: dict) -> dict:
    """The meter's summary as Record fields; a summary key without a field is a bug, not a drop."""
    import dataclasses

    from bench.records import Record

    names = {f.name for f in dataclasses.fields(Record)}
    unknown = sorted(set(summary) - names)
    if unknown:
        raise RuntimeError(f"meter summary keys with no Record field: {', '.join(unknown)}")
    return dict(summary)


def main(argv: list[str]) -> int:
    """``python -m bench.cell CELL.json RESULT.json [--no-progress] [--command CMD] [--time-budget S]``"""
    import os
    import time

    from bench import dist

    started = time.perf_counter()
    entered = time.time()  # epoch seconds: the process's start time, from the kernel, is one too
    from bench.wallclock import WallClock

    clock = WallClock()
    dist.die_with_parent()  # under torchrun too: a worker never outlives its launcher
    cell_path, result_path = argv[0], argv[1]
    progress = "--no-progress" not in argv
    command = argv[argv.index("--command") + 1] if "--command" in argv else ""
    with open(cell_path, encoding="utf-8") as f:
        cell = Cell.from_dict(json.load(f))
    budget = (started, float(argv[argv.index("--time-budget") + 1])) if "--time-budget" in argv else None
    peak = None
    if "--peak-tflops" in argv:  # measured once for this sweep's device and precision (bench.sweep)
        peak = (float(argv[argv.index("--peak-tflops") + 1]), argv[argv.index("--peak-source") + 1])
    clock.lap("harness_s")
    try:
        import psutil

        process_started = psutil.Process().create_time()  # epoch seconds the process began
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
    from bench import dist

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
