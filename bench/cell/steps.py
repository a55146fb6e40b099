"""One cell's training, up to its record: the pieces ``bench.cell.main._run`` calls in order.

Setup (the machine's watches, MFU's peak, model, data, the meter and the probes around the loop),
then the loop's run; a stop by the meter (``Diverged``, ``WouldTimeOut``) ends it early with the
steps timed so far.  The record is ``bench/cell/record.py``'s.  The harness's modules are imported
here at the top, so that the cell's wall clock counts them with the imports."""

from __future__ import annotations

import dataclasses
import time

from bench.cell import dist
from bench.config import ConfigError
from bench.data import prepare
from bench.devices import device as device_kind
from bench.cell.evaluation import evaluate_model
from bench.cell.gpu_facts import GpuWatch
from bench.cell.load import LoadWatch
from bench.meter import StepMeter, StopTraining
from bench.models import load_model
from bench.cell.peak import device_peak
from bench.precision import precision_plan
from bench.records import Record
from bench.cell.settings import PrecisionProbe, param_dtype_mismatch, trainable_dtypes


class CellRun:
    """What the cell's steps share once it is set up."""

    def __init__(self, cell, base: dict, clock, setup: dict, process_started: float | None):
        self.cell, self.base, self.clock, self.setup = cell, base, clock, setup
        self.process_started = process_started
        self.compiles_at: dict = {}  # torch.compile's counters when the timed steps began
        self.extra: dict = {}  # record fields beside the meter's: setup_s, process_wall_s, GPU facts


def quiet_libraries(progress: bool) -> None:
    """Without progress bars, the libraries' own (weights loading, dataset maps) go too: they would
    be frames in a log."""
    if not progress:
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def set_up(r: CellRun, peak: tuple[float, str] | None, progress: bool, budget) -> None:
    """The machine's watches, MFU's peak, model, data, the meter and the precision probe."""

    cell, clock, setup = r.cell, r.clock, r.setup
    r.watch = LoadWatch(cell.device)
    clock.lap("harness_s")
    t = time.perf_counter()
    device_kind(cell.device).init_context()  # the CUDA context: start-up a user pays, named as such
    setup["device_init_s"] = time.perf_counter() - t
    clock.lap("device_init_s")
    r.gpu = GpuWatch(cell.device)  # NVML: other processes on the GPU, clocks, power, the energy counter
    r.gpu.start()
    t = time.perf_counter()
    r.peak = _peak(cell, peak)
    setup["harness_peak_probe_s"] = time.perf_counter() - t  # the harness's own, not the loop's: not in the total
    clock.lap("peak_probe_s")
    t = time.perf_counter()
    r.model, tokenizer, r.info = load_model(cell.run)
    wrong = param_dtype_mismatch(cell.precision, trainable_dtypes(r.model))
    if wrong:
        raise ConfigError(wrong)  # a failed cell before any step, never an ok one
    setup["model_s"] = time.perf_counter() - t
    clock.lap("model_s")
    t = time.perf_counter()
    r.data = prepare(cell.run, tokenizer)
    setup["data_s"] = time.perf_counter() - t
    clock.lap("data_s")
    r.precision = precision_plan(cell.precision)
    r.meter = _meter(r, progress, budget)
    r.probe = PrecisionProbe(r.model, cell.kind.torch_type)
    clock.lap("harness_s")
    r.watch.probe("before")
    clock.lap("load_probes_s")


def _peak(cell, peak: tuple[float, str] | None) -> tuple[float, str]:
    """MFU's denominator: the user's (--peak-tflops), recorded as an override; else the figure this
    sweep measured once for the device and precision, handed to every cell; else measured (CPU,
    unknown GPU) before training, while the device is idle."""
    run = cell.run
    if run.peak_tflops:
        return run.peak_tflops, f"override: --peak-tflops {run.peak_tflops:g}, {cell.precision}"
    return peak if peak is not None else device_peak(cell.device, cell.precision)


