"""The report is a pure function of records: tables, speed-ups, spreads, skips, plots, parity."""

import json

import pytest

from bench.analysis import mfu
from bench.report import render
from bench.records import Record, append_record, read_records

SETTINGS = {"optimizer": "AdamW", "optimizer_impl": "torch-default", "grad_clip_max_norm": None,
            "autocast_dtype": None, "lr_first_step": 5e-5}
MODEL = {"weights": "pretrained:/m", "tokenizer": "/m", "n_params": 22_713_986, "n_params_non_embedding": 10_000_000,
         "num_layers": 6, "hidden_size": 384}


def rec(loop, precision="fp32", sps=10.0, repeat=0, status="ok", reason="", losses=(0.7, 0.6, 0.5), device="cpu",
        settings=None, f1=0.8, checksum=123, step_s=None):
    run = {"model": "minilm-l6", "lr": 5e-5, "batch_size": 8, "epochs": 3, "max_steps": None, "scheduler": "linear",
           "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": None, "adamw": "torch-default", "seed": 42,
           "timing_warmup": 1, "train_samples": None}
    r = Record(loop=loop, device=device, precision=precision, status=status, reason=reason, repeat=repeat,
               cell_id=f"{loop}-{device}-{precision}-{repeat}",
               config={"loop": loop, "device": device, "precision": precision, "repeat": repeat, "run": run},
               command="python -m bench run --loops all", env={"python": "3.11", "torch": "2.13", "cpu_name": "TestCPU"})
    if status == "ok":
        r.samples_per_s, r.real_tokens_per_s = sps, sps * 50
        r.step_s_p50, r.step_s_p90 = 8 / sps, 9 / sps
        r.peak_rss_mib, r.eval_accuracy, r.eval_f1 = 1000.0, 0.75, f1
        r.step_losses, r.train_loss_final = list(losses), losses[-1]
        r.timing_warmup_steps, r.timed_s = 1, 2 * 8 / sps
        r.step_samples, r.step_padded_tokens = [8, 8, 8], [800, 800, 800]
        r.step_s = list(step_s) if step_s else [8 / sps] * 3
        r.device_peak_tflops, r.device_peak_source = 0.1, "measured 2048^3 GEMM on this CPU, fp32"
        r.model, r.settings, r.batch_order_checksum = MODEL, dict(settings or SETTINGS), checksum
        r.data_source = "local:/glue"
        r.eval_f1_ci95, r.eval_majority_baseline = [f1 - 0.03, f1 + 0.02], {"label": 1, "accuracy": 0.6838, "f1": 0.8122}
    return r


@pytest.fixture
def report(tmp_path):
    out = tmp_path / "run"
    for r in [rec("manual", sps=10, repeat=0), rec("manual", sps=12, repeat=1), rec("manual", sps=11, repeat=2),
              rec("accelerate", sps=9.5), rec("trainer", sps=9.0, losses=(0.7, 0.6, 0.52),
                                                settings={**SETTINGS, "grad_clip_max_norm": 1.0}),
              rec("manual", "bf16", sps=30), rec("manual", "tf32", status="skipped", reason="tf32 is cuda-only"),
              rec("trainer", "bf16", status="failed", reason="timed out after 60 s (--cell-timeout)")]:
        append_record(out, r)
    md = tmp_path / "reports" / "demo.md"
    text = render(read_records(out), md)
    return text, md


def test_header_has_command_and_environment(report):
    text, _ = report
    assert "python -m bench run --loops all" in text
    assert "| torch | 2.13 |" in text and "TestCPU" in text


def test_quality_has_its_interval_and_the_majority_class_floor(report):
    text, _ = report
    assert 'predicting "equivalent" for every validation pair scores accuracy 0.6838, F1 0.8122' in text
    assert "| 0.770–0.820 |" in text  # the F1 95% interval beside the F1


