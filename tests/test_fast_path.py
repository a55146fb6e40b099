"""Fast-path options: length grouping, padding multiples, loader options and compile switches in
force in every loop; time-to-accuracy; the regression gate's arithmetic."""

import json

import pytest

from bench.cell.main import run_cell
import loops
from bench.config import Cell
from bench.data import EpochShuffleSampler


def test_length_grouping_keeps_a_permutation_and_cuts_padding():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(10, 120) for _ in range(1000)]
    plain = list(EpochShuffleSampler(1000, 42))
    grouped = list(EpochShuffleSampler(1000, 42, lengths, batch_size=8))
    assert sorted(grouped) == list(range(1000))

    def padded(order):
        return sum(max(lengths[i] for i in order[k:k + 8]) * len(order[k:k + 8]) for k in range(0, 1000, 8))

    assert padded(grouped) < 0.8 * padded(plain)
    s = EpochShuffleSampler(1000, 42, lengths, batch_size=8)
    s.set_epoch(1)
    assert list(s) != grouped  # a new grouping each epoch


@pytest.mark.parametrize("loop", loops.available())
def test_fast_path_settings_are_in_force(tiny_run, loop):
    run = tiny_run(max_steps=3, timing_warmup=1, group_by_length=True, pad_to_multiple_of=16, batch_size=16,
                   adamw="fused", attn="eager", train_samples=96)
    r = run_cell(Cell(loop, "cpu", "fp32", run), progress=False)
    assert r.status == "ok", r.reason
    s = r.settings
    assert s["pad_to_multiple_of"] == 16 and "grouped by length" in s["sampler"]
    assert s["optimizer_impl"] == "fused" and s["attn_implementation"] == "eager"
    assert all(t % 16 == 0 for t in [p // n for p, n in zip(r.step_padded_tokens, r.step_samples)])
    assert r.padding_fraction < 0.5


def test_time_to_accuracy_excludes_evaluation_from_throughput(tiny_run):
    run = tiny_run(max_steps=6, timing_warmup=1, eval_every=2, target_f1=0.01, eval_samples=64)
    r = run_cell(Cell("manual", "cpu", "fp32", run), progress=False)
    assert r.status == "ok", r.reason
    assert [e.step for e in r.eval_curve] == [2, 4, 6]
    assert r.eval_during_training_s > 0
    # The step clock restarts after each evaluation: no step carries an evaluation's time.
    assert sum(r.step_s) + r.eval_during_training_s <= r.train_wall_s + 1e-6
    walls = [e.wall_s for e in r.eval_curve]
    assert walls == sorted(walls)
    reached = [e for e in r.eval_curve if e.eval_f1 >= 0.01]
    if reached:
        assert r.time_to_target_step == reached[0].step and r.time_to_target_s == reached[0].wall_s
    else:
        assert r.time_to_target_s is None


def test_regression_gate_fails_on_a_slower_loop_and_passes_otherwise(tmp_path, capsys):
    from bench.regress import main

    def bench_json(path, manual, trainer, meter):
        path.write_text(json.dumps({"benchmarks": [
            {"name": "test_loop_steps[manual]", "stats": {"median": manual}},
            {"name": "test_loop_steps[trainer]", "stats": {"median": trainer}},
            {"name": "test_meter_overhead", "stats": {"median": meter}}]}))
        return path

    base_dir = tmp_path / "baselines"
    base = bench_json(tmp_path / "base.json", 1.0, 1.1, 0.002)
    assert main([str(base), "--baseline-dir", str(base_dir), "--machine-class", "test", "--save", "--save-ratios"]) == 0
    same = bench_json(tmp_path / "same.json", 1.2, 1.3, 0.0024)  # the whole machine 20% slower: ratios hold
    assert main([str(same), "--baseline-dir", str(base_dir), "--machine-class", "test"]) == 0
    slow = bench_json(tmp_path / "slow.json", 1.0, 1.5, 0.002)  # the Trainer alone 36% slower
    assert main([str(slow), "--baseline-dir", str(base_dir), "--machine-class", "test"]) == 1
    assert "FAIL trainer/manual" in capsys.readouterr().out
    heavy = bench_json(tmp_path / "heavy.json", 1.0, 1.1, 0.02)  # the meter costs 2% of the loop
    assert main([str(heavy), "--baseline-dir", str(base_dir), "--machine-class", "test"]) == 1
    # A machine class without a baseline of its own: its medians could not be judged, and it says so
    # (exit 3, not a pass); a ratio that regressed is still a regression.
    assert main([str(same), "--baseline-dir", str(base_dir), "--machine-class", "other"]) == 3
    out = capsys.readouterr().out
    assert "no absolute baseline for machine class other" in out and "could not judge" in out
    assert main([str(slow), "--baseline-dir", str(base_dir), "--machine-class", "other"]) == 1
    assert "FAIL trainer/manual" in capsys.readouterr().out


def test_baseline_is_the_median_of_several_runs(tmp_path, capsys):
    from bench.regress import main, medians

    def bench_json(name, manual, trainer):
        path = tmp_path / name
        path.write_text(json.dumps({"benchmarks": [
            {"name": "test_loop_steps[manual]", "stats": {"median": manual}},
            {"name": "test_loop_steps[trainer]", "stats": {"median": trainer},
             "extra_info": {"trainer/manual": trainer / manual}},
            {"name": "test_meter_overhead", "stats": {"median": manual / 1000}}]}))
        return str(path)

    runs = [bench_json("a.json", 1.0, 1.1), bench_json("b.json", 3.0, 3.6), bench_json("c.json", 1.2, 1.2)]
    base_dir = tmp_path / "baselines"
    assert main([*runs, "--baseline-dir", str(base_dir), "--machine-class", "test", "--save", "--save-ratios"]) == 0
    saved = medians(base_dir / "test.json")
    assert saved["test_loop_steps[manual]"] == 1.2 and saved["test_loop_steps[trainer]"] == 1.2
    assert saved["paired trainer/manual"] == pytest.approx(1.1)  # median of 1.1, 1.2, 1.0
    assert main([runs[0], "--baseline-dir", str(base_dir), "--machine-class", "test"]) == 0
    assert main([*runs, "--baseline-dir", str(base_dir), "--machine-class", "test"]) == 2
    assert "gate one run at a time" in capsys.readouterr().err
