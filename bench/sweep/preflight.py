"""What ``bench run`` refuses before any cell starts, in one place and in this order.

The plan's own refusals (an option out of range, a device or precision this machine cannot run,
more processes than cores, a loop or tracker whose package is missing) come first, while the plan is
made (``bench/commands/run.py``, ``plan_from_args``): nothing is read or written before them.  Then,
OUT made and locked, the checks below run in ``CHECKS`` order, each one line and exit 2:

1. the data: MRPC found and readable, its train and validation splits present, non-empty, with
   MRPC's columns and every label a run uses 0 or 1 (``bench/data.py``);
2. the model: its config readable, an encoder architecture, a two-label head, its weights files
   readable, its tokenizer its own (``bench/models/__init__.py``); under ``--finetune lora`` every
   target module a layer of the model LoRA can adapt (``bench/models/checks.py``);
3. the space: the temporary folder the cells write to has room for a cell's files;
4. OUT's records: a resumed or reused OUT holds runs of the same plan, data and code
   (``bench/sweep/outdir.py``).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.config import ConfigError, RunConfig

# A cell writes its record, its log and the libraries' temporary files (a Lightning or Trainer
# output folder, a compiled kernel cache): below this much free space a cell would train to its end
# and then fail to write what it measured.
MIN_FREE_BYTES = 64 * 2**20


@dataclass
class Preflight:
    """What the checks look at: the plan's run configs and cells, OUT and its records."""
    runs: list[RunConfig]
    cells: list
    out: Path
    records: list | None  # OUT's records (None on a node other than 0, which writes nothing)
    resume: bool = False


def check_data(p: Preflight) -> None:
    from bench.data import check_splits, load_mrpc

    run = p.runs[0]
    raw, source = load_mrpc(run.glue_dir)
    check_splits(raw, source, run.train_samples, run.eval_samples)


def check_model(p: Preflight) -> None:
    from bench.models.checks import check_model as check

    check(p.runs[0])
    seen = set()
    for run in p.runs:  # --finetune lora: its target modules, once per model and target list
        if run.finetune == "lora" and (run.model, run.lora_targets) not in seen:
            from bench.models.checks import check_lora

            seen.add((run.model, run.lora_targets))
            check_lora(run)


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def check_space(p: Preflight) -> None:
    """Room where the cells write their files (their temporary folders: checkpoints, compiled kernels,
    the libraries' own output).  OUT takes a record of some kilobytes a cell, and a disk that fills up
    while it is written is handled there (the record whole or not at all, the sweep stopped)."""
    folder = Path(tempfile.gettempdir())
    try:
        free = free_bytes(folder)
    except OSError as exc:
        raise ConfigError(f"{folder}: the temporary folder cannot be read ({exc.strerror or exc})") from None
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"{folder}: the temporary folder has {free / 2**20:.1f} MiB free, under the "
                          f"{MIN_FREE_BYTES // 2**20} MiB a cell needs to write its files; set TMPDIR to a folder with room")


def check_out(p: Preflight) -> None:
    from bench.sweep.outdir import check_comparable

    if p.records is not None:
        check_comparable(p.out, p.cells, p.records, resume=p.resume)


CHECKS = (check_data, check_model, check_space, check_out)


def run_checks(p: Preflight) -> None:
    """Each check in order; the first refusal is raised as one line (ConfigError: exit 2)."""
    for check in CHECKS:
        check(p)
