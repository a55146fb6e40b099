"""Analysis: pure functions from ``Record`` objects to dataclasses; nothing here writes Markdown or draws.

- ``cells``: the repeats of one cell summarised (``CellStats``, with its ``RunConfig``), the groups
  that should train the same thing, the manual loop they are compared against;
- ``columns``: the one column registry (label, format, unit, better direction, aggregation) that the
  report's tables, the CSV, the terminal summary and ``bench compare`` are drawn from;
- ``verdicts``: what paired runs say of a ratio (``Kind``), its tolerances, and every wording of it;
- ``gaps``, ``parity``, ``mfu``: speed against the manual loop, step-loss agreement, MFU's peaks;
- ``explain``, ``compare``, ``quality``: ``bench explain``'s effects, ``bench compare``'s matches,
  the paired quality comparison across seeds.
"""

from bench.analysis.cells import (LOOP_ORDER, PRECISION_ORDER, CellStats, cells_of, comparison_groups, manual_cell,
                                  order_of, tutorial_baseline)
from bench.analysis.gaps import GapRow, gap_rows, phase_delta, phase_note
from bench.analysis.mfu import device_peak_of, mfu, shared_peaks
from bench.analysis.parity import Parity, ParityRow, loss_difference, parity_lines, parity_rows, training_differences
from bench.analysis.verdicts import GAP_TOLERANCE, PARITY_TOLERANCE, Kind, paired_kind

__all__ = ["GAP_TOLERANCE", "LOOP_ORDER", "PARITY_TOLERANCE", "PRECISION_ORDER", "CellStats", "GapRow", "Kind",
           "Parity", "ParityRow", "cells_of", "comparison_groups", "device_peak_of", "gap_rows", "loss_difference",
           "manual_cell", "mfu", "order_of", "paired_kind", "parity_lines", "parity_rows", "phase_delta", "phase_note",
           "shared_peaks", "training_differences", "tutorial_baseline"]
