"""``bench explain``'s analysis: why two loops run with their own defaults differ.

For the two loops' native cells (``run --defaults native``), every difference between them is listed
(``loops/native.py`` declares them; the settings read back from the live objects confirm the list is
complete), and each flip cell's measured effect is read back: a run-config setting set in loop A to
B's value, a library's own machinery switched off in the loop that has it, and A with every setting
of B at once (its step losses against B's show whether the list is complete).  Planning the flip
cells is ``bench/commands/explain.py``'s; this is a pure function of records.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass, field

from bench.analysis.cells import CellStats, cells_of, loop_specific, settings_of
from bench.analysis.gaps import phase_delta, phase_note
from bench.analysis.machines import same_machine
from bench.analysis.parity import loss_difference
from bench.analysis.verdicts import Kind, paired_kind, say
from bench.config import ConfigError
from bench.records import Record

NOT_A_SETTING = {"defaults", "loop_options", "flip", "glue_dir", "phases"}  # how a run is labelled, not trained
ALL = "*"  # the flip of every run-config setting at once


def flip_label(a: str, b: str, setting: str) -> str:
    return f"{a}->{b}:{setting}"


def parse_flip(label: str) -> tuple[str, str, str] | None:
    if not label or "->" not in label or ":" not in label:
        return None
    pair, setting = label.split(":", 1)
    a, b = pair.split("->", 1)
    return a, b, setting


@dataclass
class Differences:
    """What differs between two loops' cells."""
    settings: dict  # run-config setting -> (A's value, B's value): flippable in A
    machinery: dict  # (loop, key) -> (its value, the tutorial's): flippable in that loop
    inert: dict  # (loop, key) -> why it cannot act in this cell (not flipped)
    undeclared: list  # settings read back as different that no declaration explains
    held: dict  # what bench holds the same in both, and why


@dataclass
class Effect:
    """One flip's effect, signed toward B: what the difference adds to A's mean step to make B's."""
    setting: str
    loop: str
    how: str
    deltas_s: list
    effect_s: float | None
    verdict: str
    mem_mib: float | None
    loss_final: float | None
    f1: float | None
    runs: int
    values: tuple | None = None  # (A's, B's) for a run-config setting; None for machinery
    phases: dict | None = None
    phase_note: str = "-"


@dataclass
class Everything:
    """A with every setting of B at once."""
    cell: CellStats
    row: Effect
    parity: float | None


@dataclass
class Explained:
    """One device/precision/pair of loops: the base cells, the effects, what is left unexplained."""
    device: str
    precision: str
    seed: int | None  # both base cells' (the flips inherit it)
    variant: str  # every field of the plan both base cells share (batch size, seed, ...), named where they vary
    a: str
    b: str
    cell_a: CellStats
    cell_b: CellStats
    step_a_s: float | None
    step_b_s: float | None
    total_s: float | None
    effects: list = field(default_factory=list)
    unexplained_s: float | None = None
    everything: Everything | None = None
    parity_ab: float | None = None
    differences: Differences | None = None


def _native_cells(cells: list[CellStats], loop: str) -> list[CellStats]:
    """The loop's cells without a flip, those run with --defaults native first."""
    found = [c for c in cells if c.loop == loop and c.ok and not c.run.flip]
    return sorted(found, key=lambda c: c.run.defaults != "native")


def _where(c: CellStats) -> tuple:
    """What a flip and its base cells share: the device, the precision and every field of the plan
    (batch size, preset, seed, defaults, model, ...) but the loop's own; at another seed the head,
    the order and the dropout differ, at another batch size the step itself."""
    return c.device, c.precision, c.pairing


def base_pairs(cells: list[CellStats], a: str, b: str) -> list[tuple[CellStats, CellStats]]:
    """(A's cell, B's cell) per device, precision and seed, both without a flip."""
    pairs = []
    for ca in _native_cells(cells, a):
        cb = next((c for c in _native_cells(cells, b) if _where(c) == _where(ca)), None)
        if cb is not None:
            pairs.append((ca, cb))
    if not pairs:
        raise ConfigError(f"no ok {a} and {b} cells on the same device, precision and run config (batch size, "
                          f"preset, seed, model, ...) in these records: "
                          f"run `bench run --loops {a},{b} --defaults native --out OUT` first")
    return pairs


