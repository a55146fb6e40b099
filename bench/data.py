"""MRPC data: loading (Hub or a local copy of the Hub repository), pair tokenization, dynamic
padding, and the one sample order that all five loops share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.config import ConfigError, RunConfig

HUB_REPO = "nyu-mll/glue"
GLUE_DIR_ENV = "BENCH_GLUE_DIR"
OFFLINE_HINT = "hf download nyu-mll/glue --repo-type dataset --local-dir DIR"


class DataUnavailable(ConfigError):
    """Neither the local copy nor the Hub could give MRPC."""


def resolve_glue_dir(glue_dir: str | None) -> str | None:
    """--glue-dir wins over $BENCH_GLUE_DIR; the result is absolute so records are unambiguous."""
    chosen = glue_dir or os.environ.get(GLUE_DIR_ENV) or None
    return str(Path(chosen).expanduser().resolve()) if chosen else None


def load_mrpc(glue_dir: str | None):
    """The MRPC DatasetDict (train 3668 / validation 408 / test 1725) and where it came from.

    Quiet: the first load of a copy prints "Generating ... split" bars, which say nothing about the
    run and break the one-line errors of the CLI."""
    import datasets

    datasets.disable_progress_bars()
    # datasets logs a broken file's cause on a line of its own before raising a bare
    # DatasetGenerationError; the cause goes into the one-line error instead.
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        return _load_mrpc(glue_dir)
    finally:
        datasets.logging.set_verbosity(verbosity)
        datasets.enable_progress_bars()


def _why_unreadable(path: Path, exc: BaseException) -> str:
    """The cause of a failed load, in words: the datasets cache (not the data) when it is the cache
    that cannot be written, else the innermost error (a truncated file's, not the wrapper's)."""
    import datasets

    chain, e = [], exc
    while e is not None and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    cache = Path(datasets.config.HF_DATASETS_CACHE).expanduser().resolve()
    for e in chain:
        name = getattr(e, "filename", None)
        if isinstance(e, OSError) and name and Path(os.path.abspath(name)).is_relative_to(cache):
            return (f"the datasets cache {cache} cannot be written ({e.strerror or e}), not the data in {path}; "
                    "set HF_DATASETS_CACHE to a folder you can write to")
    inner = chain[-1]
    return f"could not read MRPC from {path}: {type(inner).__name__}: {_first_line(inner)}"


def _load_mrpc(glue_dir: str | None):
    from datasets import load_dataset

    if glue_dir:
        path = Path(glue_dir)
        if not (path / "mrpc").is_dir():
            raise DataUnavailable(
                f"no MRPC in {path} (expected {path / 'mrpc'}/*.parquet, the layout of the Hub repo {HUB_REPO}); "
                f"get it with: {OFFLINE_HINT}"
            )
        _check_files(path / "mrpc")
        try:
            return load_dataset(str(path), "mrpc", cache_dir=_content_cache(path)), f"local:{path}"
        except Exception as exc:  # a broken copy: say which and why, in one line
            raise DataUnavailable(_why_unreadable(path, exc)) from exc
    try:
        return load_dataset(HUB_REPO, "mrpc"), f"hub:{HUB_REPO}"
    except Exception as exc:
        raise DataUnavailable(
            f"could not load MRPC: tried the Hub ({HUB_REPO}: {type(exc).__name__}) and no --glue-dir or "
            f"${GLUE_DIR_ENV} was given; download a local copy with `{OFFLINE_HINT}` and pass --glue-dir DIR"
        ) from exc


def _check_files(folder: Path) -> None:
    """The split files a run reads, as the Hub repo has them: each split's parquet present, with MRPC's
    columns and at least one row (read from the files' footers, before the data library, whose
    own errors name its internals: a cast error, an empty batch)."""
    import pyarrow.parquet as pq

    for split in ("train", "validation"):
        files = sorted(folder.glob(f"{split}-*.parquet"))
        if not files:
            raise DataUnavailable(f"no {split} split in {folder} (expected {split}-*.parquet, the layout of the Hub "
                                  f"repo {HUB_REPO})")
        rows = 0
        for file in files:
            try:
                meta = pq.read_metadata(file)
            except Exception as exc:
                raise DataUnavailable(f"could not read MRPC from {file}: {type(exc).__name__}: {_first_line(exc)}") from None
            said = _columns_differ(list(meta.schema.to_arrow_schema().names))
            if said:
                raise DataUnavailable(f"{file}: the {split} split's columns are not MRPC's ({said})")
            rows += meta.num_rows
        if rows == 0:
            raise DataUnavailable(f"{folder}: the {split} split is empty")


def _content_cache(path: Path) -> str:
    """datasets' cache for a local copy, one per content of its MRPC files.  datasets keys a local
    folder's cache on the folder's name, the config and the files' mtimes, so two copies named
    alike (a ``glue`` folder anywhere) with files of one mtime share a cache: the second would be
    read as the first, whatever its labels.  A folder of the content's hash cannot be shared so."""
    import hashlib

    import datasets

    digest = hashlib.sha256()
    for file in sorted((path / "mrpc").glob("*.parquet")):
        digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return str(Path(datasets.config.HF_DATASETS_CACHE) / f"bench-mrpc-{digest.hexdigest()[:16]}")


