"""Where a cell's wall time goes (bench/cell/wallclock.py), and the fixed costs cut from every cell:
no import a fresh cell does not need, the bootstrap in one numpy draw, the metric without `evaluate`."""

import subprocess
import sys

import pytest

from bench.analysis.wall import wall_summary
from bench.records import Record
from bench.records.vocabulary import WALL_PARTS as PARTS, fixed_cost_s, named_s
from bench.cell.wallclock import WallClock
from tests.conftest import ROOT


class _Meter:
    """What WallClock.add_steps reads from a StepMeter."""

    def __init__(self, started_at, steps, warmup, eval_total_s, last_step_end):
        self.started_at, self._steps, self.timing_warmup = started_at, steps, warmup
        self.eval_total_s, self.last_step_end = eval_total_s, last_step_end

    def step_seconds(self):
        return self._steps


def test_laps_name_the_time_between_them_and_the_loop_is_split_from_the_meter():
    clock = WallClock()
    clock.lap("imports_s")
    clock.add("interpreter_s", 0.5)
    meter = _Meter(started_at=10.25, steps=[1.0, 1.0, 2.0, 2.0, 2.0], warmup=2, eval_total_s=0.5, last_step_end=18.75)
    clock.add_steps(meter, t_train=10.0, t_returned=19.0)
    clock.restart()
    clock.lap("eval_s")
    clock.move("eval_s", "eval_intervals_s", 1e9)  # never more than the lap held
    wall = clock.as_dict()
    assert list(wall) == [k for k, _ in PARTS]
    assert wall["loop_setup_s"] == 0.25 and wall["warmup_steps_s"] == 2.0 and wall["timed_steps_s"] == 6.0
    assert wall["eval_during_training_s"] == 0.5 and wall["after_steps_s"] == 0.25
    assert wall["eval_s"] == 0.0 and wall["eval_intervals_s"] >= 0
    # 9 s of the loop's stretch, all named: setup, steps, evaluation, what follows the last step.
    assert named_s(wall) == pytest.approx(0.5 + 9.0, abs=0.01)
    with pytest.raises(KeyError):
        clock.add("unnamed_s", 1.0)


def test_a_loop_that_never_stepped_is_all_setup():
    clock = WallClock()
    clock.add_steps(_Meter(None, [], 5, 0.0, None), t_train=1.0, t_returned=3.5)
    assert clock.as_dict()["loop_setup_s"] == 2.5 and clock.as_dict()["timed_steps_s"] == 0.0


def test_fixed_cost_and_the_report_columns():
    wall = {k: 0.0 for k, _ in PARTS}
    wall.update(imports_s=2.0, warmup_steps_s=1.0, timed_steps_s=6.0, eval_s=1.5, eval_intervals_s=0.01,
                after_record_s=0.2)
    def record(**kw):
        return Record(loop="manual", device="cpu", precision="fp32", status="ok", **kw)

    assert fixed_cost_s(record(wall_s=wall, process_wall_s=10.6)) == pytest.approx(10.6 - 8.5)  # the intervals are the harness's, not the work's
    assert fixed_cost_s(record(process_wall_s=3.0)) is None  # an older record: nothing to say
    summary = wall_summary([record(wall_s=wall, process_wall_s=10.6), record(wall_s=wall, process_wall_s=10.8)])
    parts = summary.parts_s
    assert parts["start"] == 2.0 and parts["timed steps"] == 6.0 and parts["evaluation"] == pytest.approx(1.51)
    assert summary.process_wall_s == pytest.approx(10.7) and summary.after_record_s == 0.2
    assert summary.named == pytest.approx(statistics_median([10.51 / 10.6, 10.51 / 10.8]))
    assert summary.fixed_cost_s == pytest.approx(2.2)
    assert wall_summary([record(process_wall_s=3.0)]) is None


def statistics_median(values):
    import statistics

    return statistics.median(values)


def test_report_has_the_wall_table_only_for_records_that_have_wall_s(tmp_path):

    from bench.report import render
    from bench.report.wall import HEADING as WALL_HEADING
    from tests.test_report import rec

    records = [rec(loop) for loop in ("manual", "trainer")]
    assert WALL_HEADING not in render(records, tmp_path / "old" / "report.md")  # committed reports unchanged
    for r in records:
        r.wall_s = {k: 0.5 for k, _ in PARTS}
        r.process_wall_s = 0.5 * len(PARTS) / 0.98  # 2% left unnamed
    text = render(records, tmp_path / "new" / "report.md")
    table = text.split(f"## {WALL_HEADING}")[1].split("\n## ")[0]
    assert "| cpu | fp32 | - | manual | 1.50 | 1.00 | 1.00 | 0.50 | 0.50 | 0.50 | 1.50 | 2.00 | 8.7 | 98.0% |" in table


