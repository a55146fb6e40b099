"""One evaluation for all five loops, after training: the tutorial's eval loop with the GLUE
MRPC metric (accuracy, F1 of the positive class), over the whole validation split.

Under DDP each rank evaluates every world-size-th pair (no padding, so no duplicates), rank 0
gathers (index, prediction, label) triples and checks that they cover each pair exactly once."""

from __future__ import annotations

import time

from bench.cell import dist


def evaluate_model(model, data, device: str, autocast_dtype, batch_size: int, intervals: bool = True) -> dict | None:
    """Scores on rank 0 (None on other ranks); ``intervals``: with bootstrap intervals and the
    majority baseline (left out of the evaluations inside a time-to-accuracy run, whose wall clock
    they would lengthen)."""
    import torch
    from torch.utils.data import DataLoader

    n = len(data.validation)
    shard = list(range(dist.rank(), n, dist.world_size()))
    eval_dataloader = DataLoader(data.validation.select(shard), batch_size=batch_size, collate_fn=data.collator)
    dev = torch.device(dist.torch_device(device))
    model.to(dev)
    model.eval()
    t0 = time.perf_counter()
    predictions, references, positive = [], [], []
    for batch in eval_dataloader:
        batch = {k: v.to(dev) for k, v in batch.items()}
        # Evaluated at the precision the model was trained at.
        with torch.no_grad(), torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(**batch)
        predictions += torch.argmax(outputs.logits, dim=-1).tolist()
        references += batch["labels"].tolist()
        positive += torch.softmax(outputs.logits.float(), dim=-1)[:, 1].tolist()  # P(equivalent), for the record
    eval_s = time.perf_counter() - t0
    gathered = dist.gather_to_rank0((shard, predictions, references, eval_s, positive), device)
    if gathered is None:
        return None
    triples = sorted((i, p, r) for idx, preds, refs, _, _ in gathered for i, p, r in zip(idx, preds, refs))
    seen = [i for i, _, _ in triples]
    if seen != list(range(n)):
        raise RuntimeError(f"evaluation covered {len(set(seen))} distinct of {n} validation pairs "
                           f"({len(seen) - len(set(seen))} duplicates)")
    # GLUE MRPC's definitions, as the project's ``evaluate`` module has them (bench/metrics/glue_mrpc;
    # tests/test_metric.py holds the two equal): importing ``evaluate`` costs a cell a second
    # (it imports scipy.stats) for two counts over 408 pairs.
    accuracy, f1 = _accuracy_f1([p for _, p, _ in triples], [r for _, _, r in triples])
    out = {"eval_accuracy": accuracy, "eval_f1": f1, "eval_examples": n,
           "eval_s": max(g[3] for g in gathered)}
    if intervals:
        t0 = time.perf_counter()
        preds, refs = [p for _, p, _ in triples], [r for _, _, r in triples]
        acc_ci, f1_ci = bootstrap_ci95(preds, refs)
        out.update(eval_accuracy_ci95=acc_ci, eval_f1_ci95=f1_ci, eval_majority_baseline=majority_baseline(refs))
        prob = {i: q for idx, _, _, _, probs in gathered for i, q in zip(idx, probs)}
        out["eval_predictions"] = prediction_lists(triples, prob)
        out["eval_intervals_s"] = time.perf_counter() - t0  # the cell's wall_s takes it (not a Record field)
    return out


def prediction_lists(triples: list[tuple[int, int, int]], prob: dict[int, float]) -> dict:
    """The record's per-pair evaluation, compact: parallel lists sorted by validation index."""
    return {"index": [i for i, _, _ in triples], "predicted": [p for _, p, _ in triples],
            "reference": [r for _, _, r in triples], "prob_positive": [round(prob[i], 6) for i, _, _ in triples]}


def _accuracy_f1(preds: list[int], refs: list[int]) -> tuple[float, float]:
    tp = sum(1 for p, r in zip(preds, refs) if p == 1 and r == 1)
    fp = sum(1 for p, r in zip(preds, refs) if p == 1 and r == 0)
    fn = sum(1 for p, r in zip(preds, refs) if p == 0 and r == 1)
    acc = sum(1 for p, r in zip(preds, refs) if p == r) / len(refs)
    return acc, (2 * tp / (2 * tp + fp + fn) if tp else 0.0)


BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_ci95(preds: list[int], refs: list[int]) -> tuple[list[float], list[float]]:
    """95% percentile intervals of accuracy and F1, resampling the validation pairs with replacement
    (seeded, so a record's interval is reproducible from its predictions).  At n = 408 a score is
    known to about +-0.02-0.04: two loops whose intervals overlap are not told apart by it.

    All resamples at once with numpy (``bootstrap_indices``): the same scores per resample as
    ``_accuracy_f1``, in milliseconds instead of the second a Python loop over 1000 x n draws took.
    (Records made before this drew the resamples with ``random.Random(0)``: their intervals differ
    in the third decimal, as two seeds do, and stay as they were recorded.)"""
    import numpy as np

    p, r = np.asarray(preds, dtype=np.int64), np.asarray(refs, dtype=np.int64)
    idx = bootstrap_indices(len(r))
    ps, rs = p[idx], r[idx]
    accs = (ps == rs).mean(axis=1)
    tp = ((ps == 1) & (rs == 1)).sum(axis=1)
    fp = ((ps == 1) & (rs == 0)).sum(axis=1)
    fn = ((ps == 0) & (rs == 1)).sum(axis=1)
    f1s = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    accs.sort()
    f1s.sort()
    lo, hi = int(0.025 * BOOTSTRAP_RESAMPLES), int(0.975 * BOOTSTRAP_RESAMPLES) - 1
    return [float(accs[lo]), float(accs[hi])], [float(f1s[lo]), float(f1s[hi])]


def bootstrap_indices(n: int):
    """The resamples: ``BOOTSTRAP_RESAMPLES`` rows of n indices drawn with replacement, seeded."""
    import numpy as np

    return np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def majority_baseline(refs: list[int]) -> dict:
    """What predicting the more frequent class for every pair scores: the floor a fine-tuned model
    must clear (MRPC validation: 279 of 408 pairs are paraphrases, so accuracy 0.6838, F1 0.8122)."""
    label = 1 if 2 * sum(refs) >= len(refs) else 0
    acc, f1 = _accuracy_f1([label] * len(refs), refs)
    return {"label": label, "accuracy": acc, "f1": f1}
