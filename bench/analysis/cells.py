"""Cells: the records of one cell over its repeats, summarised, and the groups they are compared in.

A cell is a loop on a device at a precision under one run config; its repeats share a key.  Cells of
one device, precision and variant (one per loop) are expected to train the same thing at identical
settings, and are compared against their manual loop.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import OrderedDict
from typing import Callable

from bench.config import RunConfig
from bench.analysis.siblings import Busy, Overlaps, worse
from bench.records import Record, latest_per_cell
from bench.records.portable import portable_tree
from loops import LOOPS, REFERENCE_LOOP

LOOP_ORDER = tuple(LOOPS)
PRECISION_ORDER = ("fp32", "tf32", "bf16", "fp16")

# A value of a record (a typed accessor, or a column of bench.analysis.columns).
Getter = Callable[[Record], "float | None"]

# Settings that name a loop's own machinery rather than what it trains; shown, never flagged.  Each
# record adds the keys its loop declared (``loop_specific_keys``: the keys of its LoopResult.extra).
LOOP_SPECIFIC = {"param_groups", "grad_scaler_final_scale", "device", "loop_specific_keys", "extra_work_per_step",
                 "compiled", "h2d_non_blocking"}  # how a loop moves its batches is its machinery, not its math


def loop_specific(settings_of_loops: dict) -> set:
    """Generic loop-specific keys, those each loop declared, and (records before the declaration)
    keys named after their loop."""
    keys = set(LOOP_SPECIFIC)
    for loop, settings in settings_of_loops.items():
        keys |= set(settings.get("loop_specific_keys") or ())
        keys |= {k for k in settings if k.startswith(f"{loop}_")}
    return keys


def order_of(value, order):
    return order.index(value) if value in order else len(order)


def settings_of(run: RunConfig) -> dict:
    """The run config as cells are compared by: its paths by their portable names.  A committed
    folder's records name what was used, not where it lay (``bench.records.portable``); a run added to it
    from a clone elsewhere names the same data by another absolute path, and is the same cell."""
    return portable_tree(run.to_dict())


def run_json(run: RunConfig) -> str:
    return json.dumps(settings_of(run), sort_keys=True)


def group_key(r: Record) -> tuple:
    """The cell without its repeat index: repeats of one cell share a key."""
    return r.loop, r.device, r.precision, run_json(r.run)


# What may tell the cells of one report apart, and how a variant names it: the plan's axes first,
# in these words; any other run-config field that differs between the records is named too, so that
# cells are only ever compared or paired at every field equal.
VARYING = ("preset", "batch_size", "defaults", "seed")


def per_loop_fields() -> set[str]:
    """Run-config fields that differ between the loops of one comparison on purpose (each library's
    own defaults under ``--defaults native``, ``loops/native.py``), the flip ``bench explain`` made,
    and the loop's own options: no part of what pairs two loops' cells."""
    from loops.native import SETTINGS

    return {key for settings in SETTINGS.values() for key in settings} | {"flip", "loop_options"}


def label(value) -> str:
    """A run-config value as a short label in a safe character set (a model path, say): a variant's
    name is a key and a heading, never a carrier of Markdown or HTML."""
    said = re.sub(r"[^\w.:/+=-]+", "_", str(value)).strip("_")
    return said[:40] + ("…" if len(said) > 40 else "") or "_"


def preset_fields() -> set[str]:
    """The fields a preset sets (``bench/sweep/presets.py``): said by the preset's name."""
    from bench.sweep.presets import PRESETS

    return {key for per_device in PRESETS.values() for fields in per_device.values() for key in fields}


def variant_of(run: RunConfig, varying: set[str], flip: bool = True) -> str:
    """A short name for what distinguishes this cell's run config when one report holds several
    (tutorial settings beside a preset, a batch-size sweep); empty when there is one.  Without
    ``flip``: what the cell is paired by (a flip is compared with the cell it flips)."""
    parts = []
    if "preset" in varying:
        parts.append(run.preset or "tutorial")
    if "batch_size" in varying:
        parts.append(f"bs {run.batch_size}")
    if "defaults" in varying:
        parts.append(run.defaults or "tutorial")
    if "seed" in varying:  # seeds are never pooled as repeats of one cell
        parts.append(f"seed {run.seed}")
    for key in sorted(varying - set(VARYING) - (preset_fields() if "preset" in varying else set())):
        parts.append(f"{key} {label(getattr(run, key))}")  # anything else the records differ in (a preset's own: its name)
    if run.flip and flip:
        parts.append(f"flip {run.flip}")
    return " ".join(parts)


def varying_of(records: list[Record]) -> set[str]:
    """The run-config fields the records differ in, the per-loop ones apart."""
    fields = set(records[0].run.to_dict()) - per_loop_fields() if records else set()
    settings = [settings_of(r.run) for r in records]
    return {key for key in fields if len({json.dumps(s.get(key), sort_keys=True) for s in settings}) > 1}


