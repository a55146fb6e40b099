"""bench: what do a hand-written PyTorch loop, an Accelerate loop and the HF Trainer cost and
deliver on the same task (BERT on GLUE MRPC)?

This package is the harness: configuration, data, models, measurement, records, sweep and CLI.
The five training loops live in the sibling package ``loops``.
"""

__version__ = "0.1.0"
