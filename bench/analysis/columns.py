"""The one column registry: every per-cell figure the report's device tables, the CSV, the terminal
summary and ``bench compare`` show, each declared once with its label, format, unit, which way is
better and how it aggregates over a cell's repeats.

A column for an existing record field is one line in ``COLUMNS``::

    Column("padding_fraction", "padding", lambda r: r.padding_fraction, "{:.1%}", better=LOWER, shows=TABLE_CSV),

and it appears in the device tables and the CSV (that line is in ``COLUMNS``: the padded tokens'
share that carried no text, which ``group_by_length`` and ``pad_to_multiple_of`` move).  ``shows`` says where a column appears: ``table``
(the report's per-device table), ``csv``, ``summary`` (the table a run prints, one row per record)
and ``compare`` (B over A).  A column whose value needs the cell's neighbours (the speed-up over the
device's manual fp32 cell, MFU over the device's peak) reads them from a ``TableContext``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

from bench.analysis.cells import CellStats
from bench.analysis.machines import same_machine
from bench.analysis.mfu import cell_mfu
from bench.records.vocabulary import PHASES
from bench.records import Record

HIGHER, LOWER = "higher", "lower"
TABLE, CSV, SUMMARY, COMPARE = "table", "csv", "summary", "compare"
EVERYWHERE = frozenset({TABLE, CSV, SUMMARY})
TABLE_CSV = frozenset({TABLE, CSV})


def first(values: list):
    """The aggregation of a figure that is one run's (an interval of the cell's first run)."""
    return values[0]


@dataclass
class TableContext:
    """What a column may need beside its own cell: the device's reference cell and peaks."""
    base: CellStats | None = None  # the device's manual loop in fp32 at the tutorial's settings
    peaks: dict = field(default_factory=dict)  # precision -> (TFLOP/s, source)
    counters: bool = False  # the device has memory counters (CUDA): peak allocated, else RSS


@dataclass(frozen=True)
class Column:
    name: str  # the CSV header; a record field's own name where it is one
    label: str  # the table header
    of: Callable[[Record], object] | None = None  # the record's value (None: derived from the cell)
    fmt: str = "{:.1f}"
    better: str = ""  # HIGHER, LOWER or "" (neither: a quality floor, an interval)
    unit: str = ""  # the unit of the value (the label may show it scaled: seconds as ms)
    scale: float = 1.0  # the value as shown in tables: seconds x 1000 = ms
    aggregate: Callable[[list], object] = statistics.median  # over the cell's ok repeats
    shows: frozenset = EVERYWHERE
    optional: bool = False  # shown in a table only when some cell has a value
    derive: Callable[[CellStats, TableContext], object] | None = None  # a value from the cell and its context
    text: Callable[[CellStats, TableContext], str] | None = None  # the table's text, when not the formatted value

    def __call__(self, record: Record):
        return self.of(record)

    def value(self, cell: CellStats, ctx: TableContext | None = None):
        """The cell's figure: derived, or the aggregate of its ok runs' values."""
        if self.derive is not None:
            return self.derive(cell, ctx or TableContext())
        values = cell.values(self.of)
        return self.aggregate(values) if values else None

    def shown(self, cell: CellStats, ctx: TableContext | None = None) -> str:
        """The table's text for the cell: '-' where there is no value."""
        if self.text is not None:
            return self.text(cell, ctx or TableContext())
        return fmt(self.value(cell, ctx), self.fmt, self.scale)


