"""Does any loop fine-tune better?  Pure functions from the records' per-pair predictions to paired
quality comparisons across seeds; nothing here writes Markdown or draws.

- **Paired, per seed.** Two loops run at one seed were evaluated on the same validation pairs, so
  their F1 and accuracy difference is judged by a paired bootstrap: the same resampled pairs for both
  (``paired_difference``).  Overlapping per-cell intervals are the wrong test for it.
- **Across seeds.** A seed fixes the head's initialisation, the sample order and the dropout stream:
  the draw, which moves F1 more than any loop might.  The mean over seeds of the per-seed difference
  gets a two-level bootstrap interval: resample the seeds, then the pairs inside each drawn seed
  (``across_seeds``), so it holds both sources of doubt.  Each loop's seed spread is the sd of its F1.
- **Verdict.** ``better`` / ``worse`` when the across-seed interval of the F1 difference lies wholly
  above / below 0 with at least ``MIN_SEEDS`` seeds; ``no verdict`` with fewer (one seed's interval
  holds the pairs' doubt, not the draw's: it can lie far from 0 and still say nothing); else ``not
  told apart``; each with the reason.
- **Time to target** over seeds (``--eval-every K --target-f1 F``): the median, and MLPerf Training's
  mean without the fastest and the slowest run when there are at least 5; a seed that never reaches
  the target counts as slower than every seed that does (infinite), so it is never dropped silently.

numpy, vectorised, seeded: every figure is reproducible from the records alone.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from bench.analysis.bootstrap import AcrossSeeds, across_seeds, paired_difference
from bench.analysis.cells import LOOP_ORDER, REFERENCE_LOOP, CellStats, order_of
from bench.analysis.columns import EVAL_ACCURACY, EVAL_F1, SAMPLES_PER_S
from bench.analysis.machines import machine_count, same_machine
from bench.config import RunConfig
from bench.records import Record
from loops import native

MIN_SEEDS = 3  # fewer seeds give no interval across seeds worth a verdict
MLPERF_MIN_RUNS = 5  # MLPerf Training drops the fastest and the slowest run from 5 or more


# -- Per-pair predictions (the bootstrap over them: bench/analysis/bootstrap.py) --------------------

def predictions_of(record: Record) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(index, predicted, reference) of a record's validation pairs, sorted by index; None when the
    record holds none (records before per-pair predictions, failed cells)."""
    p = record.eval_predictions
    if p is None or not p.index:
        return None
    index = np.asarray(p.index, dtype=np.int64)
    order = np.argsort(index, kind="stable")
    return index[order], np.asarray(p.predicted, dtype=np.int8)[order], np.asarray(p.reference, dtype=np.int8)[order]


@dataclass
class LoopComparison:
    loop: str
    reference: str
    per_seed: list  # PairedDifference per seed both ran
    across: AcrossSeeds
    verdict: str  # better / worse / not told apart / no verdict (too few seeds)
    why: str


@dataclass
class TimeToTarget:
    target_f1: float
    seeds: int
    reached: int
    median_s: float  # inf: not reached at the median
    median_step: float
    mlperf_mean_s: float | None  # None under MLPERF_MIN_RUNS seeds
    mlperf_mean_step: float | None


@dataclass
class LoopQuality:
    seeds: int
    f1_mean: float | None
    f1_sd: float | None  # None at one seed
    acc_mean: float | None
    samples_per_s: float | None  # median over seeds
    # Median over the seeds both ran on one machine of this loop's samples/s over the reference's at
    # that seed (a seed's loops run side by side in one sweep; seeds may not: --resume elsewhere).
    speed_ratio: float | None = None
    # seed -> wall seconds to the target F1 at that seed (None: not reached), under --target-f1
    to_target_s: dict = field(default_factory=dict)
    # seed -> its runs and the reference's at that seed were measured on one machine
    beside_reference: dict = field(default_factory=dict)
    machines: int = 1  # the machines its own runs were measured on
    busy_seeds: tuple = ()  # the seeds whose run of this loop was not measured alone (a busy machine, or siblings)
    busy_kinds: dict = field(default_factory=dict)  # those seeds -> siblings.FOREIGN or siblings.SIBLINGS
    comparison: LoopComparison | None = None  # against the reference loop; None for it, or without shared pairs
    time_to_target: TimeToTarget | None = None


