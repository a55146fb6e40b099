"""Each loop's speed against the manual loop's at identical settings, and where the difference lies."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.analysis.cells import CellStats, manual_cell
from bench.analysis.machines import same_machine
from bench.analysis.siblings import worse
from bench.analysis.verdicts import Kind, paired_kind, say


@dataclass
class GapRow:
    loop: str
    runs: int  # repeats paired with the manual loop's (same batches, same order)
    sps_ratio: float | None  # median samples/s over manual's
    step_ratio: float | None  # median over runs of the median over steps of step time over manual's
    step_ratio_range: tuple | None
    busy: bool | str  # siblings.FOREIGN / SIBLINGS (either side's worst), or '' / False: measured alone
    manual_cv: float | None
    phase_delta_s: dict | None  # per phase, this loop's mean seconds a step minus manual's
    extra_work: list = field(default_factory=list)  # the per-step work the loop declares beyond manual's
    other_machine: bool = False  # some of its runs and manual's were measured on different machines

    @property
    def kind(self) -> Kind:
        """The gap judged by ``paired_kind`` over the repeats' step ratios (their smallest and largest
        stand for all of them: every one is beyond the tolerance on one side exactly when both ends are)."""
        lo, hi = self.step_ratio_range or (None, None)
        return paired_kind(self.step_ratio, [lo, hi][:self.runs], self.busy)

    @property
    def verdict(self) -> str:
        if self.other_machine and not self.runs:
            return "not comparable: measured on another machine than the manual loop's runs (see *Environment*)"
        lo, hi = self.step_ratio_range or (None, None)
        where = f", {phase_note(self.phase_delta_s)}" if self.phase_delta_s else ""
        why = "; ".join(self.extra_work) or "no per-step extra work is recorded for this loop"
        return say(self.kind, "gap", self.step_ratio, runs=self.runs, lo=lo, hi=hi, where=where, why=why)


def phase_delta(base: CellStats, other: CellStats) -> dict | None:
    """Per phase, other's mean seconds a step minus base's; None unless both recorded a split."""
    mine, theirs = other.phases(), base.phases()
    return {p: mine[p] - theirs[p] for p in mine} if mine and theirs else None


def _step_ratio(r, m) -> float | None:
    """The median over steps of run r's step time over run m's for the same batch."""
    w = max(r.timing_warmup_steps or 0, m.timing_warmup_steps or 0)
    ratios = [a / b for a, b in zip(r.step_s[w:], m.step_s[w:]) if b > 0]
    return statistics.median(ratios) if ratios else None


def gap_rows(group: list[CellStats]) -> list[GapRow]:
    """The step ratio pairs the loops step by step: they saw the same batches in the same order (the
    checksum says so), so step i of one and step i of the other did the same work, and the median
    of their ratio is free of batch-length variation.  Repeats are paired by seed and repeat index (a
    sweep runs them a round at a time, so repeat r of each loop ran close together in time)."""
    ref = manual_cell(group)
    out = []
    if ref is None:
        return out
    for c in group:
        if c is ref or not c.ok:
            continue
        per_run = []
        for r in c.ok:
            m = next((x for x in ref.ok if (x.seed, x.repeat) == (r.seed, r.repeat)), None)  # a cell over seeds: by seed
            if m is not None and m.batch_order_checksum == r.batch_order_checksum and same_machine([r, m]):
                ratio = _step_ratio(r, m)
                if ratio is not None:
                    per_run.append(ratio)
        sps, ref_sps = c.median(lambda r: r.samples_per_s), ref.median(lambda r: r.samples_per_s)
        one_machine = same_machine(c.ok + ref.ok)  # else no ratio of medians, no phase difference
        settings = c.ok[0].settings or {}
        out.append(GapRow(loop=c.loop, runs=len(per_run),
                          sps_ratio=sps / ref_sps if sps and ref_sps and one_machine else None,
                          step_ratio=statistics.median(per_run) if per_run else None,
                          step_ratio_range=(min(per_run), max(per_run)) if per_run else None,
                          busy=worse(c.busy_kind, ref.busy_kind),
                          manual_cv=ref.cv(lambda r: r.samples_per_s) if same_machine(ref.ok) else None,
                          phase_delta_s=phase_delta(ref, c) if one_machine else None, other_machine=not one_machine,
                          extra_work=[f"{c.loop} {text}" for text in settings.get("extra_work_per_step") or ()]))
    return out


def phase_note(delta: dict | None) -> str:
    """Where a loop's step time differs from the manual loop's: the change of its mean step and the
    phases that carry it, largest first (those moving at least a tenth of the change or 0.1 ms)."""
    if not delta:
        return "no phase split recorded"
    total = sum(delta.values())
    floor = max(abs(total) / 10, 1e-4)
    moved = sorted((p for p in delta if abs(delta[p]) >= floor), key=lambda p: -abs(delta[p]))
    parts = ", ".join(f"`{p}` {delta[p] * 1000:+.1f} ms" for p in moved) or "no phase moves by 0.1 ms"
    return f"{total * 1000:+.1f} ms/step: {parts}"
