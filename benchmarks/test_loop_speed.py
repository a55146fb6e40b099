"""Regression benchmarks: a fixed number of optimizer steps of a tiny BERT on real MRPC pairs, for
each loop, and the manual loop without the meter (to measure what the meter costs).

Run by .ci/run, saved as JSON, and gated by ``python -m bench.regress`` against the committed
baseline of this machine class, on medians and on ratios (loop / manual, meter / no meter), which
hold on a noisy shared machine where absolute seconds do not.
"""

from pathlib import Path

import pytest

from bench.cell import _reset_process_state, resolve_loop
from bench.config import Cell, RunConfig
from bench.data import prepare
from bench.meter import StepMeter
from bench.models import load_model

GLUE_DIR = (Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "glue").resolve()
STEPS = 20
ROUNDS = 7


class NoMeter:
    """The meter's interface, doing nothing: the same loop timed from outside."""

    def watch(self, optimizer): pass
    def start(self): pass
    def observe(self, loss, batch): pass
    def step(self, loss=None, batch=None): pass
    def stop(self): pass


def _setup(loop: str, metered: bool):
    run = RunConfig(model="tiny", glue_dir=str(GLUE_DIR), train_samples=STEPS * 8, max_steps=STEPS, timing_warmup=1)
    cell = Cell(loop, "cpu", "fp32", run)
    _reset_process_state(cell)
    model, tokenizer, _ = load_model(run)
    data = prepare(run, tokenizer)
    meter = StepMeter("cpu", 1, STEPS, progress=False) if metered else NoMeter()
    return (cell, data, model, meter), {}


@pytest.mark.parametrize("loop", ["manual", "accelerate", "trainer"])
def test_loop_steps(benchmark, loop):
    train = resolve_loop(loop)
    benchmark.group = "loops"
    benchmark.pedantic(train, setup=lambda: _setup(loop, True), rounds=ROUNDS, iterations=1, warmup_rounds=1)


def test_manual_without_meter(benchmark):
    train = resolve_loop("manual")
    benchmark.group = "loops"
    benchmark.pedantic(train, setup=lambda: _setup("manual", False), rounds=ROUNDS, iterations=1, warmup_rounds=1)
