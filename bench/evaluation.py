"""One evaluation for all three loops, after training: the tutorial's eval loop with the GLUE
MRPC metric (accuracy, F1 of the positive class), over the whole validation split."""

from __future__ import annotations

import time


def evaluate_model(model, data, device: str, autocast_dtype, batch_size: int) -> dict:
    import evaluate
    import torch
    from torch.utils.data import DataLoader

    from bench.metrics import GLUE_MRPC_PATH

    metric = evaluate.load(GLUE_MRPC_PATH)
    eval_dataloader = DataLoader(data.validation, batch_size=batch_size, collate_fn=data.collator)
    dev = torch.device(device)
    model.to(dev)
    model.eval()
    t0 = time.perf_counter()
    n = 0
    for batch in eval_dataloader:
        batch = {k: v.to(dev) for k, v in batch.items()}
        # Evaluated at the precision the model was trained at.
        with torch.no_grad(), torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(**batch)
        predictions = torch.argmax(outputs.logits, dim=-1)
        metric.add_batch(predictions=predictions.cpu(), references=batch["labels"].cpu())
        n += len(predictions)
    scores = metric.compute()
    return {"eval_accuracy": scores["accuracy"], "eval_f1": scores["f1"], "eval_examples": n,
            "eval_s": time.perf_counter() - t0}
