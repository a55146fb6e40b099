import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GLUE_DIR = (ROOT.parent / "shared" / "data" / "glue").resolve()

# Tests never reach for the Hub: an attempt fails at once instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def glue_dir() -> str:
    if not (GLUE_DIR / "mrpc").is_dir():
        pytest.fail(f"the MRPC mirror is expected at {GLUE_DIR} (../shared/data/glue beside the checkout)")
    return str(GLUE_DIR)


@pytest.fixture
def tiny_run(glue_dir):
    """A few steps of a tiny random BERT on a slice of real MRPC."""
    from bench.config import RunConfig

    def make(**overrides):
        base = dict(model="tiny", glue_dir=glue_dir, train_samples=64, eval_samples=48, max_steps=6,
                    timing_warmup=2)
        base.update(overrides)
        return RunConfig(**base)

    return make
