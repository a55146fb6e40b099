"""GLUE MRPC metric as an ``evaluate`` module: accuracy and F1 of the positive class.

The Hub's ``evaluate.load("glue", "mrpc")`` computes exactly these two numbers (with
scikit-learn); it cannot be fetched offline, so the project ships its own module with the same
definitions and the same ``add_batch`` / ``compute`` interface:

    metric = evaluate.load(bench.metrics.GLUE_MRPC_PATH)
    metric.add_batch(predictions=..., references=...)
    metric.compute()  # {"accuracy": ..., "f1": ...}

F1 is that of label 1 ("equivalent"); with no predicted and no true positive it is 0.0, as in
scikit-learn with ``zero_division=0``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "GLUE MRPC: accuracy and F1 of the positive class (label 1, 'equivalent')."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted labels (0 or 1).
    references: true labels (0 or 1).
Returns:
    accuracy: fraction of predictions equal to the references.
    f1: F1 score of label 1.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GlueMrpc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for NLU, 2018.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        pred = np.asarray(predictions, dtype=np.int64)
        ref = np.asarray(references, dtype=np.int64)
        if pred.shape != ref.shape:
            raise ValueError(f"predictions {pred.shape} and references {ref.shape} differ in shape")
        for name, arr in (("predictions", pred), ("references", ref)):
            bad = set(np.unique(arr).tolist()) - {0, 1}
            if bad:
                raise ValueError(f"MRPC {name} must be 0 or 1, got {sorted(bad)}")
        accuracy = float((pred == ref).mean()) if len(ref) else 0.0
        tp = int(((pred == 1) & (ref == 1)).sum())
        fp = int(((pred == 1) & (ref == 0)).sum())
        fn = int(((pred == 0) & (ref == 1)).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        return {"accuracy": accuracy, "f1": float(f1)}
