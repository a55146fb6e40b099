"""Each loop trains a few steps of a tiny random BERT on real MRPC pairs and writes a sane record;
with the same seed the loops see the same batches in the same order and end up in the same place."""

import math

import pytest

from bench.cell.main import run_cell
import loops
from bench.config import Cell

LOOPS = loops.available()


@pytest.fixture(scope="module")
def fp32_records(glue_dir):
    """One 6-step run of each loop, shared by the tests below (crossing an epoch boundary:
    40 pairs / batch 8 = 5 steps per epoch)."""
    from bench.config import RunConfig

    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=40, eval_samples=48, max_steps=7,
                    timing_warmup=2)
    return {loop: run_cell(Cell(loop, "cpu", "fp32", run), progress=False) for loop in LOOPS}


@pytest.mark.parametrize("loop", LOOPS)
def test_record_is_sane(fp32_records, loop):
    r = fp32_records[loop]
    assert r.status == "ok", r.reason
    assert (r.loop, r.device, r.precision) == (loop, "cpu", "fp32")
    assert r.steps == 7 and len(r.step_losses) == 7 and len(r.step_s) == 7
    assert r.timed_steps == 5 and r.timing_warmup_steps == 2
    assert all(math.isfinite(x) and 0 < x < 5 for x in r.step_losses)
    assert r.train_loss_final == r.step_losses[-1]
    assert r.samples_seen == 7 * 8
    assert r.samples_per_s > 0 and r.real_tokens_per_s > 0
    assert r.padded_tokens_per_s >= r.real_tokens_per_s  # padding only adds tokens
    assert 0 <= r.padding_fraction < 1
    assert r.step_s_p50 <= r.step_s_p90
    # Quality with its uncertainty and its floor: the interval holds the score, the baseline is the data's.
    lo, hi = r.eval_f1_ci95
    assert lo <= r.eval_f1 <= hi and r.eval_accuracy_ci95[0] <= r.eval_accuracy <= r.eval_accuracy_ci95[1]
    assert r.eval_majority_baseline.label in (0, 1) and 0.5 <= r.eval_majority_baseline.accuracy <= 1
    # Startup cost in its parts; the loop's own setup (Accelerator, Trainer, prepare...) is never free.
    s = r.setup_s
    assert s.loop_setup_s > 0 and s.model_s > 0 and s.data_s > 0 and s.imports_s >= 0 and s.device_init_s >= 0
    assert s.total_s == pytest.approx(s.imports_s + s.device_init_s + s.model_s + s.data_s + s.loop_setup_s)
    assert r.process_wall_s is None  # run in the test's own process
    # Where the time goes: five phases per step, adding up to the step's time, at a measured cost.
    assert r.phase_split == "" and r.phase_sum_ok_steps == r.steps == len(r.step_phase_s["forward"])
    assert set(r.phase_s_p50) == set(r.phase_s_mean) == {"data", "forward", "backward", "optimizer", "other"}
    assert sum(r.phase_s_mean.values()) == pytest.approx(r.step_s_mean, rel=1e-6)
    assert 0 < r.phase_cost_s_p50 < 0.01 * r.step_s_p50
    # samples/s is over the timed steps only: recompute it from the raw step times.
    assert r.samples_per_s == pytest.approx(5 * 8 / sum(r.step_s[2:]), rel=1e-9)
    assert r.peak_rss_mib > 100 and r.peak_alloc_mib is None  # no CUDA counters on the CPU
    assert r.eval_examples == 48 and 0 <= r.eval_accuracy <= 1 and 0 <= r.eval_f1 <= 1
    assert r.config["run"]["lr"] == 5e-5 and r.config["run"]["batch_size"] == 8
    assert r.model.weights.startswith("random-init") and "uncased" in r.model.tokenizer
    assert r.data_source.startswith("local:")
    for key in ("python", "torch", "transformers", "accelerate", "datasets", "git_sha", "cpu_name"):
        assert key in r.env


@pytest.mark.parametrize("loop", LOOPS)
def test_settings_in_force_are_the_tutorials(fp32_records, loop):
    s = fp32_records[loop].settings
    assert s["optimizer"] == "AdamW" and s["lr"] == 5e-5
    assert s["grad_clip_max_norm"] is None  # the Trainer's default 1.0 is turned off
    assert s["optimizer_impl"] == "torch-default"  # not the Trainer's default fused AdamW
    assert s["scheduler"]["num_warmup_steps"] == 0 and s["scheduler"]["num_training_steps"] == 7
    assert s["lr_first_step"] == pytest.approx(5e-5)
    assert s["lr_last_step"] == pytest.approx(5e-5 / 7)  # linear decay over exactly 7 steps
    assert s["sampler"].startswith("EpochShuffleSampler")
    assert s["autocast_dtype"] is None and s["compute_dtype"] == "float32" and s["grad_scaler"] is False
    assert s["compiled"] is False and s["dataloader_num_workers"] == 0 and s["dataloader_pin_memory"] is False


def test_same_batches_in_same_order(fp32_records):
    checksums = {loop: r.batch_order_checksum for loop, r in fp32_records.items()}
    assert len(set(checksums.values())) == 1, checksums


def test_loops_end_within_tolerance(fp32_records):
    ref = fp32_records["manual"].step_losses
    for loop in ("accelerate", "trainer"):
        other = fp32_records[loop].step_losses
        worst = max(abs(a - b) / abs(a) for a, b in zip(ref, other))
        assert worst < 1e-4, f"{loop} drifted from manual by {worst:.2e} relative"


def test_a_different_seed_changes_the_order(tiny_run):
    a = run_cell(Cell("manual", "cpu", "fp32", tiny_run(max_steps=3, timing_warmup=1)), progress=False)
    b = run_cell(Cell("manual", "cpu", "fp32", tiny_run(max_steps=3, timing_warmup=1, seed=7)), progress=False)
    assert a.status == b.status == "ok"
    assert a.batch_order_checksum != b.batch_order_checksum
    assert a.step_losses != b.step_losses


@pytest.mark.parametrize("loop", LOOPS)
def test_bf16_autocast_is_in_force(tiny_run, loop):
    r = run_cell(Cell(loop, "cpu", "bf16", tiny_run(max_steps=3, timing_warmup=1)), progress=False)
    assert r.status == "ok", r.reason
    assert r.settings["autocast_dtype"] == "bfloat16" and r.settings["compute_dtype"] == "bfloat16"
    assert r.settings["param_dtype"] == "float32"  # mixed precision: weights stay fp32
    assert r.settings["grad_scaler"] is False
