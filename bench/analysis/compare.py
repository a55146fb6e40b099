"""``bench compare``'s analysis: two result sets matched cell by cell, B over A per figure, a
noise-aware verdict, and what B broke.

Cells are matched on loop, device, precision, processes and the run config.  What may differ is
what is outside the run config (library versions, the machine) and the config fields the user
names with ``--differ``; a cell of A and a cell of B that would match but for a field nobody named
are refused, since their ratio would measure that field and not what the user thinks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bench.analysis.cells import CellStats, settings_of
from bench.analysis.columns import COMPARE, EVAL_F1, SAMPLES_PER_S, Column, shown_in
from bench.analysis.machines import same_machine
from bench.analysis.siblings import worse
from bench.analysis.verdicts import Kind, paired_kind, say
from bench.config import ConfigError

# Where the data lives, and whether the step is split into phases, change no training.
NOT_TRAINING = {"glue_dir", "phases", "peak_tflops"}  # MFU's denominator changes no training either
DATA = "data_fingerprint"  # what --differ names to compare runs on different data on purpose


def _config(c: CellStats, named: set[str]) -> dict:
    return {k: v for k, v in settings_of(c.run).items() if k not in NOT_TRAINING | named}


def _differing(a: dict, b: dict) -> list[str]:
    return [f"{k} ({a.get(k)!r} in A, {b.get(k)!r} in B)" for k in sorted(set(a) | set(b))
            if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True)]


def _axes(c: CellStats) -> tuple:
    return c.loop, c.device, c.precision, c.first.world_size or 1


def fingerprint(c: CellStats) -> str:
    """The data the cell trained and evaluated on (records before fingerprints: "")."""
    return next((r.data_fingerprint for r in c.records if r.data_fingerprint), "")


def check_named(cells: list[CellStats], named: set[str]) -> None:
    """``--differ`` names run settings (or the data): a name that is none of them is a typo, not a pass."""
    known = {k for c in cells for k in c.run.to_dict()} | {DATA}
    unknown = sorted(named - known)
    if unknown:
        raise ConfigError(f"--differ {','.join(unknown)}: not a run setting of these records; the settings are: "
                          f"{', '.join(sorted(known - NOT_TRAINING))}")


def check_same_data(pairs: list, named: set[str]) -> None:
    """A pair trained on different data (another --glue-dir content, another slice) is refused
    unless ``--differ data_fingerprint`` says so on purpose."""
    if DATA in named:
        return
    for a, b in pairs:
        fa, fb = fingerprint(a), fingerprint(b)
        if fa and fb and fa != fb:
            raise ConfigError(
                f"{a.loop}/{a.device}/{a.precision}: A and B trained on different data ({DATA} {fa} in A, "
                f"{fb} in B: another copy or slice of MRPC). Name it with --differ {DATA} if on purpose, or "
                "compare runs on the same data")


def match(cells_a: list[CellStats], cells_b: list[CellStats], named: set[str]) -> tuple[list, list, list]:
    """(pairs, only in A, only in B); refuses a pair that differs in an unnamed training setting."""
    pairs, left_b = [], list(cells_b)
    only_a = []
    for a in cells_a:
        twin = next((b for b in left_b if _axes(b) == _axes(a) and _config(b, named) == _config(a, named)), None)
        if twin is None:
            only_a.append(a)
        else:
            pairs.append((a, twin))
            left_b.remove(twin)
    for a in only_a:
        near = [b for b in left_b if _axes(b) == _axes(a)]
        if near:
            diffs = _differing(_config(a, named), _config(near[0], named))
            raise ConfigError(
                f"{a.loop}/{a.device}/{a.precision} differs between A and B in training settings nobody named: "
                f"{'; '.join(diffs)}. Name what you changed on purpose with --differ "
                f"{','.join(d.split(' ')[0] for d in diffs)}, or compare runs made with the same settings")
    return pairs, only_a, left_b


def _ratio(a, b):
    return b / a if a and b is not None else None


@dataclass
class CompareRow:
    loop: str
    device: str
    precision: str
    seed: int | None  # the run config's seed (a --seeds sweep compares seed by seed)
    a: dict  # column name -> A's value, for every compare column
    b: dict
    ratios: dict  # column name -> B over A (columns with a better direction, quality aside)
    paired: list  # samples/s B over A, repeats paired by index
    busy: str  # siblings.FOREIGN / SIBLINGS: a run of either side was not measured alone; '' when none
    verdict: str
    # The sides ("A", "B") whose repeats of this cell were measured on more than one machine (a folder
    # continued with --resume elsewhere): a median over them mixes machines, so no ratio and no verdict.
    mixed: tuple = ()

    @property
    def sps_ratio(self) -> float | None:
        return self.ratios.get(SAMPLES_PER_S.name)

    @property
    def mixed_said(self) -> str:
        """Why this row has no ratio, in words; '' when it has one."""
        return f"{' and '.join(self.mixed)}'s runs of this cell were measured on more than one machine" if self.mixed else ""


def ratio_columns() -> tuple[Column, ...]:
    """The compare columns shown as B over A (quality is shown as A → B: a ratio of F1s says little)."""
    return tuple(c for c in shown_in(COMPARE) if c is not EVAL_F1)


def row(a: CellStats, b: CellStats) -> CompareRow:
    """B over A per figure; the verdict from the repeats paired by index (both ran them a round at a time)."""
    by_rep = {r.repeat: r.samples_per_s for r in a.ok if r.samples_per_s}
    paired = [r.samples_per_s / by_rep[r.repeat] for r in b.ok if r.samples_per_s and r.repeat in by_rep]
    va = {c.name: c.value(a) for c in shown_in(COMPARE)}
    vb = {c.name: c.value(b) for c in shown_in(COMPARE)}
    ratios = {c.name: _ratio(va[c.name], vb[c.name]) for c in ratio_columns()}
    busy = worse(a.busy_kind, b.busy_kind)
    mixed = tuple(label for label, c in (("A", a), ("B", b)) if not same_machine(c.ok))
    if mixed:
        unjudged = CompareRow(loop=a.loop, device=a.device, precision=a.precision, seed=a.seed, a=va, b=vb,
                              ratios=dict.fromkeys(ratios), paired=[], busy=busy, mixed=mixed, verdict="")
        unjudged.verdict = f"no verdict: {unjudged.mixed_said}"
        return unjudged
    return CompareRow(loop=a.loop, device=a.device, precision=a.precision, seed=a.seed, a=va, b=vb, ratios=ratios, paired=paired,
                      busy=busy, verdict=verdict(ratios[SAMPLES_PER_S.name], paired, busy))


def verdict(sps_ratio: float | None, paired: list[float], busy: bool | str) -> str:
    kind = paired_kind(sps_ratio, paired)  # a busy machine is said first, even of a single pair
    if busy and kind not in (Kind.NONE, Kind.SAME):
        kind = paired_kind(sps_ratio, paired, busy)  # which: beside its siblings, or a busy machine
    lo, hi = (min(paired), max(paired)) if paired else (None, None)
    return say(kind, "compare", sps_ratio, slower_above_1=False, runs=len(paired), lo=lo, hi=hi)


@dataclass
class Broken:
    loop: str
    device: str
    precision: str
    why: str


def broken_in_b(pairs: list, only_a: list[CellStats], rows: list | None = None) -> list[Broken]:
    """For ``--fail-above``: each cell of A that B failed, only skipped, or lacks, and each pair the gate
    cannot judge (its repeats on one side measured on two machines), with why."""
    broken = [Broken(r.loop, r.device, r.precision, f"{r.mixed_said}: no samples/s to gate (rerun it on one machine)")
              for r in rows or () if r.mixed]
    for a, b in pairs:
        failed = [r for r in b.records if r.status == "failed"]
        if failed:
            why = f"failed in B: {failed[-1].reason or 'no reason recorded'}"
        elif not b.ok:
            why = f"not run in B: {b.records[-1].reason or b.records[-1].status}"
        else:
            continue
        broken.append(Broken(a.loop, a.device, a.precision, why[:300]))
    broken += [Broken(a.loop, a.device, a.precision, "missing in B") for a in only_a if a.ok]
    return broken


@dataclass
class Comparison:
    pairs: list
    only_a: list
    only_b: list
    rows: list = field(default_factory=list)
    slower: list = field(default_factory=list)  # rows beyond --fail-above
    broken: list = field(default_factory=list)  # cells of A that B failed or lacks, or unjudged (with --fail-above)


def compare(cells_a: list[CellStats], cells_b: list[CellStats], named: set[str],
            fail_above: float | None) -> Comparison:
    check_named(cells_a + cells_b, named)
    pairs, only_a, only_b = match(cells_a, cells_b, named)
    check_same_data(pairs, named)
    if not pairs:
        raise ConfigError("no cell of A has a counterpart in B (same loop, device, precision, processes and settings)")
    out = Comparison(pairs, only_a, only_b, rows=[row(a, b) for a, b in pairs])
    if fail_above is not None:
        out.slower = [r for r in out.rows if r.sps_ratio is not None and (1 - r.sps_ratio) * 100 > fail_above]
        out.broken = broken_in_b(pairs, only_a, out.rows)
    return out
