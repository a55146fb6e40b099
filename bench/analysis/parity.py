"""Do the loops train the same thing?  Step losses against the manual loop's, and what in their
settings makes two loops train different things (then they need not agree)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

from bench.analysis.cells import CellStats, comparison_groups, manual_cell, settings_of
from bench.analysis.machines import same_machine
from bench.analysis.verdicts import PARITY_TOLERANCE


class Parity(str, enum.Enum):
    AGREES = "agrees"  # same settings, losses within PARITY_TOLERANCE, same batches
    FAILS = "fails"  # same settings, losses apart or other batches
    DIFFERS = "differs"  # settings differ: not expected to agree, and no failure
    # Same settings and batches, losses apart, but measured on another machine than manual's (a
    # folder continued with --resume elsewhere): other kernels round differently, so no verdict.
    ELSEWHERE = "another machine"

    def __str__(self) -> str:
        return self.value


@dataclass
class ParityRow:
    loop: str
    steps: int  # steps both ran
    max_rel_diff: float | None
    at_step: int | None
    same_batches: bool
    differs: list = field(default_factory=list)  # what makes it train something other than manual
    other_machine: bool = False  # its run and manual's were measured on two machines

    @property
    def verdict(self) -> Parity:
        if self.differs:
            return Parity.DIFFERS
        if self.max_rel_diff is not None and self.max_rel_diff <= PARITY_TOLERANCE and self.same_batches:
            return Parity.AGREES
        # Another CPU's (or GPU's) kernels may round differently, so losses apart there are no failure
        # of the loop; other batches are, on any machine.
        apart = self.max_rel_diff is not None  # no step losses to compare fail on any machine
        return Parity.ELSEWHERE if self.other_machine and self.same_batches and apart else Parity.FAILS


def loss_difference(losses: list, ref_losses: list) -> tuple[float | None, int | None]:
    """Largest step-wise relative difference of ``losses`` from ``ref_losses`` over the steps both
    have, and the index of the step where it is; (None, None) when there is none."""
    n = min(len(ref_losses), len(losses))
    if not n:
        return None, None
    rel = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(ref_losses[:n], losses[:n])]
    worst = max(range(n), key=lambda i: rel[i])
    return rel[worst], worst


# Run-config fields that cannot change a step's loss: where the data lives, how the steps are timed
# and split, the evaluation, the loader's workers and pinning, and names (the defaults mode, a
# preset's or a flip's: what they change shows in the other fields and the machinery).
NOT_IN_THE_LOSSES = {"glue_dir", "phases", "timing_warmup", "flip", "defaults", "loop_options", "preset",
                     "eval_batch_size", "eval_every", "target_f1", "num_workers", "pin_memory", "peak_tflops"}


def training_differences(c: CellStats, ref: CellStats) -> list[str]:
    """What makes ``c`` train something other than ``ref``: the run-config fields that differ (a
    loop's native defaults, loops/native.py) and the library machinery that changes the gradients
    (``loops.native.TRAINING_MACHINERY``) where it is not at the harness's setting; empty when both
    train the same thing, so their step losses are expected to agree."""
    from loops.native import MACHINERY, TRAINING_MACHINERY, inert, machinery

    mine, theirs = settings_of(c.run), settings_of(ref.run)
    out = [f"{k} ({theirs.get(k)!r} in {ref.loop}, {mine.get(k)!r} in {c.loop})"
           for k in sorted(set(mine) | set(theirs) - NOT_IN_THE_LOSSES)
           if k not in NOT_IN_THE_LOSSES and json.dumps(mine.get(k)) != json.dumps(theirs.get(k))]
    for cell in (ref, c):
        world = cell.first.world_size or 1
        for key, value in machinery(cell.loop, cell.run).items():
            harness = MACHINERY[cell.loop][key][1]
            if key in TRAINING_MACHINERY and value != harness and not inert(cell.loop, key, cell.device, world,
                                                                             cell.run.grad_accum):
                out.append(f"{key} ({value!r} in {cell.loop}, the harness sets {harness!r})")
    return out


def parity_rows(group: list[CellStats]) -> list[ParityRow]:
    """Largest step-wise relative loss difference of each loop against the manual loop (first runs)."""
    ref = manual_cell(group)
    out = []
    if ref is None:
        return out
    ref_losses = ref.ok[0].step_losses
    for c in group:
        if c is ref or not c.ok:
            continue
        losses = c.ok[0].step_losses
        largest, worst = loss_difference(losses, ref_losses)
        out.append(ParityRow(loop=c.loop, steps=min(len(ref_losses), len(losses)), max_rel_diff=largest,
                             at_step=worst + 1 if largest else None,
                             same_batches=c.ok[0].batch_order_checksum == ref.ok[0].batch_order_checksum,
                             differs=training_differences(c, ref),
                             other_machine=not same_machine([c.ok[0], ref.ok[0]])))
    return out


def parity_lines(cells: list[CellStats]) -> tuple[bool, list[str]]:
    """``run --parity``: each loop's largest step-wise relative loss difference against the manual
    loop, one line each, and False when two loops that train the same thing disagree.  Loops whose
    settings differ (their native defaults) are not expected to agree: said, with the difference."""
    ok, lines = True, []
    for (device, precision, variant), group in comparison_groups(cells).items():
        place = f"{device}/{precision}" + (f" ({variant})" if variant else "")
        for row in parity_rows(group):
            ok &= row.verdict is not Parity.FAILS
            where = f" at step {row.at_step}" if row.at_step else ""
            batches = "" if row.same_batches else ", different batches"
            diff = "none" if row.max_rel_diff is None else f"{row.max_rel_diff:.2e}"
            said = {Parity.AGREES: "ok", Parity.FAILS: f"FAILS (tolerance {PARITY_TOLERANCE:g})",
                    Parity.DIFFERS: "settings differ: not expected to agree (" + "; ".join(row.differs) + ")",
                    Parity.ELSEWHERE: "apart, but measured on another machine than manual's: no verdict (run both "
                                      "on one machine)"}[row.verdict]
            lines.append(f"parity {place}: {row.loop} vs manual over {row.steps} steps: largest relative "
                         f"loss difference {diff}{where}{batches} -> {said}")
    return ok, lines