class CellStats:
    """The repeats of one cell, summarised.  Values are read through getters
    (``c.median(columns.EVAL_F1)``, ``c.median(lambda r: r.timed_s)``), never by field name."""

    def __init__(self, records: list[Record], varying: set[str], overlaps: Overlaps | None = None):
        self.records = records
        # The report's runs by node, where this cell's siblings are found (default: its own runs alone).
        self.overlaps = overlaps
        self._verdicts: list[Busy] | None = None
        self.ok = [r for r in records if r.status == "ok"]
        first = records[0]
        self.loop, self.device, self.precision = first.loop, first.device, first.precision
        self.run: RunConfig = first.run
        self.variant = variant_of(self.run, varying)
        # The seed (head init, sample order, dropout), and the variant without it: what the cells of
        # one loop at different seeds share (bench/analysis/quality.py compares the loops across seeds).
        self.seed = first.seed if first.seed is not None else self.run.seed
        self.seedless_variant = variant_of(self.run, varying - {"seed"})
        # Every field of the plan but the loop's own: what pairs this cell with another loop's (and a
        # flip with the cell it flips); and its name.
        settings = settings_of(self.run)
        self.pairing = json.dumps({key: settings.get(key) for key in sorted(varying)}, sort_keys=True)
        self.pairing_name = variant_of(self.run, varying, flip=False)

    @property
    def first(self) -> Record:
        """The first ok run (the one whose step lists and settings the tables show), else the first."""
        return self.ok[0] if self.ok else self.records[0]

    def values(self, get: Getter) -> list:
        return [v for v in (get(r) for r in self.ok) if v is not None]

    def median(self, get: Getter):
        v = self.values(get)
        return statistics.median(v) if v else None

    def spread(self, get: Getter):
        v = self.values(get)
        return (min(v), max(v)) if len(v) > 1 else None

    def cv(self, get: Getter):
        v = self.values(get)
        return statistics.stdev(v) / statistics.fmean(v) if len(v) > 1 and statistics.fmean(v) else None

    def startup_s(self) -> float | None:
        """Median seconds before the first step (the records' ``setup_s.total_s``)."""
        return self.median(lambda r: r.setup_s.total_s if r.setup_s else None)

    def f1_ci95(self) -> list | None:
        """The F1 interval of the cell's first run that has one (bootstrap over the validation pairs)."""
        return next((r.eval_f1_ci95 for r in self.ok if r.eval_f1_ci95), None)

    def phases(self) -> dict | None:
        """Mean seconds per step in each phase (bench/meter/phase_clock.py), the median over the repeats that
        recorded a split; None when none did."""
        from bench.records.vocabulary import PHASES

        split = [r.phase_s_mean for r in self.ok if r.phase_s_mean]
        return {p: statistics.median(s[p] for s in split) for p in PHASES} if split else None

    def verdicts(self) -> list[Busy]:
        """Each ok run's busy verdict, sibling cells told apart from other load (bench/analysis/siblings.py)."""
        if self._verdicts is None:
            overlaps = self.overlaps or Overlaps(self.records)
            self._verdicts = [overlaps.verdict(r) for r in self.ok]
        return self._verdicts

    @property
    def busy(self) -> bool:
        """Some run of this cell was measured while the machine was busy (bench.records.vocabulary.BUSY_RULE)
        or beside sibling cells sharing its cores or GPU: no clean speed figure either way."""
        return any(v.busy for v in self.verdicts())

    @property
    def busy_kind(self) -> str:
        """Which: ``siblings.FOREIGN`` (other load) over ``siblings.SIBLINGS``; '' when neither."""
        return worse(*(v.kind for v in self.verdicts()))

    def narrowed(self, records: list[Record]) -> "CellStats":
        """The same cell over some of its runs (those of one node and GPU model)."""
        import copy

        twin = copy.copy(self)
        twin.records, twin.ok, twin._verdicts = records, [r for r in records if r.status == "ok"], None
        return twin



def cells_of(records: list[Record]) -> list[CellStats]:
    groups: OrderedDict = OrderedDict()
    latest = latest_per_cell(records)
    varying = varying_of(latest)
    for r in latest:
        groups.setdefault(group_key(r), []).append(r)
    overlaps = Overlaps(records)  # every run, a superseded one too: it ran beside the others all the same
    cells = [CellStats(rs, varying, overlaps) for rs in groups.values()]
    cells.sort(key=lambda c: (c.device, c.variant, order_of(c.precision, PRECISION_ORDER), order_of(c.loop, LOOP_ORDER)))
    return cells


# Past this many seeds the per-cell tables and plots take each cell over its seeds (medians, paired
# by seed), so that a report's size follows the cells that differ, not the seeds; the quality
# comparison stays seed by seed.
SEED_DETAIL = 10


def seed_count(cells: list[CellStats]) -> int:
    return len({c.seed for c in cells})


def cells_over_seeds(records: list[Record]) -> list[CellStats]:
    """One cell per loop, device, precision and run config but the seed: its runs over every seed."""
    groups: OrderedDict = OrderedDict()
    latest = latest_per_cell(records)
    varying = varying_of(latest) - {"seed"}
    for r in latest:
        run = {k: v for k, v in settings_of(r.run).items() if k != "seed"}
        groups.setdefault((r.loop, r.device, r.precision, json.dumps(run, sort_keys=True)), []).append(r)
    overlaps = Overlaps(records)
    cells = [CellStats(rs, varying, overlaps) for rs in groups.values()]
    cells.sort(key=lambda c: (c.device, c.variant, order_of(c.precision, PRECISION_ORDER), order_of(c.loop, LOOP_ORDER)))
    return cells


def comparison_groups(cells: list[CellStats]) -> OrderedDict:
    """Cells that should train the same thing: same device, precision and variant, one per loop."""
    groups: OrderedDict = OrderedDict()
    for c in cells:
        groups.setdefault((c.device, c.precision, c.variant), []).append(c)
    return groups


def manual_cell(group: list[CellStats]) -> CellStats | None:
    """The reference of a comparison group: its manual loop, if it ran."""
    return next((c for c in group if c.loop == REFERENCE_LOOP and c.ok), None)


def tutorial_baseline(cells: list[CellStats]) -> CellStats | None:
    """The manual loop in fp32 at the tutorial's settings (no preset, batch 8), else manual fp32."""
    manual = [c for c in cells if c.loop == REFERENCE_LOOP and c.precision == "fp32" and c.ok]
    return next((c for c in manual if not c.run.preset and c.run.batch_size == 8), manual[0] if manual else None)
