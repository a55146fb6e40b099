"""--parity: the loops' step losses agree to 1e-5 relative for 50 steps in fp32 on the CPU,
and the check has teeth: one Trainer default turned back on breaks parity and the report names it."""

import dataclasses
import json

import pytest

from bench.cell.main import run_cell
import loops
from bench.config import Cell
from bench.records import Record, append_record, read_records
from bench.analysis import cells_of, parity_rows
from bench.report import render

PARITY_TOL = 1e-5


@pytest.fixture(scope="module")
def parity_records(glue_dir):
    from bench.config import RunConfig

    # 120 pairs / batch 8 = 15 steps per epoch: 50 steps cross three epoch boundaries.
    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=120, eval_samples=16, max_steps=50,
                    timing_warmup=2, parity=True)
    # Through JSON, as a results file holds them.
    return [Record.from_dict(json.loads(run_cell(Cell(loop, "cpu", "fp32", run), progress=False).to_json()))
            for loop in loops.available()]


@pytest.mark.slow
def test_three_loops_agree_stepwise_for_50_steps(parity_records):
    assert all(r.status == "ok" for r in parity_records), [r.reason for r in parity_records]
    assert all(len(r.step_losses) == 50 for r in parity_records)
    rows = parity_rows([c for c in cells_of(parity_records)])
    assert {row.loop for row in rows} == set(loops.available()) - {"manual"}
    for row in rows:
        assert row.steps == 50 and row.same_batches
        assert row.max_rel_diff <= PARITY_TOL, row


@pytest.mark.slow
def test_parity_settings_are_recorded(parity_records):
    for r in parity_records:
        assert r.run.parity is True
        assert r.settings["deterministic_algorithms"] is True
        assert r.settings["dropout"].startswith("hidden=0.1")  # dropout stays on: same RNG state instead


@pytest.mark.slow
def test_turning_a_trainer_default_back_on_breaks_parity_and_is_named(parity_records, glue_dir, tmp_path):
    """The Trainer's default gradient clipping (max_grad_norm) back on in the Trainer alone."""
    by_loop = {r.loop: r for r in parity_records}
    trainer_cfg = Cell.from_dict(by_loop["trainer"].config)
    # The tiny model's gradient norms sit below 1.0, so clip where it bites: the point is that
    # clipping is on in one loop and not the others.
    clipped = dataclasses.replace(trainer_cfg.run, max_grad_norm=0.05)
    broken = Record.from_dict(json.loads(run_cell(Cell("trainer", "cpu", "fp32", clipped), progress=False).to_json()))
    assert broken.status == "ok"
    records = [by_loop["manual"], by_loop["accelerate"], broken]
    row = next(r for r in parity_rows(cells_of(records)) if r.loop == "trainer")
    assert row.max_rel_diff > PARITY_TOL
    for r in records:
        append_record(tmp_path / "run", r)
    text = render(read_records(tmp_path / "run"), tmp_path / "report.md")
    assert "Settings in force that differ between the loops: **grad_clip_max_norm**" in text
    assert "| **grad_clip_max_norm** | `null` | `null` | `0.05` | **differs** |" in text