def _rows_sha(raw, splits) -> str:
    """sha256 over each split's pairs and labels, in order."""
    import hashlib
    import json

    h = hashlib.sha256()
    for split in splits:
        cols = raw[split].with_format(None)
        h.update(f"{split}:{len(cols)}\n".encode())
        for a, b, label in zip(cols["sentence1"], cols["sentence2"], cols["label"]):
            h.update(json.dumps([a, b, label], ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class EpochShuffleSampler:
    """A shuffled order of the training set, fixed by (seed, epoch).

    All five loops draw batches through this one object, so with the same seed they see the same
    batches in the same order.  It owns its generator, so it consumes nothing from torch's global
    RNG (which dropout uses).  It is deliberately not a ``RandomSampler``: Accelerate would swap
    a RandomSampler for its own seedable one.  ``set_epoch`` follows the ``DistributedSampler``
    convention; Accelerate and the Trainer call it, the manual loop calls it itself.

    With ``lengths`` (group by length), the shuffled order is cut into mega-batches of 50 batches,
    each sorted by length, so that a batch holds pairs of similar length and carries little
    padding; the mega-batches stay in random order (as transformers' LengthGroupedSampler does).
    """

    MEGABATCH_BATCHES = 50

    def __init__(self, n: int, seed: int, lengths: list[int] | None = None, batch_size: int = 1):
        self.n, self.seed, self.epoch = n, seed, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        import torch

        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.lengths is None:
            return iter(order)
        size = self.MEGABATCH_BATCHES * self.batch_size
        grouped = []
        for start in range(0, self.n, size):
            grouped += sorted(order[start:start + size], key=lambda i: -self.lengths[i])
        return iter(grouped)

    def describe(self) -> str:
        grouping = f", grouped by length in mega-batches of {self.MEGABATCH_BATCHES} batches" if self.lengths else ""
        return f"EpochShuffleSampler(n={self.n}, seed={self.seed} + epoch{grouping})"


@dataclass
class PreparedData:
    """What the harness hands every loop: tokenized splits, the collator, the sample order."""

    train: object  # datasets.Dataset, torch format: input_ids, token_type_ids, attention_mask, labels
    validation: object
    collator: object  # DataCollatorWithPadding: pads each batch to its longest pair
    sampler: EpochShuffleSampler
    tokenizer: object
    source: str
    n_train: int
    n_validation: int
    fingerprint: str = ""  # data_fingerprint(): the pairs and labels actually used


COLUMNS = ("sentence1", "sentence2", "label", "idx")  # GLUE MRPC's, as the Hub repo has them


def _columns_differ(names: list[str]) -> str:
    """How a split's columns differ from MRPC's, in words ("" when they do not)."""
    missing = [c for c in COLUMNS if c not in names]
    extra = [c for c in names if c not in COLUMNS]
    if not (missing or extra):
        return ""
    parts = [f"missing {', '.join(missing)}" if missing else "", f"extra {', '.join(extra)}" if extra else ""]
    return "; ".join(p for p in parts if p) + f"; expected {', '.join(COLUMNS)}"


def check_splits(raw, source: str, train_samples: int | None, eval_samples: int | None) -> None:
    """Refuse, in one line naming the split (and the row and the value), what no cell could train or
    score right: a split missing or empty, a column missing or extra, a label other than 0 or 1 in
    the rows a run uses.  A -100 is ignored by the loss and by nothing else (a wrong accuracy recorded
    ``ok``); a -1 (GLUE's "no label") trains to the end and fails at evaluation."""
    for split, limit in (("train", train_samples), ("validation", eval_samples)):
        if split not in raw:
            raise DataUnavailable(f"MRPC from {source}: no {split} split (found: {', '.join(raw) or 'none'})")
        ds = raw[split]
        said = _columns_differ(ds.column_names)
        if said:
            raise DataUnavailable(f"MRPC from {source}: the {split} split's columns are not MRPC's ({said})")
        used = min(limit or len(ds), len(ds))
        if used == 0:
            raise DataUnavailable(f"MRPC from {source}: the {split} split is empty")
        for row, label in enumerate(ds.select(range(used))["label"]):
            if label not in (0, 1) or isinstance(label, bool):
                raise DataUnavailable(f"MRPC from {source}: the {split} split, row {row}: label {label!r}, not 0 or 1 "
                                      f"(-1 is GLUE's \"no label\", -100 the loss's \"ignore\"); a run needs every "
                                      f"label it uses")


def data_fingerprint(raw) -> str:
    """sha256 of the training and validation pairs and labels a run uses (after --train-samples /
    --eval-samples): two runs on different copies or slices of MRPC get different fingerprints."""
    return "sha256:" + _rows_sha(raw, ("train", "validation"))[:16]


def prepare(run: RunConfig, tokenizer) -> PreparedData:
    """The tutorial's preprocessing: pair tokenization with truncation, drop the text columns,
    ``label`` -> ``labels``, torch format, and padding per batch rather than to a fixed length."""
    from transformers import DataCollatorWithPadding

    raw, source = load_mrpc(run.glue_dir)
    check_splits(raw, source, run.train_samples, run.eval_samples)  # the preflight did; a cell holds it too
    if run.train_samples:
        raw["train"] = raw["train"].select(range(min(run.train_samples, len(raw["train"]))))
    if run.eval_samples:
        raw["validation"] = raw["validation"].select(range(min(run.eval_samples, len(raw["validation"]))))
    del raw["test"]  # GLUE's test labels are not for model selection; nothing here uses them
    fingerprint = data_fingerprint(raw)

    def tokenize_function(example):
        return tokenizer(example["sentence1"], example["sentence2"], truncation=True)

    tokenized = raw.map(tokenize_function, batched=True)
    tokenized = tokenized.remove_columns(["sentence1", "sentence2", "idx"])
    tokenized = tokenized.rename_column("label", "labels")
    tokenized.set_format("torch")
    lengths = [len(ids) for ids in tokenized["train"].with_format(None)["input_ids"]] if run.group_by_length else None
    return PreparedData(
        train=tokenized["train"],
        validation=tokenized["validation"],
        # pad_to_multiple_of rounds each batch's length up (e.g. to 8) so GPU matmuls hit
        # tensor-core-friendly shapes under mixed precision; it only adds padding on the CPU.
        collator=DataCollatorWithPadding(tokenizer=tokenizer, pad_to_multiple_of=run.pad_to_multiple_of),
        sampler=EpochShuffleSampler(len(tokenized["train"]), run.seed, lengths, run.batch_size),
        tokenizer=tokenizer,
        source=source,
        n_train=len(tokenized["train"]),
        n_validation=len(tokenized["validation"]),
        fingerprint=fingerprint,
    )
