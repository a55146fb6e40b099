"""Seeds as a sweep axis, per-pair predictions in the record, and the paired quality comparison
across seeds (bench/analysis/quality.py) with its report section."""

import json

import numpy as np

import pytest

import loops
from bench.analysis import cells_of, comparison_groups, gap_rows
from bench.cell.main import run_cell
from bench.cli import build_parser, main
from bench.config import Cell, RunConfig
from bench.cell.evaluation import _accuracy_f1, bootstrap_ci95
from bench.sweep.plan import plan_cells
from bench.analysis.bootstrap import across_seeds, paired_difference, scores
from bench.analysis.quality import MIN_SEEDS, quality_rows, time_to_target, verdict
from bench.records import Record, append_record, read_records
from bench.report import render
from bench.report.quality import HEADING as QUALITY_HEADING


# ---- the paired bootstrap against hand-computed cases -----------------------------------------

REF = [1] * 6 + [0] * 4  # 6 paraphrases, 4 not


def test_identical_predictions_differ_by_zero_with_a_zero_width_interval():
    pred = [1, 1, 1, 0, 1, 0, 0, 1, 0, 0]
    row = paired_difference(pred, pred, REF)
    assert row.f1_diff == 0 and row.acc_diff == 0 and row.pairs_differing == 0
    assert row.f1_diff_ci95 == [0.0, 0.0] and row.acc_diff_ci95 == [0.0, 0.0]
    both = across_seeds([(pred, pred, REF)] * 3)
    assert both.f1_diff == 0 and both.f1_diff_ci95 == [0.0, 0.0] and both.acc_diff_ci95 == [0.0, 0.0]
    assert verdict(both, identical=True)[0] == "not told apart"


def test_one_flipped_pair_gives_the_exact_difference():
    a = list(REF)  # perfect: accuracy 1, F1 1
    b = [0] + REF[1:]  # one paraphrase missed: tp 5, fn 1 -> F1 10/11, accuracy 9/10
    row = paired_difference(a, b, REF)
    assert row.f1_a == 1.0 and row.f1_b == pytest.approx(10 / 11, abs=1e-15)
    assert row.f1_diff == pytest.approx(-1 / 11, abs=1e-15) and row.acc_diff == pytest.approx(-0.1, abs=1e-15)
    assert row.pairs_differing == 1
    # B is never better on any resample (it errs on a superset of A's pairs), and a resample that misses
    # the flipped pair ((9/10)^10 = 35% of them) sees no difference: the interval ends at exactly 0.
    lo, hi = row.f1_diff_ci95
    assert lo < -1 / 11 < hi == 0.0
    # Across seeds: the same flip at every seed averages to the same difference; at half the seeds, to half.
    assert across_seeds([(a, b, REF)] * 3).f1_diff == pytest.approx(-1 / 11, abs=1e-15)
    half = across_seeds([(a, b, REF), (a, a, REF)])
    assert half.f1_diff == pytest.approx(-1 / 22, abs=1e-15) and half.acc_diff == pytest.approx(-0.05)


def test_scores_are_glue_mrpc_accuracy_and_f1():
    rng = np.random.default_rng(3)
    pred, ref = rng.integers(0, 2, (5, 50)), rng.integers(0, 2, (5, 50))
    acc, f1 = scores(pred, ref)
    for i in range(5):
        assert (acc[i], f1[i]) == pytest.approx(_accuracy_f1(pred[i].tolist(), ref[i].tolist()), abs=1e-15)
    assert scores([0, 0], [1, 0])[1] == 0.0  # no true positive: F1 0, as the metric has it


def _seed_case(n_wrong: int, n: int = 200, seed: int = 0):
    """A perfect loop A and a loop B wrong on ``n_wrong`` of ``n`` pairs."""
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 2, n)
    b = ref.copy()
    b[rng.choice(n, n_wrong, replace=False)] ^= 1
    return ref, ref.copy(), b


