"""Out of the box (``--defaults native``) and ``bench explain``: each loop with its library's own
defaults, every difference between two of them listed and measured alone, and the proof that the
list is complete: the manual loop given every listed setting of the Trainer trains what it trains."""

import pytest

from bench.config import Cell, RunConfig
from bench.sweep.plan import plan_cells


def _native(**kw):
    return RunConfig(model="tiny", defaults="native", train_samples=40, eval_samples=16, max_steps=6,
                     timing_warmup=1, **kw)


def test_native_defaults_are_each_librarys_and_flags_win():
    cells = plan_cells(["manual", "trainer", "accelerate"], ["cpu"], ["fp32", "bf16"], [_native()])
    run = {(c.loop, c.precision): c.run for c in cells}
    # The Trainer's TrainingArguments defaults: clipping at 1.0 and fused AdamW; the tutorial's loop neither.
    assert (run["trainer", "fp32"].max_grad_norm, run["trainer", "fp32"].adamw) == (1.0, "fused")
    assert (run["manual", "fp32"].max_grad_norm, run["manual", "fp32"].adamw) == (None, "torch-default")
    # accelerate's nlp_example: torch AdamW's weight decay on every parameter, 100 warm-up steps, and
    # padding to a multiple of 8 under mixed precision only.
    acc = run["accelerate", "bf16"]
    assert (acc.weight_decay, acc.weight_decay_exempt, acc.warmup_steps, acc.pad_to_multiple_of) == (0.01, False, 100, 8)
    assert run["accelerate", "fp32"].pad_to_multiple_of is None
    # A flag the user gave wins over a library's default.
    flagged = plan_cells(["trainer"], ["cpu"], ["fp32"], [_native(max_grad_norm=5.0)], explicit={"max_grad_norm"})
    assert flagged[0].run.max_grad_norm == 5.0
    # The tutorial mode is untouched: one run config for every loop.
    tutorial = plan_cells(["manual", "trainer"], ["cpu"], ["fp32"], [RunConfig(model="tiny", max_steps=6)])
    assert tutorial[0].run == tutorial[1].run


def test_a_run_config_with_loop_options_survives_its_json():
    cell = Cell("trainer", "cpu", "fp32", _native(loop_options=(("save_strategy", "no"),), flip="a->b:save_strategy"))
    import json

    assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell


def test_the_trainers_machinery_is_native_or_the_harness_and_single_entries_flip():
    from loops.native import machinery

    assert machinery("trainer", _native())["save_strategy"] == "steps"
    assert machinery("trainer", RunConfig())["save_strategy"] == "no"
    assert machinery("trainer", _native(loop_options=(("save_strategy", "no"),)))["save_strategy"] == "no"
    with pytest.raises(KeyError, match="no machinery option"):
        machinery("manual", _native(loop_options=(("save_strategy", "no"),)))


@pytest.fixture(scope="module")
def explained(glue_dir, tmp_path_factory):
    """manual and trainer with their own defaults, then `bench explain` between them (tiny BERT,
    deterministic kernels, a learning rate high enough that clipping at 1.0 acts).  Every cell in
    this process: the run with --in-process, explain (which has no such flag) through the real
    parser with its sweep told isolate=False; test_explain_again_runs_nothing_twice runs explain as
    a command of its own."""
    import contextlib
    import io
    import sys
    import types

    from bench.sweep import driver as sweep
    from bench.cli import main
    from tests.test_cli import run_cli

    out = tmp_path_factory.mktemp("native") / "out"
    common = ["--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir, "--train-samples", "48", "--eval-samples", "16",
              "--max-steps", "6", "--timing-warmup", "1", "--lr", "2e-3", "--parity", "--no-progress"]
    made = run_cli("run", "--loops", "manual,trainer", "--defaults", "native", "--out", str(out), *common,
                   "--in-process")
    assert made.returncode in (0, 1), made.stderr[-2000:]  # 1: the loops' losses differ, as they should here
    real_run_sweep, stdout, stderr = sweep.run_sweep, io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        patch.setattr(sweep, "run_sweep", lambda *a, **kw: real_run_sweep(*a, **dict(kw, isolate=False)))
        argv = ["explain", str(out), "--from", "manual", "--to", "trainer", "--no-progress"]
        patch.setattr(sys, "argv", ["bench", *argv])  # the command the flip records name
        code = main(argv)
    explained = types.SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())
    assert explained.returncode == 0, explained.stderr[-2000:]
    from bench.records import read_records

    return out, read_records(out), explained