@dataclass
class QualityGroup:
    device: str
    precision: str
    variant: str  # without the seed
    loops: OrderedDict  # loop -> LoopQuality, in the registry's order
    machines: int = 1  # the machines its runs were measured on: above 1, a median over seeds mixes them
    # Some seed's loops were not all measured on one machine: times at that seed do not compare.
    seed_split: bool = False
    defaults: str = "tutorial"  # whose defaults its runs ran under (--defaults): one per group
    # The reference is the tutorial's loop as the tutorial writes it: no preset, and its defaults mode
    # sets nothing for it (loops/native.py declares no setting or machinery for manual).
    reference_is_tutorial: bool = False


def verdict(summary: AcrossSeeds, identical: bool, ran: tuple = ()) -> tuple[str, str]:
    """(``better`` / ``worse`` / ``not told apart`` / ``no verdict``, why) of a loop's F1 against the
    reference's, from ``across_seeds``'s summary; ``identical``: the two predicted the same label on
    every pair at every seed; ``ran``: the seeds either side ran (with enough of them, what would tell
    is each side at those seeds, not a new sweep)."""
    n = summary.seeds
    lo, hi = summary.f1_diff_ci95
    ci = f"95% CI {lo:+.3f} to {hi:+.3f}"
    if identical:
        return "not told apart", f"the same prediction on every pair at every seed ({n}): difference 0"
    if n < MIN_SEEDS:
        how = (f"each side at the seeds the sweep ran ({', '.join(map(str, ran))}; `--resume` with the same "
               f"`--seeds`)" if len(ran) >= MIN_SEEDS else "`--seeds 1,2,3`")
        return "no verdict", f"too few seeds ({n}; a verdict needs an interval across at least {MIN_SEEDS}: {how})"
    if lo > 0:
        return "better", f"the F1 difference's {ci} across {n} seeds and the pairs lies wholly above 0"
    if hi < 0:
        return "worse", f"the F1 difference's {ci} across {n} seeds and the pairs lies wholly below 0"
    return "not told apart", f"the F1 difference's {ci} across {n} seeds and the pairs includes 0"


# -- Time to target across seeds --------------------------------------------------------------------

def _mlperf_mean(values: np.ndarray) -> float | None:
    """Mean without the fastest and the slowest run (MLPerf Training), from MLPERF_MIN_RUNS runs."""
    if len(values) < MLPERF_MIN_RUNS:
        return None
    return float(np.mean(np.sort(values)[1:-1]))


def time_to_target(records: list[Record]) -> TimeToTarget | None:
    """Over one record per seed: how many reached the target, and the median and MLPerf mean of the
    wall seconds and steps to it (``inf``: not reached at the median / in the trimmed mean); None
    when the records evaluated during training without a target."""
    target = next((r.run.target_f1 for r in records if r.run.target_f1), None)
    if target is None or not records:
        return None
    secs = np.array([r.time_to_target_s if r.time_to_target_s is not None else np.inf for r in records])
    steps = np.array([r.time_to_target_step if r.time_to_target_step is not None else np.inf for r in records],
                     dtype=float)
    return TimeToTarget(target_f1=target, seeds=len(records), reached=int(np.sum(np.isfinite(secs))),
                        median_s=float(np.median(secs)), median_step=float(np.median(steps)),
                        mlperf_mean_s=_mlperf_mean(secs), mlperf_mean_step=_mlperf_mean(steps))


# -- The comparison of a report: groups, rows, curves -----------------------------------------------

def _first_with_predictions(c: CellStats) -> Record | None:
    """The cell's first ok run holding per-pair predictions (repeats of one seed repeat its timing)."""
    return next((r for r in c.ok if r.eval_predictions), None)


# The settings that make a loop the tutorial's beyond the hyperparameters a user always chooses (lr,
# batch size, length, seed, precision: loops/native.py's "what stays the user's"): the run config's
# defaults are the tutorial's.
TUTORIAL_RECIPE = ("scheduler", "warmup_steps", "weight_decay", "weight_decay_exempt", "adam_beta1", "adam_beta2",
                   "adam_eps", "max_grad_norm", "adamw", "grad_accum", "group_by_length", "pad_to_multiple_of",
                   "compile", "attn", "preset", "loop_options", "flip")