def test_verdict_worse_better_and_too_few_seeds():
    seeds = [_seed_case(40, seed=s) for s in range(MIN_SEEDS)]
    worse = across_seeds([(a, b, ref) for ref, a, b in seeds])
    assert worse.f1_diff_ci95[1] < 0
    word, why = verdict(worse, identical=False)
    assert word == "worse" and f"across {MIN_SEEDS} seeds" in why
    better = across_seeds([(b, a, ref) for ref, a, b in seeds])
    assert verdict(better, identical=False)[0] == "better"
    few = across_seeds([(b, a, ref) for ref, a, b in seeds[:MIN_SEEDS - 1]])
    word, why = verdict(few, identical=False)
    assert word == "no verdict" and "too few seeds" in why  # not "not told apart": nothing was weighed
    # A difference the pairs cannot resolve: one pair in 200 at each seed.
    close = across_seeds([(a, b, ref) for ref, a, b in (_seed_case(1, seed=s) for s in range(MIN_SEEDS))])
    word, why = verdict(close, identical=False)
    assert word == "not told apart" and "includes 0" in why
    # Seeded: the same records give the same interval.
    assert across_seeds([(a, b, ref) for ref, a, b in seeds]) == worse


def test_time_to_target_counts_seeds_that_never_reach_it():
    def r(s, step):
        return Record(loop="manual", device="cpu", precision="fp32", status="ok", config={"run": {"target_f1": 0.85}},
                      time_to_target_s=s, time_to_target_step=step)

    five = time_to_target([r(10.0, 100), r(20.0, 200), r(30.0, 300), r(None, None), r(40.0, 400)])
    # Sorted 10, 20, 30, 40, never: median 30; MLPerf drops 10 and "never", mean of 20, 30, 40.
    assert (five.reached, five.seeds, five.median_s, five.median_step) == (4, 5, 30.0, 300.0)
    assert (five.mlperf_mean_s, five.mlperf_mean_step) == (30.0, 300.0)
    three = time_to_target([r(10.0, 100), r(None, None), r(None, None)])
    assert three.median_s == float("inf") and three.mlperf_mean_s is None and three.reached == 1


# ---- the seed axis in the plan, the cells and the command line --------------------------------

def test_plan_runs_each_seed_as_its_own_cells_a_seed_at_a_time():
    cells = plan_cells(["manual", "trainer"], ["cpu"], ["fp32"], [RunConfig(model="tiny")], seeds=[1, 2], repeats=2)
    assert [(c.repeat, c.run.seed, c.loop) for c in cells] == [
        (rep, seed, loop) for rep in (0, 1) for seed in (1, 2) for loop in ("manual", "trainer")]
    assert len({c.cell_id for c in cells}) == len(cells)  # a seed is never a repeat of another seed
    assert "seed 2" in cells[2].label and "seed" not in Cell("manual", "cpu", "fp32", RunConfig()).label
    # Without --seeds, the run config's own seed.
    assert {c.run.seed for c in plan_cells(["manual"], ["cpu"], ["fp32"], [RunConfig(seed=7)])} == {7}