def test_a_fresh_cell_imports_neither_accelerate_nor_inductor_nor_evaluate():
    """The manual loop needs none of them; resetting state that a fresh process cannot have (the
    Accelerator's, the deterministic mode: torch imports inductor's config to set it) cost a cell
    1-4 s, and `evaluate` another second (scipy.stats) for two counts."""
    code = (
        "import sys\n"
        "from bench.cell.main import _reset_process_state\n"
        "from bench.config import Cell, RunConfig\n"
        "from bench.cell.envinfo import environment\n"
        "import bench.cell.evaluation\n"
        "_reset_process_state(Cell('manual', 'cpu', 'fp32', RunConfig(model='tiny')))\n"
        "env = environment('cpu')\n"
        "assert env['accelerate'] and env['datasets'], env\n"
        "bad = [m for m in ('accelerate', 'torch._inductor.config', 'evaluate', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_parity_cell_before_is_still_undone():
    """In one process (--in-process, the tests), what a parity cell turned on is turned off again."""
    import torch

    from bench.cell.main import _reset_process_state
    from bench.config import Cell, RunConfig

    _reset_process_state(Cell("manual", "cpu", "fp32", RunConfig(model="tiny", parity=True)))
    assert torch.are_deterministic_algorithms_enabled()
    _reset_process_state(Cell("manual", "cpu", "fp32", RunConfig(model="tiny")))
    assert not torch.are_deterministic_algorithms_enabled()
    import torch._inductor.config as inductor_config

    assert inductor_config.deterministic is False


def test_a_stopped_cell_names_its_steps_once(tiny_run):
    """A cell stopped by the harness (here: projected past its budget) still says where its time
    went; its steps are counted once, from the meter's marks."""
    import time

    from bench.cell.main import run_cell
    from bench.config import Cell

    record = run_cell(Cell("manual", "cpu", "fp32", tiny_run(max_steps=40)), progress=False, command="test",
                      budget=(time.perf_counter(), 0.01))
    assert record.status == "failed" and record.reason.startswith("WouldTimeOut")
    wall = record.wall_s
    assert wall["warmup_steps_s"] + wall["timed_steps_s"] == pytest.approx(sum(record.step_s), abs=1e-5)  # parts kept to 6 digits
    assert wall["model_s"] > 0 and wall["data_s"] > 0 and wall["imports_s"] > 0 and wall["env_s"] > 0
    assert wall["after_steps_s"] < 0.5 and wall["eval_s"] == 0.0  # no evaluation after a stopped cell


def test_a_process_start_is_read_to_the_clock_tick():
    """psutil's create_time() rests on the boot time in whole seconds (0.6-0.9 s early seen here):
    the start read from the process's own start tick agrees with the parent's stamp at Popen."""
    import time

    from bench.cell.wallclock import process_start_time

    for _ in range(3):
        stamp = time.time()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
        try:
            assert abs(process_start_time(child.pid) - stamp) < 0.05
        finally:
            child.wait()


def test_process_wall_agrees_with_a_stopwatch_around_the_cell_process(glue_dir, tiny_run):
    """A stopwatch around the whole cell process (launch to reaped) against what the record says of
    it: ``process_wall_s`` plus ``after_record_s`` (the writing and the exit), within 0.1 s."""
    import dataclasses
    import time

    from bench.config import Cell
    from bench.sweep.launch import run_isolated

    run = dataclasses.replace(tiny_run(), max_steps=2, timing_warmup=1)
    t0 = time.time()
    record = run_isolated(Cell("manual", "cpu", "fp32", run), timeout_s=300, progress=False, command="")
    outside = time.time() - t0
    assert record.status == "ok", record.reason
    inside = record.process_wall_s + record.wall_s["after_record_s"]
    assert 0 <= outside - inside < 0.1, (outside, record.process_wall_s, record.wall_s["after_record_s"])
    assert record.wall_s["interpreter_s"] < 0.5  # no whole second of boot-time rounding in it