def tutorial_loop(run: RunConfig) -> bool:
    """A manual cell's run is the tutorial's loop as the tutorial writes it: every recipe setting at
    the tutorial's value (the run config's default), and its defaults mode declares nothing for manual
    (loops/native.py; --defaults tutorial sets every loop to the tutorial's)."""
    plain = RunConfig()
    if any(getattr(run, name) != getattr(plain, name) for name in TUTORIAL_RECIPE):
        return False
    return run.defaults == "tutorial" or not (native.SETTINGS.get(REFERENCE_LOOP) or native.MACHINERY.get(REFERENCE_LOOP))


def seed_groups(cells: list[CellStats]) -> OrderedDict:
    """(device, precision, variant without the seed) -> loop -> seed -> cell: the cells of each loop
    that differ only by seed, the unit of the across-seed comparison."""
    groups: OrderedDict = OrderedDict()
    for c in cells:
        if c.ok and not c.run.flip:
            groups.setdefault((c.device, c.precision, c.seedless_variant), OrderedDict()).setdefault(c.loop, {})[c.seed] = c
    for key, by_loop in groups.items():
        groups[key] = OrderedDict(sorted(by_loop.items(), key=lambda kv: order_of(kv[0], LOOP_ORDER)))
    return groups


def loop_summary(by_seed: dict) -> LoopQuality:
    """One loop across its seeds: F1 and accuracy mean and seed sd (sd needs two seeds), samples/s."""
    f1 = [c.median(EVAL_F1) for c in by_seed.values() if c.median(EVAL_F1) is not None]
    acc = [c.median(EVAL_ACCURACY) for c in by_seed.values() if c.median(EVAL_ACCURACY) is not None]
    sps = [c.median(SAMPLES_PER_S) for c in by_seed.values() if c.median(SAMPLES_PER_S) is not None]
    return LoopQuality(seeds=len(by_seed), f1_mean=statistics.fmean(f1) if f1 else None,
                       f1_sd=statistics.stdev(f1) if len(f1) > 1 else None,
                       acc_mean=statistics.fmean(acc) if acc else None,
                       samples_per_s=statistics.median(sps) if sps else None)


def speed_ratio(by_seed: dict, ref: dict | None) -> float | None:
    """Median over the seeds both ran on one machine of by_seed's samples/s over ref's."""
    ratios = []
    for seed in set(by_seed) & set(ref or {}):
        a, b = by_seed[seed], ref[seed]
        sa, sb = a.median(SAMPLES_PER_S), b.median(SAMPLES_PER_S)
        if same_machine(a.ok + b.ok) and sa and sb:
            ratios.append(sa / sb)
    return statistics.median(ratios) if ratios else None


def compare_seeds(ref: dict, by_seed: dict, ran: tuple = ()) -> tuple[list, AcrossSeeds | None, str, str]:
    """B (``by_seed``) against A (``ref``), each seed -> cell: per seed the paired difference, across
    the seeds both ran the mean difference, its interval and the verdict (None and no verdict when no
    seed compares).  Only seeds at which both recorded predictions on the same pairs with the same
    labels are compared.  ``ran``: the sweep's seeds (default: either side's), advised when too few."""
    per_seed, inputs = [], []
    for seed in sorted(set(by_seed) & set(ref), key=lambda s: (s is None, s)):
        ra, rb = _first_with_predictions(ref[seed]), _first_with_predictions(by_seed[seed])
        pa, pb = (predictions_of(r) if r else None for r in (ra, rb))
        if pa is None or pb is None or not (np.array_equal(pa[0], pb[0]) and np.array_equal(pa[2], pb[2])):
            continue  # not the same pairs: no paired comparison
        row = paired_difference(pa[1], pb[1], pa[2])
        row.seed = seed
        per_seed.append(row)
        inputs.append((pa[1], pb[1], pa[2]))
    if not per_seed or len({len(x[2]) for x in inputs}) > 1:
        return per_seed, None, "", "no seed at which both recorded predictions on the same validation pairs"
    summary = across_seeds(inputs)
    identical = all(row.pairs_differing == 0 for row in per_seed)
    ran = tuple(sorted(seed for seed in set(ran) | set(by_seed) | set(ref) if seed is not None))
    word, why = verdict(summary, identical, ran)
    return per_seed, summary, word, why