def test_seeds_flag_through_the_parser():
    parser = build_parser()
    assert parser.parse_args(["run", "--seeds", "1,2,3"]).seeds == [1, 2, 3]
    assert parser.parse_args(["run", "--seeds", "3,1,3"]).seeds == [3, 1]
    args = parser.parse_args(["run", "--seed", "7"])
    assert (args.seed, args.seeds) == (7, None)
    for bad in (["--seeds", "1,x"], ["--seeds", "-1"], ["--seeds", ","], ["--seeds", "1,2", "--seed", "3"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["run", *bad])
        assert exc.value.code == 2


def test_run_with_seeds_records_each_seed_and_resume_adds_a_seed(glue_dir, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir, "--max-steps", "3",
            "--timing-warmup", "1", "--train-samples", "24", "--eval-samples", "16", "--no-progress", "--in-process"]
    assert main([*base, "--seeds", "1,2", "--out", str(out)]) == 0
    records = read_records(out)
    assert [(r.seed, r.run.seed) for r in records] == [(1, 1), (2, 2)]
    assert len({r.cell_id for r in records}) == 2
    assert all(len(r.eval_predictions.predicted) == 16 for r in records)
    assert "| seed " in capsys.readouterr().out  # the summary table says which seed each row is
    # Resume with one more seed: only the new seed runs; the recorded ones are not run again.
    assert main([*base, "--seeds", "1,2,3", "--resume", str(out)]) == 0
    assert [r.seed for r in read_records(out)] == [1, 2, 3]
    # One loop has nothing to pair across seeds with: its seeds share one table in the bottom line,
    # a row per seed, instead of a table per seed.
    bottom = (out / "report.md").read_text(encoding="utf-8").split("## Bottom line")[1].split("\n## ")[0]
    assert bottom.count("| seed | loop | samples/s |") == 1 and "/ fp32, seeds 1, 2, 3**" in bottom
    assert [row.split(" | ")[:2] for row in bottom.splitlines() if "**manual**" in row] == \
        [["| 1", "**manual**"], ["| 2", "**manual**"], ["| 3", "**manual**"]]
    # Another loop at seed 1 only: what would tell them apart is that loop at the other seeds, not
    # "--seeds 1,2,3", which the sweep already ran.
    assert main([*base[:2], "accelerate", *base[3:], "--seeds", "1", "--resume", str(out)]) == 0
    assert "| 1 | **accelerate** |" in (out / "report.md").read_text(encoding="utf-8")
    # 3 steps of the tiny model score the majority floor; lift every F1 off it (the intervals overlapping)
    # in a copy of the records, so the report weighs the loops' quality at seed 1.
    lifted = tmp_path / "lifted"
    lifted.mkdir()
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    for r in lines:
        r["eval_f1"], r["eval_f1_ci95"] = 0.9, [0.85, 0.95]
    (lifted / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    assert main(["report", str(lifted)]) == 0
    bottom = (lifted / "report.md").read_text(encoding="utf-8").split("## Bottom line")[1].split("\n## ")[0]
    assert "quality at one seed: every loop's F1 interval overlaps every other's" in bottom
    assert "every loop at the seeds the sweep ran (`--resume` with `--loops all` and the same `--seeds`)" in bottom
    assert "`--seeds 1,2,3` for" not in bottom  # the sweep ran them already
    # accelerate predicting otherwise than manual on some pairs at its one seed, and a copy of manual's
    # three records as the Trainer's (an across-seed table, two loops at every seed): accelerate gets
    # no verdict (no interval across seeds), said as such, not "not told apart" nor "its interval
    # across 3 seeds includes 0"; what would tell is accelerate at the sweep's seeds.
    trainer = []
    for r in lines:
        if r["loop"] == "accelerate":
            predicted = r["eval_predictions"]["predicted"]
            predicted[:4] = [1 - label for label in predicted[:4]]
        if r["loop"] == "manual":
            trainer.append({**r, "loop": "trainer", "cell_id": r["cell_id"] + "-trainer",
                            "config": {**r["config"], "loop": "trainer"}})  # a record names its loop twice
    (lifted / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines + trainer), encoding="utf-8")
    assert main(["report", str(lifted)]) == 0
    bottom = (lifted / "report.md").read_text(encoding="utf-8").split("## Bottom line")[1].split("\n## ")[0]
    assert "| **accelerate** | " in bottom and "| **no verdict**: too few seeds (1; a verdict needs an interval " \
        "across at least 3: each side at the seeds the sweep ran (1, 2, 3; `--resume` with the same `--seeds`))" in bottom
    assert "whether accelerate fine-tunes better or worse than manual (fewer than 3 seeds of it: no interval " \
           "across seeds)" in bottom and "(each F1 interval" not in bottom
    assert "**To tell:** every loop at the seeds the sweep ran (`--resume` with `--loops all` and the same " \
           "`--seeds`)" in bottom


def test_resume_of_a_native_seed_sweep_matches_each_loop_to_its_own_config(tmp_path):
    """Under --defaults native each loop's run config has its own library's defaults: a resume plans
    the same cells and is let through; another lr is still refused."""
    from bench.config import ConfigError
    from bench.sweep.outdir import check_comparable

    def planned(**kw):
        return plan_cells(["manual", "trainer"], ["cpu"], ["fp32"], [RunConfig(model="tiny", defaults="native", **kw)],
                          seeds=[1, 2])

    cells = planned()
    assert cells[0].run.max_grad_norm != cells[1].run.max_grad_norm  # the Trainer clips out of the box
    records = [Record(loop=c.loop, device=c.device, precision=c.precision, status="ok", config=c.to_dict())
               for c in cells[:2]]  # seed 1 recorded
    check_comparable(tmp_path, cells, records, resume=True)
    with pytest.raises(ConfigError, match="run.lr"):
        check_comparable(tmp_path, planned(lr=1e-4), records, resume=True)


# ---- one seed, the same head, order and dropout in every loop ---------------------------------

@pytest.fixture(scope="module")
def seeded_records(glue_dir):
    """Every installed loop at seeds 1 and 2, through the plan; each loop's model as it was handed
    to the loop (its classifier head) captured."""
    import bench.cell.main as cell_module

    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=32, eval_samples=16, max_steps=2, timing_warmup=1,
                    phases=False)
    heads, resolve = {}, cell_module.resolve_loop
    out = {}
    for cell in plan_cells(loops.available(), ["cpu"], ["fp32"], [run], seeds=[1, 2]):
        def capture(name, cell=cell):
            train = resolve(name)

            def wrapped(c, data, model, meter):
                heads[(c.loop, c.run.seed)] = model.classifier.weight.detach().clone()
                return train(c, data, model, meter)

            return wrapped

        cell_module.resolve_loop = capture
        try:
            out[(cell.loop, cell.run.seed)] = run_cell(cell, progress=False)
        finally:
            cell_module.resolve_loop = resolve
    return out, heads