def _machinery(ca: CellStats, cb: CellStats) -> tuple[dict, dict]:
    """Each loop's machinery away from the tutorial's: flippable, or inert in this cell (with why)."""
    from loops.native import MACHINERY, inert, machinery

    mach, inert_list = {}, {}
    world = ca.first.world_size or 1
    for cell in (ca, cb):
        now = machinery(cell.loop, cell.run)
        tutorial = machinery(cell.loop, dataclasses.replace(cell.run, defaults="tutorial", loop_options=()))
        for key in MACHINERY.get(cell.loop, {}):
            if now[key] == tutorial[key]:
                continue
            why = inert(cell.loop, key, cell.device, world, cell.run.grad_accum)
            if why:
                inert_list[(cell.loop, key)] = why
            else:
                mach[(cell.loop, key)] = (now[key], tutorial[key])
    return mach, inert_list


def differences(ca: CellStats, cb: CellStats) -> Differences:
    """What differs between two cells: run-config settings (flippable in A), each loop's machinery
    (flippable in that loop, unless inert here), settings read back that no declaration explains."""
    from loops.native import held

    run_a, run_b = settings_of(ca.run), settings_of(cb.run)
    settings = {k: (run_a.get(k), run_b.get(k)) for k in sorted(set(run_a) | set(run_b) - NOT_A_SETTING)
                if k not in NOT_A_SETTING and json.dumps(run_a.get(k)) != json.dumps(run_b.get(k))}
    mach, inert_list = _machinery(ca, cb)
    # The read-back check: a setting in force that differs, and that no declared difference explains.
    sa, sb = ca.ok[0].settings or {}, cb.ok[0].settings or {}
    specific = loop_specific({ca.loop: sa, cb.loop: sb})
    undeclared = sorted(k for k in set(sa) | set(sb) if k not in specific
                        and json.dumps(sa.get(k), sort_keys=True, default=str) != json.dumps(sb.get(k), sort_keys=True, default=str)
                        and not any(_explains(setting, k) for setting in settings))
    return Differences(settings=settings, machinery=mach, inert=inert_list, undeclared=undeclared,
                       held=held((ca.loop, cb.loop)))


# Which read-back settings each run-config setting accounts for (bench/cell/settings.py names them).
_READ_BACK = {
    "max_grad_norm": ("grad_clip", "clip"),
    "adamw": ("optimizer_impl", "adamw", "fused", "foreach"),
    "weight_decay": ("weight_decay", "param_groups"),
    "weight_decay_exempt": ("param_groups", "weight_decay"),
    "warmup_steps": ("lr_first_step", "warmup", "lr_"),
    "pad_to_multiple_of": ("pad_to_multiple_of", "collator"),
    "pin_memory": ("pin_memory",),
}


def _explains(setting: str, read_back_key: str) -> bool:
    return any(part in read_back_key for part in _READ_BACK.get(setting, (setting,)))


def _paired_s(base: CellStats, other: CellStats) -> list[float]:
    """Per repeat (paired by index): other's mean step minus base's, in seconds, over the timed steps."""
    out = []
    for r in other.ok:
        m = next((x for x in base.ok if x.repeat == r.repeat), None)
        if m is not None and r.step_s_mean and m.step_s_mean and same_machine([r, m]):
            out.append(r.step_s_mean - m.step_s_mean)
    return out


def _verdict(deltas: list[float], base_s: float) -> str:
    """``paired_kind`` of the step with the difference over the step without, per paired run."""
    if not deltas or not base_s:
        return say(Kind.NONE, "explain")
    ratios = [1 + d / base_s for d in deltas]
    return say(paired_kind(statistics.median(ratios), ratios), "explain", runs=len(deltas))


