import os
from pathlib import Path

import pytest

from tests.helpers.mrpc_fixture import GLUE_DIR_ENV, real_glue_dir as _real_glue_dir, write_mrpc_like

ROOT = Path(__file__).resolve().parent.parent

# Tests never reach for the Hub: an attempt fails at once instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NO_REAL_MRPC = (f"needs real MRPC text: set ${GLUE_DIR_ENV} to a copy of the Hub repo nyu-mll/glue "
                "(the tests otherwise run on a generated MRPC-shaped fixture)")


def pytest_report_header(config):
    real = _real_glue_dir()
    return [f"MRPC: ${GLUE_DIR_ENV}={real}" if real else
            f"MRPC: a generated MRPC-shaped fixture (${GLUE_DIR_ENV} unset); tests that need real text skip"]


@pytest.fixture(scope="session", autouse=True)
def _cpu_peak_measured_once():
    """MFU's CPU peak, measured once a session per precision and handed to every later in-process
    cell, as a sweep hands its first cell's measurement to the rest (bench/sweep/driver.py): measuring the
    same GEMM again in each cell (about a second) tells no test anything new.  Cells in their own
    process (the CLI's sweeps, run_isolated) still measure theirs; other devices are not cached."""
    from bench.cell import peak

    real, measured = peak.device_peak, {}

    def device_peak(device, precision):
        if device != "cpu":
            return real(device, precision)
        if precision not in measured:
            measured[precision] = real(device, precision)
        return measured[precision]

    from bench.cell import steps as cellrun

    patch = pytest.MonkeyPatch()
    patch.setattr(peak, "device_peak", device_peak)
    patch.setattr(cellrun, "device_peak", device_peak)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> str:
    """MRPC for the tests: the real copy $BENCH_GLUE_DIR names, else the generated fixture."""
    real = _real_glue_dir()
    if real:
        if not (Path(real) / "mrpc").is_dir():
            pytest.fail(f"${GLUE_DIR_ENV}={real} holds no mrpc/ folder (a copy of the Hub repo nyu-mll/glue)")
        return real
    return str(write_mrpc_like(tmp_path_factory.mktemp("glue")))


@pytest.fixture(scope="session")
def real_glue_dir(glue_dir) -> str:
    """Real MRPC, for tests whose figures (quality, padding) only mean something on its text."""
    if not _real_glue_dir():
        pytest.skip(NO_REAL_MRPC)
    return glue_dir


@pytest.fixture
def tiny_run(glue_dir):
    """A few steps of a tiny random BERT on a slice of MRPC."""
    from bench.config import RunConfig

    def make(**overrides):
        base = dict(model="tiny", glue_dir=glue_dir, train_samples=64, eval_samples=48, max_steps=6,
                    timing_warmup=2)
        base.update(overrides)
        return RunConfig(**base)

    return make


@pytest.fixture(scope="session")
def failing_rank_cell(glue_dir):
    """One two-rank cell whose rank 1 raises (seed 5 in the stand-in cell) while rank 0 would wait in
    a collective: (its record, the seconds it took).  Run once; test_ddp and test_faults read it."""
    import time

    from bench.config import Cell, RunConfig
    from bench.sweep.driver import run_isolated

    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=48, eval_samples=16, max_steps=3,
                    timing_warmup=1, seed=5)
    t0 = time.monotonic()
    r = run_isolated(Cell("manual", "cpu", "fp32", run, nproc=2), timeout_s=240, progress=False, command="test",
                     module="tests.helpers.misbehaving_cell")
    return r, time.monotonic() - t0