@pytest.mark.slow
@pytest.mark.parametrize("loop", loops.available())
def test_a_seed_sets_head_order_and_dropout_the_same_in_every_loop(seeded_records, loop):
    records, heads = seeded_records
    for seed in (1, 2):
        r, m = records[(loop, seed)], records[("manual", seed)]
        assert r.status == "ok", r.reason
        assert r.seed == seed and r.run.seed == seed
        assert bool((heads[(loop, seed)] == heads[("manual", seed)]).all())  # the same head at one seed
        assert r.batch_order_checksum == m.batch_order_checksum  # the same batches in the same order
        # Same head, same first batch, same dropout masks: the same first loss.
        assert r.step_losses[0] == pytest.approx(m.step_losses[0], rel=1e-6)
    # Another seed: another head, another order, another first loss, in this loop as in manual.
    assert not bool((heads[(loop, 1)] == heads[(loop, 2)]).all())
    assert records[(loop, 1)].batch_order_checksum != records[(loop, 2)].batch_order_checksum
    assert records[(loop, 1)].step_losses[0] != records[(loop, 2)].step_losses[0]


@pytest.mark.slow
def test_predictions_in_the_record_reproduce_its_f1_and_accuracy(seeded_records, glue_dir):
    from bench.data import load_mrpc

    labels = load_mrpc(glue_dir)[0]["validation"]["label"][:16]
    for r in seeded_records[0].values():
        p = r.eval_predictions
        assert p.index == list(range(r.eval_examples)) and p.reference == labels
        assert len(p.predicted) == len(p.prob_positive) == 16
        assert all(0 <= q <= 1 for q in p.prob_positive)
        # The predicted label is the likelier class (a tie, at 6 digits, would say nothing).
        assert all(pred == int(q > 0.5) for pred, q in zip(p.predicted, p.prob_positive) if abs(q - 0.5) > 1e-6)
        acc, f1 = _accuracy_f1(p.predicted, p.reference)
        assert (acc, f1) == (r.eval_accuracy, r.eval_f1)
        assert bootstrap_ci95(p.predicted, p.reference) == (r.eval_accuracy_ci95, r.eval_f1_ci95)


# ---- the analysis and the report --------------------------------------------------------------

def _rec(loop, seed, predicted, reference, sps=10.0, curve=None, to_target=None):
    run = {"model": "tiny", "batch_size": 8, "max_steps": 40, "seed": seed, "defaults": "native", "timing_warmup": 1,
           "eval_every": 10 if curve else None, "target_f1": 0.8 if curve else None}
    acc, f1 = _accuracy_f1(predicted, reference)
    r = Record(loop=loop, device="cpu", precision="fp32", status="ok", seed=seed, cell_id=f"{loop}-{seed}",
               config={"loop": loop, "device": "cpu", "precision": "fp32", "repeat": 0, "run": run},
               samples_per_s=sps, eval_accuracy=acc, eval_f1=f1, eval_examples=len(reference),
               step_losses=[0.7, 0.6, 0.5], step_s=[0.1] * 3, timing_warmup_steps=1, batch_order_checksum=seed,
               eval_predictions={"index": list(range(len(reference))), "predicted": list(predicted),
                                 "reference": list(reference), "prob_positive": [0.9 if p else 0.1 for p in predicted]})
    if curve:
        r.eval_curve = [{"step": 10 * (i + 1), "wall_s": 5.0 * (i + 1), "eval_f1": f, "eval_accuracy": f}
                        for i, f in enumerate(curve)]
        r.time_to_target_s, r.time_to_target_step = to_target or (None, None)
    return r


