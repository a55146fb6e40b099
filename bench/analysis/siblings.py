"""Cells that ran beside each other (``--executor ray``): which runs overlapped a run's timed steps on
its node, and whether the run was busy because of them, because of other load, or quiet.

A record cannot know, when it is written, which cells will start after it, and nothing recorded is
ever rewritten: so a run's siblings are found here, from the records themselves.  A record of schema
5 says when its timed steps ran on the wall clock (``machine_load.timed_start_unix_s`` and
``timed_end_unix_s``), the CPU the cell itself used over them (``own_cpu_cores``) and where it ran
(``node``: its host; ``cpu_cores``; ``cuda_visible_devices``).  A sibling of a run is another run on
the same node whose process overlapped the run's timed steps; a process's span is from its end less
its ``process_wall_s`` (else its ``started_at``) to its ``finished_at``, a second later (recorded to
the second).

The siblings' share of the CPU the others used during the run's timed steps is estimated as each
one's own cores (over its own timed steps) times the part of the window it overlapped; what the
others used beyond it is foreign load, judged by the rule the cell judged itself by (``BUSY_RULE``).
Which siblings count against a run's speed: for a CPU cell, those sharing its cores; for a GPU cell,
those sharing its GPU, and CPU cells sharing its cores (its host side runs on them).  A sibling on
another GPU never counts; its CPU is still taken out of the others'.

A record without its timed steps on the wall clock (before schema 5, or never timed), and a run no
sibling overlapped, keep the verdict they were written with.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from bench.records import Record
from bench.records.vocabulary import (OTHERS_MAX_FRACTION, OTHERS_WHY, PROBE_WHY, SHORT_WHY, min_window_s, others_why,
                                      probe_why, too_short_why)

FOREIGN = "busy"  # other processes than its sibling cells took the cores, or a probe or its GPU said so
SIBLINGS = "siblings"  # shared its cores (or its GPU) with sibling cells of its sweep
QUIET = "quiet"
UNJUDGED = "not judged"  # the timed steps were too short to judge the others' share
MARKS = {FOREIGN: "⚠ busy", SIBLINGS: "⚠ shared"}


@dataclass(frozen=True)
class Busy:
    """One run's verdict: its kind, why, and the sibling runs that overlapped its timed steps on its node
    (``siblings``; None when its record cannot say) and of those the ones that shared its cores or GPU."""
    kind: str
    why: tuple = ()
    siblings: int | None = None
    shared: int = 0

    @property
    def busy(self) -> bool:
        """Not a clean speed figure: busy with other load, or shared with sibling cells."""
        return self.kind in (FOREIGN, SIBLINGS)


def worse(*kinds: str) -> str:
    """The kind that says most of several runs: foreign load, else siblings, else '' (neither)."""
    return next((k for k in (FOREIGN, SIBLINGS) if k in kinds), "")


def mark(kind: str) -> str:
    """' ⚠ busy' or ' ⚠ shared' after a cell's name; '' when neither."""
    return f" {MARKS[kind]}" if kind in MARKS else ""


def recorded(r: Record, siblings: int | None = None) -> Busy:
    """The verdict the record was written with."""
    if r.machine_busy:
        kind = FOREIGN
    elif r.machine_busy is None and r.machine_busy_why:
        kind = UNJUDGED
    else:
        kind = QUIET
    return Busy(kind, tuple(r.machine_busy_why or ()), siblings)


def _unix(stamp: str) -> float | None:
    try:
        return _dt.datetime.fromisoformat(stamp).timestamp() if stamp else None
    except (TypeError, ValueError):
        return None


def timed_window(r: Record) -> tuple[float, float] | None:
    """When the run's timed steps began and ended, epoch seconds; None when its record does not say."""
    load = r.machine_load
    if load is None or load.timed_start_unix_s is None or load.timed_end_unix_s is None:
        return None
    return load.timed_start_unix_s, load.timed_end_unix_s


def run_span(r: Record) -> tuple[float, float] | None:
    """When the run's process was alive, as wide as its record allows (its times are to the second)."""
    end, start = _unix(r.finished_at), _unix(r.started_at)
    if end is None:
        return None
    starts = [x for x in (start, end - r.process_wall_s if r.process_wall_s else None) if x is not None]
    window = timed_window(r)
    if window:
        starts.append(window[0])
    return (min(starts), max(end + 1.0, window[1] if window else end)) if starts else None


def _overlap(a: tuple, b: tuple) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _same_run(a: Record, b: Record) -> bool:
    return a is b or (a.cell_id, a.repeat, a.started_at, a.finished_at) == (b.cell_id, b.repeat, b.started_at,
                                                                          b.finished_at)


def _ids(text: str) -> set:
    return {x.strip() for x in (text or "").split(",") if x.strip()}


