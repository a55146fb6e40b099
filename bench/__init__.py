"""bench: what do a hand-written PyTorch loop, an Accelerate loop and the HF Trainer cost and
deliver on the same task (BERT on GLUE MRPC)?

This package is the harness: configuration, data, models, measurement, records, sweep and CLI.
The five training loops live in the sibling package ``loops``.  ``bench.load(OUT)`` reads a run's
records as a pandas DataFrame; importing ``bench`` itself imports nothing heavy.
"""

__version__ = "0.1.0"


def load(out, superseded: bool = False):
    """OUT's records (a run's folder, or its results.jsonl) as a pandas DataFrame: one row per cell
    (its latest record; ``superseded=True``: every record, those a later run of the cell replaced
    marked in ``superseded``), one column per entry of the column registry (units in the names),
    then the record's other fields, ``run.<field>`` and its nested groups flattened with stable names
    (``bench/analysis/table.py`` lists them).  A results file that cannot be trusted is refused with
    the line that is wrong (``bench.records.ResultsFileError``)."""
    import pandas as pd

    from bench.analysis.table import columns, rows

    return pd.DataFrame(rows(out, superseded), columns=columns())