@pytest.fixture
def three_seeds(tmp_path):
    """manual perfect; trainer wrong on 40 of 200 pairs at each of 3 seeds; accelerate the same as manual."""
    out = tmp_path / "run"
    for seed in (1, 2, 3):
        ref, a, b = _seed_case(40, seed=seed)
        curve_m, curve_t = [0.6, 0.8, 0.9 + seed / 100], [0.5, 0.6, 0.7 + seed / 100]
        for r in (_rec("manual", seed, a, ref, 10.0, curve_m, (10.0 * seed, 20)),
                  _rec("accelerate", seed, a, ref, 9.0, curve_m, (10.0 * seed, 20)),
                  _rec("trainer", seed, b, ref, 12.0, curve_t)):
            append_record(out, r)
    return out


def test_seeds_are_never_pooled_as_repeats(three_seeds):
    cells = cells_of(read_records(three_seeds))
    assert len(cells) == 9 and all(len(c.ok) == 1 for c in cells)
    assert {c.seed for c in cells} == {1, 2, 3} and {c.seedless_variant for c in cells} == {""}
    for (_, _, variant), group in comparison_groups(cells).items():
        assert len({c.seed for c in group}) == 1 and variant == f"seed {group[0].seed}"
        assert {row.loop for row in gap_rows(group)} == {"accelerate", "trainer"}  # never manual vs manual


def test_compare_matches_cells_seed_by_seed(three_seeds):
    from bench.analysis.compare import match

    cells = cells_of(read_records(three_seeds))
    pairs, only_a, only_b = match(cells, list(reversed(cells)), set())
    assert len(pairs) == 9 and not only_a and not only_b
    assert all(a.seed == b.seed and a.loop == b.loop for a, b in pairs)


def test_quality_rows_pair_each_loop_with_manual_across_seeds(three_seeds):
    (q,) = quality_rows(cells_of(read_records(three_seeds)))
    trainer, accelerate = q.loops["trainer"].comparison, q.loops["accelerate"].comparison
    assert [row.seed for row in trainer.per_seed] == [1, 2, 3]
    assert trainer.verdict == "worse" and trainer.across.f1_diff_ci95[1] < 0
    assert accelerate.verdict == "not told apart" and accelerate.across.f1_diff == 0
    assert q.loops["manual"].f1_mean == 1.0 and q.loops["manual"].f1_sd == 0.0
    assert q.loops["trainer"].f1_sd > 0
    t = q.loops["trainer"].time_to_target
    assert (t.reached, t.seeds, t.median_s) == (0, 3, float("inf"))
    assert q.loops["manual"].time_to_target.median_s == 20.0


def test_report_has_the_quality_section_curve_plot_and_bottom_line(three_seeds, tmp_path):
    text = render(read_records(three_seeds), tmp_path / "rep" / "report.md")
    assert f"## {QUALITY_HEADING}" in text
    section = text.split(f"## {QUALITY_HEADING}")[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith("| trainer | 3 |"))
    assert "**worse**" in row
    assert "| accelerate | 3 | 1.0000 ± 0.0000 |" in section and "**not told apart**" in section
    assert "| trainer | 0.8 | 0/3 | not reached |" in section and "| manual | 0.8 | 3/3 | 20.0 | 20 |" in section
    assert "| trainer | 2 |" in section and "40 of 200 |" in section  # per seed, the pairs that differ
    assert "![validation F1 over steps, cpu / fp32](report-cpu-fp32-f1.png)" in section
    assert (tmp_path / "rep" / "report-cpu-fp32-f1.png").stat().st_size > 0
    bottom = text.split("## Bottom line")[1].split("\n## ")[0]
    row = next(line for line in bottom.splitlines() if line.startswith("| **trainer** | 1.20× manual's |"))
    assert "**worse**" in row and "F1 0.8 never reached (0/3)" in row
    assert "**Holds:** cpu / fp32: trainer (" in bottom and "fine-tunes worse than manual across 3 seeds" in bottom