def _on_gpu(r: Record) -> bool:
    return r.device.split(":")[0] != "cpu"


def _meets(mine: str, theirs: str) -> bool:
    """Two sets of ids (cores, GPUs) of one node overlap; an unknown set may overlap any."""
    a, b = _ids(mine), _ids(theirs)
    return not a or not b or bool(a & b)


def shares(r: Record, s: Record) -> bool:
    """Whether sibling ``s`` competes for what ``r``'s figures measure: a CPU cell's cores; a GPU cell's
    GPU, or (a CPU cell) the cores its host side runs on.  A GPU cell on another GPU never does."""
    if _on_gpu(r) and _on_gpu(s):
        return _meets(r.cuda_visible_devices, s.cuda_visible_devices)
    return _meets(r.cpu_cores, s.cpu_cores)


def _named(r: Record) -> str:
    return f"{r.loop} {r.device} {r.precision} rep {r.repeat}"


class Overlaps:
    """A report's runs by node, to find the siblings of each and judge it with them told apart."""

    def __init__(self, records: list[Record]):
        self._by_node: dict[str, list] = {}
        for r in records:
            span = run_span(r) if r.node and r.status != "skipped" else None
            if span is not None:
                self._by_node.setdefault(r.node, []).append((span, r))

    def siblings(self, r: Record) -> list[tuple[Record, float]] | None:
        """The other runs on ``r``'s node whose process overlapped its timed steps, each with the
        seconds it did; None when ``r``'s record does not place its timed steps on the wall clock."""
        window = timed_window(r)
        if window is None or not r.node:
            return None
        found = ((s, _overlap(span, window)) for span, s in self._by_node.get(r.node, ()) if not _same_run(s, r))
        return [(s, seconds) for s, seconds in found if seconds > 0]

    def verdict(self, r: Record) -> Busy:
        """``r``'s verdict: as written when no sibling overlapped it (or its record cannot say), else
        re-judged with the siblings' share of the CPU taken out of the others'."""
        found = self.siblings(r)
        if not found:
            return recorded(r, None if found is None else 0)
        return _judged(r, found) or recorded(r, len(found))


def _siblings_cores(found: list[tuple[Record, float]], window_s: float) -> float | None:
    """The siblings' estimated CPU over the window, in cores; None when one of them recorded none."""
    rates = [(s.machine_load.own_cpu_cores if s.machine_load else None, seconds) for s, seconds in found]
    if any(rate is None for rate, _ in rates):
        return None
    return sum(rate * seconds / window_s for rate, seconds in rates)


def _judged(r: Record, found: list[tuple[Record, float]]) -> Busy | None:
    """The verdict with siblings told apart from other load; None where the record cannot split them
    (a sibling that recorded no CPU of its own beside a run none of them shares with)."""
    ml = r.machine_load
    load = ml.to_dict()  # as the rule's words take it
    start, end = timed_window(r)
    window_s, cores = max(end - start, 1e-9), ml.cores or 1
    shared = [s for s, _ in found if shares(r, s)]
    theirs = _siblings_cores(found, window_s)
    others = ml.others_cpu_cores
    if (theirs is None or others is None) and not shared:
        return None
    foreign, with_them = [], []
    if shared:
        n = len(shared)
        with_them.append(f"shared with {n} sibling cell{'s' if n != 1 else ''} ({', '.join(map(_named, shared))})"
                         + (f": about {theirs:.1f} of the {cores} cores were theirs during its timed steps"
                            if theirs is not None else ""))
    long_enough = (ml.timed_window_s or window_s) >= min_window_s(cores)
    if theirs is not None and others is not None and long_enough:
        rest = max(0.0, others - theirs) / cores
        if rest > OTHERS_MAX_FRACTION:
            foreign.append(others_why(rest, cores, f"other processes than its {len(found)} sibling cell(s)"))
    probe = probe_why(load)
    if probe:  # a sibling starting or ending on its cores or GPU could move it; else it is the machine's
        (with_them if shared else foreign).append(probe)
    # What else the cell said (other processes on its GPU): its own, unless a sibling shares that GPU.
    rest_why = [w for w in r.machine_busy_why or () if not w.startswith((OTHERS_WHY, PROBE_WHY, SHORT_WHY))]
    gpu_shared = _on_gpu(r) and any(_on_gpu(s) for s in shared)
    (with_them if gpu_shared else foreign).extend(rest_why)
    if foreign:
        return Busy(FOREIGN, tuple(foreign + with_them), len(found), len(shared))
    if shared:
        return Busy(SIBLINGS, tuple(with_them), len(found), len(shared))
    if not long_enough:
        return Busy(UNJUDGED, (too_short_why(load),), len(found), 0)
    return Busy(QUIET, (), len(found), 0)