@pytest.mark.slow
def test_explain_flips_each_difference_and_the_flips_close_the_loss_gap(explained):
    from bench.analysis import PARITY_TOLERANCE
    from bench.analysis.explain import explain_rows

    out, records, result = explained
    (found,) = explain_rows(records)
    flipped = {r.setting: r for r in found.effects}
    # The native Trainer differs from the tutorial's loop in at least clipping and the AdamW implementation,
    # both flipped in the manual loop; its own machinery (logging, checkpoints, its bar) flipped off in the Trainer.
    assert {"max_grad_norm", "adamw"} <= set(flipped)
    assert flipped["max_grad_norm"].loop == "manual" and flipped["max_grad_norm"].values == (None, 1.0)
    assert {"logging_strategy", "save_strategy", "disable_tqdm"} <= set(flipped)
    assert flipped["save_strategy"].loop == "trainer"
    # DDP-only and GPU-only machinery is listed as inert, not run.
    assert ("trainer", "average_tokens_across_devices") in found.differences.inert
    assert found.differences.undeclared == []
    # The proof: manual with every listed setting of the Trainer trains exactly what the Trainer trains,
    # though manual as it was does not.
    assert found.parity_ab > 10 * PARITY_TOLERANCE
    assert found.everything.parity <= PARITY_TOLERANCE
    assert found.unexplained_s is not None
    text = (out / "report.md").read_text()
    assert "## Why do they differ?" in text and "the listed settings are the whole difference" in text
    assert "| `max_grad_norm` | `None` → `1.0` | manual given trainer's value |" in text
    assert (out / "report-cpu-fp32-manual-trainer-why.png").exists()
    assert "## Why do they differ?" in result.stdout


@pytest.mark.slow
def test_explain_again_runs_nothing_twice(explained, glue_dir):
    from tests.test_cli import run_cli

    out, records, _ = explained
    again = run_cli("explain", str(out), "--from", "manual", "--to", "trainer", "--no-progress")
    assert again.returncode == 0
    from bench.records import read_records

    assert len(read_records(out)) == len(records)
    assert "already recorded" in again.stderr


def test_explain_without_both_loops_says_what_to_run(tmp_path):
    from bench.records import append_record
    from tests.test_cli import run_cli
    from tests.test_report import rec

    append_record(tmp_path, rec("manual"))
    result = run_cli("explain", str(tmp_path), "--from", "manual", "--to", "trainer")
    assert result.returncode == 2 and "--defaults native" in result.stderr
    same = run_cli("explain", str(tmp_path), "--from", "manual", "--to", "manual")
    assert same.returncode == 2 and "explain compares two loops" in same.stderr


def test_a_flip_a_loop_cannot_express_is_listed_with_its_reason():
    """Pure: from records. A Trainer cell asked for weight decay on every parameter fails (the Trainer
    always exempts biases and LayerNorm); explain lists the flip with that reason instead of an effect."""
    import json

    from bench.analysis.explain import explain_rows, flip_label
    from bench.records import Record
    from tests.test_report import rec

    def with_run(r, **run):
        r.config["run"].update(defaults="native", **run)
        r.cell_id += run.get("flip", "")  # a flip is a cell of its own
        return Record.from_dict(json.loads(r.to_json()))

    records = [with_run(rec("trainer", sps=10), weight_decay_exempt=True),
               with_run(rec("accelerate", sps=11), weight_decay_exempt=False),
               with_run(rec("trainer", status="failed", reason="the Trainer always exempts biases and LayerNorm weights "
                                                             "from weight decay"),
                        weight_decay_exempt=False, flip=flip_label("trainer", "accelerate", "weight_decay_exempt"))]
    (found,) = explain_rows(records)
    (row,) = found.effects
    assert row.setting == "weight_decay_exempt" and row.effect_s is None
    assert row.verdict == ("could not be flipped in trainer: the Trainer always exempts biases and LayerNorm "
                              "weights from weight decay")
    assert found.differences.settings["weight_decay_exempt"] == (True, False)