def _quality_text(records, path):
    text = render(records, path)
    return text.split("## Bottom line")[1].split("\n## ")[0], text.split(f"## {QUALITY_HEADING}")[1].split("\n## ")[0]


def test_out_of_the_box_is_weighed_against_the_tutorials_loop(three_seeds, tmp_path):
    """Under --defaults native the manual loop is the tutorial's (loops/native.py sets nothing for
    it): the report says each library's defaults are weighed against the tutorial's loop."""
    bottom, section = _quality_text(read_records(three_seeds), tmp_path / "a" / "report.md")
    assert "**cpu / fp32, across seeds 1, 2, 3 out of the box (`--defaults native`)**" in bottom
    assert "| **manual** (the tutorial's loop) |" in bottom and "| reference |" in bottom
    assert "Out of the box (`--defaults native`)" in section and "against the tutorial's loop" in section


def test_a_manual_loop_off_the_tutorials_recipe_is_not_called_the_tutorials(three_seeds, tmp_path):
    records = read_records(three_seeds)
    for r in records:
        if r.loop == "manual":
            r.config["run"]["weight_decay"] = 0.01
    bottom, section = _quality_text(records, tmp_path / "b" / "report.md")
    assert "the tutorial's loop" not in bottom and "tutorial loop's" not in bottom
    assert "| **manual** |" in bottom and "Out of the box" not in section


def test_at_the_tutorials_settings_a_difference_is_a_fault(three_seeds, tmp_path):
    records = read_records(three_seeds)
    for r in records:
        r.config["run"]["defaults"] = "tutorial"
    bottom, section = _quality_text(records, tmp_path / "c" / "report.md")
    assert "out of the box" not in bottom and "| **manual** (the tutorial's loop) |" in bottom
    assert "At the tutorial's settings (`--defaults tutorial`)" in section and "a fault of that loop" in section
    assert "](#do-the-loops-train-the-same-thing)" in section


def test_no_predictions_no_quality_section(three_seeds, tmp_path):
    records = read_records(three_seeds)
    for r in records:
        r.eval_predictions = {}
    text = render(records, tmp_path / "report.md")
    assert QUALITY_HEADING not in text and "Quality across seeds" not in text
    assert not list(tmp_path.glob("*-f1.png"))


def test_busy_runs_are_marked_where_the_quality_section_uses_their_times(three_seeds, tmp_path):
    """A run measured on a busy machine (bench/cell/load.py) still counts for quality, but each time
    figure it feeds says so: the bottom line's speed ratio, the per-seed seconds to target, and the
    busy note names the cell's seed."""
    records = read_records(three_seeds)
    for r in records:
        if (r.loop, r.seed) in (("manual", 3), ("accelerate", 2)):
            r.machine_busy, r.machine_busy_why = True, [f"other processes used 16% of the 2 cores ({r.loop})"]
    (q,) = quality_rows(cells_of(records))
    assert q.loops["manual"].busy_seeds == (3,) and q.loops["trainer"].busy_seeds == ()
    text = render(records, tmp_path / "rep" / "report.md")
    bottom = text.split("## Bottom line")[1].split("\n## ")[0]
    line = {loop: next(x for x in bottom.splitlines() if x.startswith(f"| **{loop}**")) for loop in
            ("manual", "accelerate", "trainer")}
    assert "samples/s ⚠ busy at 3 |" in line["manual"]  # its own run at seed 3
    assert "× manual's ⚠ busy at 2, 3 |" in line["accelerate"]  # its run at 2, manual's at 3
    assert "× manual's ⚠ busy at 3 |" in line["trainer"]
    section = text.split(f"## {QUALITY_HEADING}")[1].split("\n## ")[0]
    row = next(x for x in section.splitlines() if x.startswith("| accelerate | 2 |") and "of 200" in x)
    assert row.endswith("| 20 ⚠ busy | 20 |")
    row = next(x for x in section.splitlines() if x.startswith("| accelerate | 3 |") and "of 200" in x)
    assert row.endswith("| 30 | 30 ⚠ busy |")
    assert "manual fp32 seed 3: other processes used 16% of the 2 cores (manual)" in text