def compare_loops(by_loop: dict, reference: str = REFERENCE_LOOP) -> list[LoopComparison]:
    """Each loop of one seed group against the reference loop (``compare_seeds``)."""
    ref = by_loop.get(reference)
    if ref is None:
        return []
    return [LoopComparison(loop=loop, reference=reference, per_seed=per_seed, across=summary, verdict=word, why=why)
            for loop, by_seed in by_loop.items() if loop != reference
            for per_seed, summary, word, why in [compare_seeds(ref, by_seed)] if summary is not None]


def quality_rows(cells: list[CellStats]) -> list[QualityGroup]:
    """Per seed group that holds per-pair predictions: each loop's summary across seeds, its paired
    comparison with the manual loop, and its time to target; empty when no record has predictions."""
    out = []
    for (device, precision, variant), by_loop in seed_groups(cells).items():
        if not any(_first_with_predictions(c) for by_seed in by_loop.values() for c in by_seed.values()):
            continue
        comparisons = {row.loop: row for row in compare_loops(by_loop)}
        loops = OrderedDict()
        for loop, by_seed in by_loop.items():
            runs = [c.ok[0] for c in by_seed.values()]
            loops[loop] = loop_summary(by_seed)
            loops[loop].comparison = comparisons.get(loop)
            ref = by_loop.get(REFERENCE_LOOP) or {}
            loops[loop].speed_ratio = speed_ratio(by_seed, ref)
            loops[loop].beside_reference = {seed: same_machine(c.ok + ref[seed].ok) for seed, c in by_seed.items()
                                            if seed in ref}
            loops[loop].machines = max(machine_count([r for c in by_seed.values() for r in c.ok]), 1)
            loops[loop].busy_seeds = tuple(sorted((seed for seed, c in by_seed.items() if c.busy), key=str))
            loops[loop].busy_kinds = {seed: c.busy_kind for seed, c in by_seed.items() if c.busy}
            loops[loop].time_to_target = time_to_target(runs) if any(r.eval_curve for r in runs) else None
            if loops[loop].time_to_target:
                loops[loop].to_target_s = {seed: c.ok[0].time_to_target_s for seed, c in by_seed.items()}
        runs = [r for by_seed in by_loop.values() for c in by_seed.values() for r in c.ok]
        seeds = {seed for by_seed in by_loop.values() for seed in by_seed}
        split = any(not same_machine([r for by_seed in by_loop.values() if seed in by_seed for r in by_seed[seed].ok])
                    for seed in seeds)
        ref_runs = [c.run for c in (by_loop.get(REFERENCE_LOOP) or {}).values()]
        defaults = next((c.run.defaults for by_seed in by_loop.values() for c in by_seed.values()), None) or "tutorial"
        out.append(QualityGroup(device=device, precision=precision, variant=variant, loops=loops,
                                machines=max(machine_count(runs), 1), seed_split=split, defaults=defaults,
                                reference_is_tutorial=bool(ref_runs) and all(tutorial_loop(run) for run in ref_runs)))
    return out


def f1_curves(by_loop: dict) -> dict:
    """Per loop, validation F1 over the steps evaluated at every seed: the mean over seeds and the
    lowest and highest seed (the band); loops without curves left out."""
    out = {}
    for loop, by_seed in by_loop.items():
        curves = [{e.step: e.eval_f1 for e in c.ok[0].eval_curve} for c in by_seed.values()]
        curves = [cv for cv in curves if cv]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(cv) for cv in curves)))
        if not steps:
            continue
        values = np.array([[cv[s] for s in steps] for cv in curves])
        out[loop] = {"step": steps, "mean": values.mean(axis=0).tolist(), "lo": values.min(axis=0).tolist(),
                     "hi": values.max(axis=0).tolist(), "seeds": len(curves)}
    return out
