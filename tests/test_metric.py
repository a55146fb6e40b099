"""The project's GLUE MRPC metric module against scikit-learn's definitions."""

import evaluate
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from bench.metrics import GLUE_MRPC_PATH


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(GLUE_MRPC_PATH)


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_random_labels(metric, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 500))
    refs = rng.integers(0, 2, n)
    preds = np.where(rng.random(n) < 0.7, refs, 1 - refs)
    # The tutorial's shape: add_batch per batch, compute at the end.
    for start in range(0, n, 8):
        metric.add_batch(predictions=preds[start:start + 8], references=refs[start:start + 8])
    got = metric.compute()
    assert got["accuracy"] == pytest.approx(accuracy_score(refs, preds), abs=1e-12)
    assert got["f1"] == pytest.approx(f1_score(refs, preds, pos_label=1, zero_division=0), abs=1e-12)


@pytest.mark.parametrize("preds,refs", [
    ([0, 0, 0], [0, 0, 0]),  # no positives at all: F1 0, accuracy 1
    ([1, 1, 1], [0, 0, 0]),
    ([0, 0, 0], [1, 1, 1]),
    ([1, 1, 0, 0], [1, 1, 0, 0]),
])
def test_edge_cases_match_sklearn(metric, preds, refs):
    got = metric.compute(predictions=preds, references=refs)
    assert got["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert got["f1"] == pytest.approx(f1_score(refs, preds, pos_label=1, zero_division=0))


def test_f1_is_of_the_positive_class(metric):
    # 3 true positives, 1 false positive, 0 false negatives -> F1(pos) = 6/7; F1(neg) would differ.
    got = metric.compute(predictions=[1, 1, 1, 1, 0], references=[1, 1, 1, 0, 0])
    assert got["f1"] == pytest.approx(6 / 7)


def test_rejects_labels_outside_mrpc(metric):
    with pytest.raises(ValueError, match="0 or 1"):
        metric.compute(predictions=[0, 2], references=[0, 1])


def test_bootstrap_interval_and_majority_baseline_against_scikit_learn():
    import random

    from sklearn.metrics import accuracy_score, f1_score

    from bench.cell.evaluation import _accuracy_f1, bootstrap_ci95, majority_baseline

    rng = random.Random(1)
    refs = [1] * 279 + [0] * 129  # MRPC validation's class balance
    preds = [r if rng.random() < 0.8 else 1 - r for r in refs]
    acc, f1 = _accuracy_f1(preds, refs)
    assert acc == pytest.approx(accuracy_score(refs, preds)) and f1 == pytest.approx(f1_score(refs, preds))
    (alo, ahi), (flo, fhi) = bootstrap_ci95(preds, refs)
    assert alo < acc < ahi and flo < f1 < fhi
    assert 0.02 < (fhi - flo) / 2 < 0.05  # about +-0.02-0.04 at n = 408
    assert bootstrap_ci95(preds, refs) == ((alo, ahi) and ([alo, ahi], [flo, fhi]))  # seeded: reproducible
    base = majority_baseline(refs)
    assert base["label"] == 1 and base["accuracy"] == pytest.approx(279 / 408)
    assert base["f1"] == pytest.approx(f1_score(refs, [1] * 408)) == pytest.approx(0.8122, abs=1e-4)


def test_bootstrap_in_one_numpy_draw_is_the_per_resample_scores():
    """The vectorised intervals score each resample exactly as `_accuracy_f1` does (the loop it
    replaced, on the same seeded resamples), and the seed pins them."""
    from bench.cell.evaluation import BOOTSTRAP_RESAMPLES, _accuracy_f1, bootstrap_ci95, bootstrap_indices

    rng = np.random.default_rng(3)
    refs = rng.integers(0, 2, 101).tolist()
    preds = [r if rng.random() < 0.75 else 1 - r for r in refs]
    idx = bootstrap_indices(len(refs))
    assert idx.shape == (BOOTSTRAP_RESAMPLES, len(refs))
    scores = [_accuracy_f1([preds[i] for i in row], [refs[i] for i in row]) for row in idx.tolist()]
    accs, f1s = sorted(a for a, _ in scores), sorted(f for _, f in scores)
    lo, hi = int(0.025 * BOOTSTRAP_RESAMPLES), int(0.975 * BOOTSTRAP_RESAMPLES) - 1
    assert bootstrap_ci95(preds, refs) == ([accs[lo], accs[hi]], [f1s[lo], f1s[hi]])
    # A resample with no positive predicted or true: F1 0, as in _accuracy_f1.
    assert bootstrap_ci95([0] * 5, [0] * 5) == ([1.0, 1.0], [0.0, 0.0])


def test_the_cell_scores_are_the_metric_modules(metric):
    """The cell counts accuracy and F1 itself (importing `evaluate` costs it a second): the same
    figures as the project's `evaluate` module, to the last bit."""
    from bench.cell.evaluation import _accuracy_f1

    rng = np.random.default_rng(7)
    for n in (1, 7, 408):
        refs = rng.integers(0, 2, n).tolist()
        preds = [r if rng.random() < 0.7 else 1 - r for r in refs]
        got = metric.compute(predictions=preds, references=refs)
        assert _accuracy_f1(preds, refs) == (got["accuracy"], got["f1"])
