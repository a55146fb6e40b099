"""Regression benchmarks: a fixed number of optimizer steps of a tiny BERT on MRPC pairs, for
each loop, and the meter's own work for the same number of steps (what the harness adds to a loop).

Run by .ci/run, saved as JSON, and gated by ``python -m bench.regress`` against the committed
baseline of this machine class, on medians and on ratios (loop / manual, meter / manual), which
hold on a noisy shared machine where absolute seconds do not.  (Timing the manual loop with and
without the meter and subtracting would drown a sub-millisecond cost in the noise of two runs.)
"""

import functools
import tempfile
from pathlib import Path

import pytest

import loops
from bench.cell.main import _reset_process_state, resolve_loop
from bench.config import Cell, RunConfig
from bench.data import prepare
from bench.meter import StepMeter
from bench.models import load_model



@functools.lru_cache(maxsize=None)
def glue_dir() -> str:
    """MRPC by the tests' rule: the real copy $BENCH_GLUE_DIR names (CI sets it, and the committed
    baselines were measured on it), else the generated MRPC-shaped fixture."""
    from tests.helpers.mrpc_fixture import real_glue_dir, write_mrpc_like

    return real_glue_dir() or str(write_mrpc_like(Path(tempfile.mkdtemp(prefix="bench-glue-"))))

STEPS = 20
ROUNDS = 7


def _setup(loop: str):
    run = RunConfig(model="tiny", glue_dir=glue_dir(), train_samples=STEPS * 8, max_steps=STEPS, timing_warmup=1)
    cell = Cell(loop, "cpu", "fp32", run)
    _reset_process_state(cell)
    model, tokenizer, _ = load_model(run)
    data = prepare(run, tokenizer)
    meter = StepMeter("cpu", 1, STEPS, progress=False)
    meter.attach(model)  # the phase split, on as in a sweep
    return (cell, data, model, meter), {}


LOOPS = loops.available()  # the registry's loops installed here


@pytest.mark.parametrize("loop", LOOPS)
def test_loop_steps(benchmark, loop):
    train = resolve_loop(loop)
    benchmark.group = "loops"
    benchmark.pedantic(train, setup=lambda: _setup(loop), rounds=ROUNDS, iterations=1, warmup_rounds=1)


def test_paired_ratios(benchmark):
    """The three loops interleaved within each round, so that a slow spell of the shared machine
    hits all of them: each round gives a loop/manual ratio, and the medians of those ratios are
    what the gate compares (in extra_info)."""
    import statistics
    import time

    rounds: list[dict[str, float]] = []

    def one_round():
        times = {}
        for loop in LOOPS:
            args, _ = _setup(loop)
            t0 = time.perf_counter()
            resolve_loop(loop)(*args)
            times[loop] = time.perf_counter() - t0
        rounds.append(times)

    benchmark.group = "paired"
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    measured = rounds[1:]  # the warm-up round is not counted
    for loop in LOOPS[1:]:
        benchmark.extra_info[f"{loop}/manual"] = statistics.median(r[loop] / r["manual"] for r in measured)


def test_meter_overhead(benchmark):
    """Everything the meter does for STEPS steps (observe, step, stop, summary) on a real batch,
    with its phase split: a hooked forward call and the boundaries a loop marks, each step."""
    import torch
    from torch.utils.data import DataLoader

    (cell, data, _, _), _ = _setup("manual")
    batch = next(iter(DataLoader(data.train, batch_size=8, collate_fn=data.collator)))
    loss = torch.tensor(0.7)

    def metered_steps():
        meter = StepMeter("cpu", 1, STEPS, progress=True, description="meter")
        module = torch.nn.Identity()
        meter.attach(module)
        meter.start()
        for _ in range(STEPS):
            for _ in meter.batches([batch]):
                module(loss)
                meter.enter("optimizer")
            meter.step(loss, batch)
        meter.stop()
        meter.summary()

    benchmark.group = "loops"
    benchmark.pedantic(metered_steps, rounds=ROUNDS, iterations=1, warmup_rounds=1)
