"""One evaluation for all three loops, after training: the tutorial's eval loop with the GLUE
MRPC metric (accuracy, F1 of the positive class), over the whole validation split.

Under DDP each rank evaluates every world-size-th pair (no padding, so no duplicates), rank 0
gathers (index, prediction, label) triples and checks that they cover each pair exactly once."""

from __future__ import annotations

import time

from bench import dist


def evaluate_model(model, data, device: str, autocast_dtype, batch_size: int) -> dict | None:
    """Scores on rank 0 (None on other ranks)."""
    import evaluate
    import torch
    from torch.utils.data import DataLoader

    from bench.metrics import GLUE_MRPC_PATH

    n = len(data.validation)
    shard = list(range(dist.rank(), n, dist.world_size()))
    eval_dataloader = DataLoader(data.validation.select(shard), batch_size=batch_size, collate_fn=data.collator)
    dev = torch.device(dist.torch_device(device))
    model.to(dev)
    model.eval()
    t0 = time.perf_counter()
    predictions, references = [], []
    for batch in eval_dataloader:
        batch = {k: v.to(dev) for k, v in batch.items()}
        # Evaluated at the precision the model was trained at.
        with torch.no_grad(), torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(**batch)
        predictions += torch.argmax(outputs.logits, dim=-1).tolist()
        references += batch["labels"].tolist()
    eval_s = time.perf_counter() - t0
    gathered = dist.gather_to_rank0((shard, predictions, references, eval_s), device)
    if gathered is None:
        return None
    triples = sorted((i, p, r) for idx, preds, refs, _ in gathered for i, p, r in zip(idx, preds, refs))
    seen = [i for i, _, _ in triples]
    if seen != list(range(n)):
        raise RuntimeError(f"evaluation covered {len(set(seen))} distinct of {n} validation pairs "
                           f"({len(seen) - len(set(seen))} duplicates)")
    metric = evaluate.load(GLUE_MRPC_PATH)
    # The tutorial's shape: add_batch per batch, compute at the end.
    for start in range(0, n, batch_size):
        chunk = triples[start:start + batch_size]
        metric.add_batch(predictions=[p for _, p, _ in chunk], references=[r for _, _, r in chunk])
    scores = metric.compute()
    return {"eval_accuracy": scores["accuracy"], "eval_f1": scores["f1"], "eval_examples": n,
            "eval_s": max(g[3] for g in gathered)}