def _delta(base: CellStats, other: CellStats, get, fallback, sign: int):
    if base.median(get) is None and fallback:
        get = fallback
    x, y = base.median(get), other.median(get)
    return sign * (y - x) if x is not None and y is not None else None


def _parity(c: CellStats, ref: CellStats) -> float | None:
    """Largest step-wise relative difference of c's step losses from ref's (first runs)."""
    if not c.ok or not ref.ok:
        return None
    return loss_difference(c.ok[0].step_losses or [], ref.ok[0].step_losses or [])[0]


def _effect(c: CellStats, ca: CellStats, cb: CellStats, a: str, b: str, step_a: float | None) -> Effect:
    """The flip cell c's effect: A with B's value (flip - A), or B without its machinery (B - flip)."""
    setting = parse_flip(c.run.flip)[2]
    if c.loop == a:
        base, sign, how = ca, 1, f"{a} given {b}'s value"
    else:
        base, sign, how = cb, -1, f"{b} without it"
    # The effect is over A's step: only when A, B and the flip were measured on one machine.
    deltas = [sign * d for d in _paired_s(base, c)] if same_machine(ca.ok + cb.ok + c.ok) else []
    failed = next((r.reason for r in reversed(c.records) if r.status != "ok"), "") if not c.ok else ""
    run_a, run_b = settings_of(ca.run), settings_of(cb.run)
    row = Effect(setting=setting, loop=c.loop, how=how, deltas_s=deltas,
                 effect_s=statistics.median(deltas) if deltas else None,
                 verdict=f"could not be flipped in {c.loop}: {failed}" if failed else _verdict(deltas, step_a or 0),
                 mem_mib=_delta(base, c, lambda r: r.peak_alloc_mib, lambda r: r.peak_rss_mib, sign),
                 loss_final=_delta(base, c, lambda r: r.train_loss_final, None, sign),
                 f1=_delta(base, c, lambda r: r.eval_f1, None, sign), runs=len(deltas),
                 values=(run_a.get(setting), run_b.get(setting)) if setting in run_a else None)
    ph = phase_delta(base, c) if same_machine(base.ok + c.ok) else None
    if ph:
        row.phases = {k: sign * v for k, v in ph.items()}
        row.phase_note = phase_note(row.phases)
    return row


def explain_rows(records: list[Record]) -> list[Explained]:
    """Per device/precision/pair of loops: the base cells, each flip's measured effect, the
    all-settings cell, what is unexplained."""
    cells = cells_of(records)
    flips = [c for c in cells if parse_flip(c.run.flip)]
    out = []
    for where, a, b in dict.fromkeys((_where(c), *parse_flip(c.run.flip)[:2]) for c in flips):
        try:
            ca, cb = next((x, y) for x, y in base_pairs(cells, a, b) if _where(x) == where)
        except (StopIteration, ConfigError):
            continue
        device, precision, _ = where
        seed = ca.seed
        step = (lambda r: r.step_s_mean)
        step_a, step_b = ca.median(step), cb.median(step)
        found = Explained(device=device, precision=precision, seed=seed, variant=ca.pairing_name, a=a, b=b, cell_a=ca, cell_b=cb, step_a_s=step_a,
                          step_b_s=step_b,
                          total_s=step_b - step_a if step_a and step_b and same_machine(ca.ok + cb.ok) else None,
                          parity_ab=_parity(ca, cb), differences=differences(ca, cb))
        for c in flips:
            if (_where(c), *parse_flip(c.run.flip)[:2]) != (where, a, b):
                continue
            row = _effect(c, ca, cb, a, b, step_a)
            if row.setting == ALL:
                found.everything = Everything(cell=c, row=row, parity=_parity(c, cb))
            else:
                found.effects.append(row)
        found.effects.sort(key=lambda r: -abs(r.effect_s or 0))
        explained = sum(r.effect_s or 0 for r in found.effects)
        found.unexplained_s = found.total_s - explained if found.total_s is not None else None
        out.append(found)
    return out