def test_device_table_has_medians_spread_cv_and_speedup(report):
    text, _ = report
    row = next(line for line in text.splitlines() if line.startswith("| manual | fp32 |"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[2] == "11.0"  # median of 10, 12, 11
    assert cols[3] == "10.0–12.0"
    assert cols[4] == "9.1%"  # stdev 1 / mean 11
    assert cols[5] == "1.00×"
    bf16 = next(line for line in text.splitlines() if line.startswith("| manual | bf16 |"))
    assert "2.73×" in bf16  # 30 / 11
    acc = next(line for line in text.splitlines() if line.startswith("| accelerate | fp32 |"))
    assert "0.86×" in acc  # 9.5 / 11


def test_mfu_is_model_flops_over_the_peak():
    r = Record.from_dict(json.loads(rec("manual", sps=10).to_json()))
    # 2 timed steps of 8 sequences of 100 tokens: 6 N L + 12 layers h L^2 each, over 1.6 s, peak 0.1 TFLOP/s.
    per_seq = 6 * 10_000_000 * 100 + 12 * 6 * 384 * 100**2
    assert mfu(r) == pytest.approx(2 * 8 * per_seq / 1.6 / 0.1e12)


def test_skipped_and_failed_cells_are_listed_with_reasons(report):
    text, _ = report
    assert "| manual | cpu | tf32 | skipped | tf32 is cuda-only |" in text
    assert "| trainer | cpu | bf16 | failed | timed out after 60 s (--cell-timeout) |" in text


def test_plots_are_written_and_embedded(report):
    text, md = report
    for name in ("demo-cpu-throughput.png", "demo-cpu-memory.png", "demo-cpu-fp32-loss.png"):
        assert (md.parent / name).stat().st_size > 1000
        assert f"]({name})" in text


def test_parity_section_names_the_differing_setting(report):
    text, _ = report
    section = text.split("## Do the loops train the same thing?")[1]
    assert "| trainer | 3 | 4.00e-02 | 3 | yes |" in section  # |0.5 - 0.52| / 0.5 at step 3
    assert "| accelerate | 3 | 0.00e+00 |" in section
    assert "differ between the loops: **grad_clip_max_norm**" in section
    assert "| **grad_clip_max_norm** | `null` | `null` | `1.0` | **differs** |" in section


def test_report_cli_writes_next_to_the_results(tmp_path):
    from tests.test_cli import run_cli

    append_record(tmp_path, rec("manual"))
    result = run_cli("report", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.md").read_text().startswith("# bench report")


# ---- is each loop as fast as the manual loop? ------------------------------------------------

MANUAL_STEPS = [[0.9, 0.5, 1.0], [1.1, 0.6, 1.2], [0.8, 0.45, 0.9]]  # three repeats, batches of varied length
TRAINER_SETTINGS = dict(SETTINGS, trainer_grad_norm_each_step=True, trainer_logging_nan_inf_filter=True,
                        loop_specific_keys=["trainer_grad_norm_each_step", "trainer_logging_nan_inf_filter"],
                        extra_work_per_step=["computes the total gradient norm every step, clipping on or off"])


def _gap_records(factors, checksum=123):
    records = [rec("manual", repeat=i, step_s=steps) for i, steps in enumerate(MANUAL_STEPS[:len(factors)])]
    records += [rec("trainer", repeat=i, checksum=checksum, settings=TRAINER_SETTINGS,
                    step_s=[t * f for t in MANUAL_STEPS[i]]) for i, f in enumerate(factors)]
    return records


@pytest.mark.parametrize("factors,verdict", [
    ([1.02, 0.99, 1.03], "within 5% of manual"),
    ([1.20, 1.15, 1.25], "20% slower in every one of 3 runs: a real gap. Per-step work beyond the manual loop: "
                         "trainer computes the total gradient norm every step"),
    ([1.30, 0.97, 1.20], "20% slower at the median, but not beyond 5% in every run (step ratio 0.97–1.30 across 3 runs): "
                         "not separable from this machine's run-to-run noise"),
    ([1.30], "30% slower in a single run; one run cannot tell a gap from the machine's run-to-run noise"),
])
def test_loop_gap_is_paired_step_by_step_and_judged_against_the_repeats(factors, verdict):
    from bench.analysis import cells_of, comparison_groups, gap_rows

    (group,) = comparison_groups(cells_of([Record.from_dict(json.loads(r.to_json())) for r in _gap_records(factors)])).values()
    (row,) = gap_rows(group)
    assert row.loop == "trainer" and row.runs == len(factors)
    # the median of per-step ratios: batch-length variation within a run does not enter
    assert row.step_ratio == pytest.approx(sorted(factors)[len(factors) // 2])
    assert verdict in row.verdict


def test_loop_gap_needs_the_same_batches(tmp_path):
    records = _gap_records([1.2, 1.2, 1.2], checksum=999)
    for r in records:
        append_record(tmp_path, r)
    text = render(read_records(tmp_path), tmp_path / "report.md")
    assert "## Is each loop as fast as the manual loop?" in text
    assert "not comparable: no run saw the manual loop's batches in the same order" in text


def test_header_says_model_varies_when_cells_trained_different_models(tmp_path):
    a, b = rec("manual"), rec("trainer")
    b.config["run"] = dict(b.config["run"], model="tiny")
    b.model = dict(MODEL, num_layers=2)
    for r in (a, b):
        append_record(tmp_path, r)
    text = render(read_records(tmp_path), tmp_path / "report.md")
    assert "- model: varies by cell" in text and "- model: `minilm-l6`" not in text


def test_plot_links_have_no_spaces_when_variants_do(tmp_path):
    import re

    for bs in (8, 32):
        for loop in ("manual", "trainer"):
            r = rec(loop, losses=[0.7 - i / 1000 for i in range(300)])  # long enough for a running mean
            r.config["run"] = dict(r.config["run"], batch_size=bs)
            r.cell_id = f"{loop}-{bs}"
            append_record(tmp_path, r)
    text = render(read_records(tmp_path), tmp_path / "report.md")
    links = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", text)
    assert "report-cpu-fp32-bs-32-loss.png" in links and all(" " not in link for link in links)
    assert all((tmp_path / link).exists() for link in links)


# ---- the bottom line and where the time goes -------------------------------------------------

def _phased(record, **ms):
    """A record whose mean step is split into phases (milliseconds given, the rest in `forward`)."""
    step = sum(record.step_s[1:]) / len(record.step_s[1:])
    phases = {"data": 0.001, "backward": 0.002, "optimizer": 0.003, "other": 0.0005}
    phases.update({k: v / 1000 for k, v in ms.items()})
    phases["forward"] = step - sum(phases.values())
    record.phase_s_mean, record.phase_s_p50 = phases, dict(phases)
    record.step_phase_s = {k: [v] * len(record.step_s) for k, v in phases.items()}
    record.phase_sum_ok_steps, record.phase_cost_s_p50, record.steps = len(record.step_s), 2e-6, len(record.step_s)
    record.setup_s = {"total_s": 2.5 if record.loop == "manual" else 4.0}
    return record


def test_a_real_gap_is_named_by_the_phase_that_carries_it(tmp_path):
    from bench.analysis import cells_of, comparison_groups, gap_rows

    records = [_phased(r, optimizer=3 + 150 * (r.loop == "trainer")) for r in _gap_records([1.20, 1.15, 1.25])]
    (group,) = comparison_groups(cells_of([Record.from_dict(json.loads(r.to_json())) for r in records])).values()
    (row,) = gap_rows(group)
    assert "a real gap, +" in row.verdict and "ms/step: `optimizer` +150.0 ms" in row.verdict
    for r in records:
        append_record(tmp_path, r)
    text = render(read_records(tmp_path), tmp_path / "report.md")
    # The report opens with its answer; the answer names the phase and links to where it comes from.
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Bottom line"
    bottom = text.split("## Bottom line")[1].split("\n## ")[0]
    row = next(line for line in bottom.splitlines() if line.startswith("| **trainer** |"))
    assert "[1.20×](#is-each-loop-as-fast-as-the-manual-loop) 20% slower in every run" in row
    assert "`optimizer` +150.0 ms](#where-the-time-goes)" in row and row.endswith("| [4.0](#cpu) |")  # startup
    assert "**Holds:** cpu / fp32: trainer 20% slower than manual in every run" in bottom
    assert "manual reaches its first step soonest (2.5 s), trainer last (4.0 s)" in bottom
    # Where the time goes: the table (five phases adding up to the step), the stacked plot.
    assert "## Where the time goes" in sections
    phases = text.split("## Where the time goes")[1].split("\n## ")[0]
    assert "| data | forward | backward | optimizer | other | step ms |" in phases
    assert "![where the time goes on cpu](report-cpu-phases.png)" in phases
    assert (tmp_path / "report-cpu-phases.png").stat().st_size > 0


def test_the_bottom_line_says_what_it_cannot_tell(report):
    text, _ = report
    bottom = text.split("## Bottom line")[1].split("\n## ")[0]
    assert "**cpu / fp32**" in bottom and "TestCPU" in bottom
    assert "**Cannot tell:**" in bottom and "one run per cell" in bottom and "`--repeats 3`" in bottom
    assert "every loop's F1 interval overlaps every other's" in bottom


def test_a_peak_below_the_cells_own_probe_is_no_peak():
    """A GEMM peak measured in a busy spell (35 GFLOP/s) below what the cell's load probe read on the
    same CPU in fp32 (185): MFU over the probe's figure, not five times too high."""
    from bench.analysis.cells import cells_of
    from bench.analysis.mfu import device_peak_of, mfu, shared_peaks

    r = rec("manual", sps=10)
    r.model = {"name": "tiny", "n_params_non_embedding": 1_000_000, "num_layers": 2, "hidden_size": 64}
    r.device_peak_tflops, r.device_peak_source = 0.035, "measured 1024^3 GEMM on this CPU, fp32"
    r.machine_load = {"gemm_gflops_before": 183.0, "gemm_gflops_after": 189.0}
    r = Record.from_dict(json.loads(r.to_json()))
    assert device_peak_of(r) == pytest.approx(0.189)
    busy_peak = r.device_peak_tflops
    assert mfu(r) == pytest.approx(mfu(r, 0.189)) and mfu(r) == pytest.approx(mfu(r, busy_peak) * busy_peak / 0.189)
    peak, source = shared_peaks(cells_of([r]))["fp32"]
    assert peak == pytest.approx(0.189) and "load probe" in source
    # A datasheet peak is never raised, nor a bf16 one by an fp32 probe.
    r.device_peak_source = "datasheet dense peak, H100 SXM (NVIDIA H100), fp32"
    assert device_peak_of(r) == busy_peak


def test_with_few_seeds_the_interval_is_at_least_students_t():
    """Three seeds: resampling them has 10 distinct draws and understates their spread; the interval
    is at least the t-interval over the per-seed differences, as scipy computes it, and says so."""
    import numpy as np
    from scipy import stats

    from bench.analysis.bootstrap import across_seeds

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 2, size=200)
    per_seed, diffs = [], []
    for flip_share in (0.02, 0.10, 0.20):  # seeds whose B disagrees with A on more and more pairs
        a = ref.copy()
        b = np.where(rng.random(200) < flip_share, 1 - ref, ref)
        per_seed.append((a, b, ref))
    found = across_seeds(per_seed, resamples=2000)
    from bench.analysis.bootstrap import scores

    diffs = [scores(np.asarray(b), ref)[1] - scores(np.asarray(a), ref)[1] for a, b, _ in per_seed]
    lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=np.mean(diffs), scale=stats.sem(diffs))
    assert found.f1_diff_ci95[0] <= lo + 1e-9 and found.f1_diff_ci95[1] >= hi - 1e-9
    assert "t-interval over the 3 seeds" in found.interval
    many = across_seeds(per_seed * 4, resamples=500)  # 12 seeds: the bootstrap alone
    assert many.interval == "two-level bootstrap"


def test_the_t_table_is_students():
    from scipy import stats

    from bench.analysis.bootstrap import T_975

    for df, t in T_975.items():
        assert t == pytest.approx(stats.t.ppf(0.975, df), abs=1e-4)


def test_a_busy_measurement_is_never_a_speed_claim():
    """One run or many, same speed or not: a pair measured while the machine was busy is "busy" (the
    report names it and claims nothing), never "80% faster, one run" or "within 5%"."""
    from bench.analysis.verdicts import Kind, paired_kind

    assert paired_kind(0.20, [0.20], busy=True) == Kind.BUSY
    assert paired_kind(1.01, [1.01, 1.0], busy=True) == Kind.BUSY
    assert paired_kind(0.20, [0.20]) == Kind.SINGLE and paired_kind(1.01, [1.01, 1.0]) == Kind.SAME
