"""The paired bootstrap: two loops' predictions on the same validation pairs, B minus A, with 95%
intervals, at one seed (``paired_difference``) and across seeds (``across_seeds``: resample the
seeds, then the pairs inside each drawn seed).  numpy, vectorised, seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def scores(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and F1 of the positive class over the last axis (GLUE MRPC's; F1 0 with no true
    positive), for any leading shape of resamples."""
    pred, ref = np.asarray(pred).astype(bool), np.asarray(ref).astype(bool)
    tp = np.sum(pred & ref, axis=-1)
    fp = np.sum(pred & ~ref, axis=-1)
    fn = np.sum(~pred & ref, axis=-1)
    acc = np.mean(pred == ref, axis=-1)
    denom = 2 * tp + fp + fn
    f1 = np.where(tp > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return acc, f1


@dataclass
class Difference:
    """B minus A on the same validation pairs, with 95% bootstrap intervals."""
    f1_diff: float
    acc_diff: float
    f1_diff_ci95: list
    acc_diff_ci95: list


@dataclass
class PairedDifference(Difference):
    """At one seed: both loops' scores, the paired difference, how many pairs they predicted apart."""
    f1_a: float
    f1_b: float
    acc_a: float
    acc_b: float
    pairs: int
    pairs_differing: int
    seed: int | None = None


@dataclass
class AcrossSeeds(Difference):
    """The mean over seeds of the per-seed difference; the interval holds the seeds' draw and the pairs'."""
    seeds: int
    interval: str = "two-level bootstrap"  # how the intervals were made (``across_seeds``)


# Below this many seeds, resampling the seeds understates their spread (3 seeds have 10 distinct
# resamples): the interval is the wider of the bootstrap's and Student's t over the per-seed differences.
T_BELOW_SEEDS = 10
# Student's t, two-sided 95% (the 0.975 quantile), by degrees of freedom 1..9: what the interval over
# n seeds (n - 1 degrees of freedom) is scaled by.
T_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622}


def t_interval(values) -> list[float] | None:
    """mean ± t(0.975, n-1) · sd / sqrt(n) over the per-seed values; None under two seeds."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or len(v) - 1 not in T_975:
        return None
    half = T_975[len(v) - 1] * float(np.std(v, ddof=1)) / np.sqrt(len(v))
    return [float(np.mean(v) - half), float(np.mean(v) + half)]


def _wider(boot: list[float], t: list[float] | None) -> list[float]:
    return boot if t is None else [min(boot[0], t[0]), max(boot[1], t[1])]


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.quantile(values, [0.025, 0.975])
    return [float(lo), float(hi)]


def paired_difference(pred_a, pred_b, ref, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> PairedDifference:
    """B minus A on the same pairs: the F1 and accuracy difference and their 95% paired bootstrap
    intervals (each resample draws the pairs once, for both)."""
    pred_a, pred_b, ref = (np.asarray(x, dtype=np.int8) for x in (pred_a, pred_b, ref))
    acc_a, f1_a = scores(pred_a, ref)
    acc_b, f1_b = scores(pred_b, ref)
    idx = np.random.default_rng(seed).integers(0, len(ref), size=(resamples, len(ref)), dtype=np.int32)
    acc_ra, f1_ra = scores(pred_a[idx], ref[idx])
    acc_rb, f1_rb = scores(pred_b[idx], ref[idx])
    return PairedDifference(f1_a=float(f1_a), f1_b=float(f1_b), acc_a=float(acc_a), acc_b=float(acc_b),
                            f1_diff=float(f1_b - f1_a), acc_diff=float(acc_b - acc_a),
                            f1_diff_ci95=_interval(f1_rb - f1_ra), acc_diff_ci95=_interval(acc_rb - acc_ra),
                            pairs=int(len(ref)), pairs_differing=int(np.sum(pred_a != pred_b)))


def across_seeds(per_seed: list[tuple], resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> AcrossSeeds:
    """The mean over seeds of B minus A, with a two-level bootstrap interval: each resample draws the
    seeds with replacement, then the pairs inside each drawn seed, and averages the drawn seeds'
    differences.  ``per_seed``: (pred_a, pred_b, ref) per seed, every seed on the same number of pairs."""
    a = np.stack([np.asarray(p[0], dtype=np.int8) for p in per_seed])
    b = np.stack([np.asarray(p[1], dtype=np.int8) for p in per_seed])
    ref = np.stack([np.asarray(p[2], dtype=np.int8) for p in per_seed])
    n_seeds, n = ref.shape
    acc_a, f1_a = scores(a, ref)
    acc_b, f1_b = scores(b, ref)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(resamples, n_seeds, 1), dtype=np.int32)
    pairs = rng.integers(0, n, size=(resamples, n_seeds, n), dtype=np.int32)
    r_ref = ref[seeds, pairs]
    acc_ra, f1_ra = scores(a[seeds, pairs], r_ref)
    acc_rb, f1_rb = scores(b[seeds, pairs], r_ref)
    f1_ci, acc_ci = _interval(np.mean(f1_rb - f1_ra, axis=1)), _interval(np.mean(acc_rb - acc_ra, axis=1))
    interval = "two-level bootstrap"
    if 2 <= n_seeds < T_BELOW_SEEDS:  # too few seeds for their resampling to show their spread
        f1_t, acc_t = t_interval(f1_b - f1_a), t_interval(acc_b - acc_a)
        wider = _wider(f1_ci, f1_t) != f1_ci or _wider(acc_ci, acc_t) != acc_ci
        f1_ci, acc_ci = _wider(f1_ci, f1_t), _wider(acc_ci, acc_t)
        interval = (f"the wider of the two-level bootstrap and a t-interval over the {n_seeds} seeds' differences"
                    + (" (the t-interval's, here)" if wider else " (the bootstrap's, here)"))
    return AcrossSeeds(seeds=int(n_seeds), f1_diff=float(np.mean(f1_b - f1_a)), acc_diff=float(np.mean(acc_b - acc_a)),
                       f1_diff_ci95=f1_ci, acc_diff_ci95=acc_ci, interval=interval)