def fmt(value, pattern: str = "{:.1f}", scale: float = 1.0, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return pattern.format(value * scale)


def _peak_mib(r: Record):
    return r.peak_alloc_mib if r.peak_alloc_mib is not None else r.peak_rss_mib


def _memory_text(c: CellStats, ctx: TableContext) -> str:
    text = fmt(PEAK_MIB.value(c), "{:.0f}")
    reserved = c.median(lambda r: r.peak_reserved_mib)
    return text + (f" ({reserved:.0f})" if ctx.counters and reserved is not None else "")


def _cv(c: CellStats, ctx: TableContext):
    return c.cv(SAMPLES_PER_S) if same_machine(c.ok) else None  # repeats on two machines: no CV


def _spread_text(c: CellStats, ctx: TableContext) -> str:
    spread = c.spread(SAMPLES_PER_S) if same_machine(c.ok) else None  # repeats on two machines: no spread
    return f"{spread[0]:.1f}–{spread[1]:.1f}" if spread else "-"


def _speed_up(c: CellStats, ctx: TableContext):
    sps, base = c.median(SAMPLES_PER_S), ctx.base.median(SAMPLES_PER_S) if ctx.base else None
    return sps / base if sps and base and same_machine(c.ok + ctx.base.ok) else None


def _mfu(c: CellStats, ctx: TableContext):
    return cell_mfu(c, ctx.peaks.get(c.precision, (None,))[0])


def _ci_text(c: CellStats, ctx: TableContext) -> str:
    ci = c.f1_ci95()
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "-"


def _phase_column(phase: str) -> Column:
    return Column(f"phase_{phase}_s_mean", f"{phase} ms", derive=lambda c, ctx: (c.phases() or {}).get(phase),
                  fmt="{:.1f}", better=LOWER, unit="s", scale=1000, shows=frozenset({CSV}))


SAMPLES_PER_S = Column("samples_per_s", "samples/s", lambda r: r.samples_per_s, better=HIGHER, unit="samples/s",
                       shows=EVERYWHERE | {COMPARE})
STEP_S_P50 = Column("step_s_p50", "step p50 ms", lambda r: r.step_s_p50, better=LOWER, unit="s", scale=1000,
                    shows=EVERYWHERE | {COMPARE})
PEAK_MIB = Column("peak_mib", "peak MiB", _peak_mib, "{:.0f}", better=LOWER, unit="MiB", text=_memory_text,
                  shows=frozenset({TABLE, SUMMARY, COMPARE}))
SETUP_TOTAL_S = Column("setup_total_s", "startup s", lambda r: r.setup_s.total_s if r.setup_s else None,
                       better=LOWER, unit="s", shows=frozenset({TABLE, CSV, COMPARE}))
EVAL_ACCURACY = Column("eval_accuracy", "val acc", lambda r: r.eval_accuracy, "{:.4f}", better=HIGHER)
EVAL_F1 = Column("eval_f1", "val F1", lambda r: r.eval_f1, "{:.4f}", better=HIGHER, shows=EVERYWHERE | {COMPARE})
TRAIN_LOSS_FINAL = Column("train_loss_final", "final loss", lambda r: r.train_loss_final, "{:.4f}", better=LOWER)
JOULES_PER_SAMPLE = Column("joules_per_sample", "J/sample", lambda r: r.joules_per_sample, "{:.3f}", better=LOWER,
                           unit="J", optional=True, shows=frozenset({TABLE, CSV}))

# The order of the device tables and of the CSV.
COLUMNS: tuple[Column, ...] = (
    SAMPLES_PER_S,
    Column("samples_per_s_spread", "spread", text=_spread_text, shows=frozenset({TABLE})),
    Column("samples_per_s_cv", "CV", derive=_cv, fmt="{:.1%}",
           shows=frozenset({TABLE, CSV})),
    Column("speed_up", "speed-up", derive=_speed_up, fmt="{:.2f}×", better=HIGHER, shows=frozenset({TABLE, CSV})),
    Column("real_tokens_per_s", "real tok/s", lambda r: r.real_tokens_per_s, "{:.0f}", better=HIGHER, unit="tokens/s"),
    Column("padding_fraction", "padding", lambda r: r.padding_fraction, "{:.1%}", better=LOWER, shows=TABLE_CSV),
    STEP_S_P50,
    Column("step_s_p90", "step p90 ms", lambda r: r.step_s_p90, better=LOWER, unit="s", scale=1000,
           shows=frozenset({TABLE, CSV})),
    PEAK_MIB,
    Column("peak_alloc_mib", "peak allocated MiB", lambda r: r.peak_alloc_mib, "{:.0f}", LOWER, "MiB",
           shows=frozenset({CSV})),
    Column("peak_reserved_mib", "peak reserved MiB", lambda r: r.peak_reserved_mib, "{:.0f}", LOWER, "MiB",
           shows=frozenset({CSV})),
    Column("peak_rss_mib", "peak RSS MiB", lambda r: r.peak_rss_mib, "{:.0f}", LOWER, "MiB", shows=frozenset({CSV})),
    Column("mfu", "MFU", derive=_mfu, fmt="{:.2%}", better=HIGHER, shows=frozenset({TABLE, CSV})),
    Column("optimizer_state_mib", "optimizer state MiB",
           lambda r: r.optimizer_state_bytes / 2**20 if r.optimizer_state_bytes is not None else None, "{:.2f}",
           LOWER, "MiB", shows=frozenset({CSV})),
    Column("n_params_trainable", "trained parameters", lambda r: r.model.n_params_trainable if r.model else None,
           "{:.0f}", shows=frozenset({CSV})),
    JOULES_PER_SAMPLE,
    SETUP_TOTAL_S,
    EVAL_ACCURACY,
    EVAL_F1,
    Column("eval_f1_ci95", "F1 95% CI", text=_ci_text, shows=frozenset({TABLE})),
    Column("eval_f1_ci95_lo", "F1 95% CI low", lambda r: r.eval_f1_ci95[0] if r.eval_f1_ci95 else None, "{:.3f}",
           aggregate=first, shows=frozenset({CSV})),
    Column("eval_f1_ci95_hi", "F1 95% CI high", lambda r: r.eval_f1_ci95[1] if r.eval_f1_ci95 else None, "{:.3f}",
           aggregate=first, shows=frozenset({CSV})),
    TRAIN_LOSS_FINAL,
    Column("process_wall_s", "cell s", lambda r: r.process_wall_s, better=LOWER, unit="s", shows=frozenset({CSV})),
    *(_phase_column(p) for p in PHASES),
)


def shown_in(where: str) -> tuple[Column, ...]:
    return tuple(c for c in COLUMNS if where in c.shows)