def _meter(r: CellRun, progress: bool, budget):
    cell, run = r.cell, r.cell.run

    def evaluator():  # the same shared evaluation, on the model as it is at that step
        scores = evaluate_model(r.model, r.data, cell.device, r.precision.torch_dtype(), run.eval_batch_size,
                                intervals=False)
        r.model.train()
        return scores

    def timed_start():  # the machine's load, and compilations counted from here on, cover the timed steps
        r.watch.timed_start()
        r.gpu.timed_start()
        r.compiles_at.update(dynamo_counts())

    meter = StepMeter(cell.device, run.timing_warmup, run.total_steps(cell.world_size),
                      progress=progress and dist.rank() == 0, description=cell.label,
                      evaluator=evaluator if run.eval_every else None, eval_every=run.eval_every,
                      target_f1=run.target_f1, budget=budget, on_timed_start=timed_start,
                      grad_scaler=r.precision.grad_scaler)
    if run.compile:
        meter.phases_off_why = "off under --compile (hooks that read a clock inside a compiled forward break its graph)"
    elif not run.phases:
        meter.phases_off_why = "off (--no-phases)"
    else:
        meter.attach(r.model)  # where each step's time goes: hooks on the model (bench/meter/phase_clock.py)
    return meter


def train(r: CellRun, train_fn):
    """Run the loop; returns its result and the meter's stop (None when it ran to the end)."""
    # Every loop starts from the same RNG state, so dropout draws the same masks in all five (the
    # Trainer reseeds in its constructor with the same seed; the others draw from here on).
    from transformers import set_seed

    set_seed(r.cell.run.seed)
    result = stopped = None
    r.clock.lap("harness_s")
    t_train = time.perf_counter()
    try:
        result = train_fn(r.cell, r.data, r.model, r.meter)
        t_returned = time.perf_counter()
        r.meter.check_finite()  # the steps since the last check (on a GPU the meter checks every few)
    except StopTraining as exc:
        if dist.is_distributed():
            raise  # the rank exits non-zero, torchrun stops the others, the sweep records why
        stopped = exc
        r.meter.stop()
        t_returned = time.perf_counter()
    _after_training(r, t_train, t_returned)
    return result, stopped


def _after_training(r: CellRun, t_train: float, t_returned: float) -> None:
    """The loop's stretch of the wall clock, its setup time, the load probe after it, the summary."""
    meter, clock, setup = r.meter, r.clock, r.setup
    clock.add_steps(meter, t_train, t_returned)  # the loop's stretch, from the meter's own marks
    clock.restart()
    r.window = r.watch.timed_end()
    r.gpu.timed_end()
    if meter.started_at is not None:  # perf_counter at the loop's first step
        setup["loop_setup_s"] = meter.started_at - t_train
    setup["total_s"] = sum(setup.get(k, 0.0) for k in ("imports_s", "device_init_s", "model_s", "data_s",
                                                             "loop_setup_s"))
    r.extra = {"setup_s": setup, "process_wall_s": process_wall_s(r.process_started)}
    r.probe.remove()
    # The meter's figures first, the peaks among them: the load probe after training allocates on the
    # device (its 4096^2 fp32 operands are 192 MiB on a GPU), and a peak read after it is the probe's.
    r.summary = meter.summary()
    r.fields = record_fields(r.summary)
    clock.lap("harness_s")
    r.watch.probe("after")
    clock.lap("load_probes_s")


def process_wall_s(process_started: float | None) -> float | None:
    """Seconds since the cell's process started (None when the cell runs in a process of its caller)."""
    return None if process_started is None else time.time() - process_started


def dynamo_counts() -> dict:
    """torch.compile's own counters (no TORCH_LOGS needed): frames compiled and graphs made so far."""
    import sys

    if "torch._dynamo" not in sys.modules:
        return {"frames": 0, "graphs": 0}
    from torch._dynamo.utils import counters

    return {"frames": int(counters["frames"]["total"]), "graphs": int(counters["stats"]["unique_graphs"])}


def record_fields(summary: dict) -> dict:
    """The meter's summary as Record fields; a summary key without a field is a bug, not a drop."""

    names = {f.name for f in dataclasses.fields(Record)}
    unknown = sorted(set(summary) - names)
    if unknown:
        raise RuntimeError(f"meter summary keys with no Record field: {', '.join(unknown)}")
    return dict(summary)
