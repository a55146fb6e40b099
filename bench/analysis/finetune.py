"""LoRA beside full fine-tuning, loop by loop (``--finetune full,lora``): pure functions from the
records to paired comparisons; nothing here writes Markdown.

A LoRA cell is paired with the full cell of the same loop, device, precision and seed whose run
config is the same in everything but what makes the recipe LoRA's (``RECIPE_FIELDS``: the fine-tuning,
the LoRA settings and the learning rate, which ``--lora-lr`` sets for LoRA cells alone).  Per loop:

- **speed**: LoRA's samples/s over full's, per seed, judged by ``verdicts.paired_kind`` (measured on
  one machine only, never when either ran on a busy one);
- **memory**: each one's peak, and the optimizer's state (AdamW's moments of the trained parameters);
- **quality**: each one's F1 (the mean over the seeds both ran, with the cell's bootstrap interval at
  one seed; a seed ok in one recipe only is left out of both sides and named),
  and LoRA minus full as a paired difference on the same validation pairs: per seed the paired
  bootstrap, across seeds the two-level one (``bootstrap.across_seeds``), with ``quality.verdict``;
- **time to target** (``--eval-every K --target-f1 F``): the median over seeds of each.
"""

from __future__ import annotations

import json
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field

from bench.analysis.bootstrap import AcrossSeeds
from bench.analysis.cells import LOOP_ORDER, CellStats, order_of, per_loop_fields, settings_of, variant_of, varying_of
from bench.analysis.columns import EVAL_F1, PEAK_MIB, SAMPLES_PER_S
from bench.analysis.machines import same_machine
from bench.analysis.quality import compare_seeds, time_to_target
from bench.analysis.siblings import worse
from bench.analysis.verdicts import Kind, paired_kind
from bench.config import LORA_FIELDS

# What makes a cell's recipe LoRA's rather than full fine-tuning's: not part of what pairs them.
RECIPE_FIELDS = frozenset({"finetune", "lr", *LORA_FIELDS})


@dataclass
class Side:
    """One recipe (full or LoRA) of one loop over its seeds: medians over the seeds."""
    seeds: int
    lr: float
    samples_per_s: float | None
    peak_mib: float | None
    optimizer_state_mib: float | None
    trainable_params: int | None
    total_params: int | None
    f1_mean: float | None
    f1_ci95: list | None  # the cell's bootstrap interval over the validation pairs, at one seed
    time_to_target_s: float | None = None
    target_reached: str = ""  # "k of n" seeds, when a target was set
    adapter: object = None  # the Adapter group of a LoRA run (its settings in force)


@dataclass
class FinetunePair:
    loop: str
    device: str
    precision: str
    variant: str  # what else tells this pair apart from others in the report (batch size, preset, ...)
    full: Side
    lora: Side
    speed_ratio: float | None  # LoRA's samples/s over full's, median over the seeds run on one machine
    speed_pairs: list = field(default_factory=list)
    speed_kind: Kind = Kind.NONE
    busy: str = ""  # a run not measured alone: siblings.FOREIGN (a busy machine) or SIBLINGS; '' when alone
    difference: AcrossSeeds | None = None  # LoRA minus full, paired on the validation pairs
    verdict: str = ""
    why: str = ""
    unpaired: str = ""  # seeds one recipe ran (ok) and the other did not: left out of both sides' figures


def _pairing_key(c: CellStats) -> str:
    """Everything that must match for a LoRA cell and a full cell to be compared, but the seed."""
    skip = RECIPE_FIELDS | per_loop_fields() | {"seed"}
    return json.dumps({k: v for k, v in settings_of(c.run).items() if k not in skip}, sort_keys=True)


def _side(by_seed: dict) -> Side:
    cells = list(by_seed.values())
    first = cells[0].first

    def med(get):
        values = [v for v in (c.median(get) for c in cells) if v is not None]
        return statistics.median(values) if values else None

    f1 = [c.median(EVAL_F1) for c in cells if c.median(EVAL_F1) is not None]
    state = med(lambda r: r.optimizer_state_bytes / 2**20 if r.optimizer_state_bytes is not None else None)
    model = first.model
    runs = [c.ok[0] for c in cells]
    ttt = time_to_target(runs) if any(r.eval_curve for r in runs) else None
    return Side(seeds=len(cells), lr=cells[0].run.lr, samples_per_s=med(SAMPLES_PER_S), peak_mib=med(PEAK_MIB),
                optimizer_state_mib=state,
                trainable_params=model.n_params_trainable if model else None,
                total_params=(model.adapter.total_params if model and model.adapter else model.n_params if model
                              else None),
                f1_mean=statistics.fmean(f1) if f1 else None,
                f1_ci95=cells[0].f1_ci95() if len(cells) == 1 else None,
                time_to_target_s=ttt.median_s if ttt else None,
                target_reached=f"{ttt.reached} of {ttt.seeds}" if ttt else "",
                adapter=model.adapter if model else None)


def _speed(full: dict, lora: dict) -> tuple[float | None, list, str]:
    """LoRA's samples/s over full's, one ratio per pair of runs: at each seed both ran, the runs of one
    round of the plan (``--repeats``: the same repeat index) measured on one machine; their median,
    and whether a run was not measured alone (``siblings.worse`` of the runs' kinds)."""
    ratios, kinds = [], []
    for seed in set(full) & set(lora):
        a, b = full[seed], lora[seed]
        kinds += [a.busy_kind, b.busy_kind]
        by_repeat = {r.repeat: r for r in a.ok}
        for rb in b.ok:
            ra = by_repeat.get(rb.repeat)
            if ra is not None and ra.samples_per_s and rb.samples_per_s and same_machine([ra, rb]):
                ratios.append(rb.samples_per_s / ra.samples_per_s)
    return (statistics.median(ratios) if ratios else None), sorted(ratios), worse(*kinds)


def _unpaired(full: dict, lora: dict, common: set) -> str:
    """Which seeds ran ok in one recipe only, said as such ('' when every seed ran in both)."""
    parts = [f"seed {', '.join(str(s) for s in sorted(set(side) - common))} ok in {name} only"
             for name, side in (("full", full), ("LoRA", lora)) if set(side) - common]
    return "; ".join(parts)


def finetune_pairs(cells: list[CellStats]) -> list[FinetunePair]:
    """Every loop's LoRA cells beside its full cells, in the report's loop order; empty when the
    records hold only one of the two."""
    varying = varying_of([r for c in cells for r in c.records]) - RECIPE_FIELDS - {"seed"}
    groups: OrderedDict = OrderedDict()
    for c in cells:
        if c.ok and not c.run.flip:
            key = (c.device, c.precision, c.loop, _pairing_key(c))
            groups.setdefault(key, {"full": {}, "lora": {}, "variant": ""})[c.run.finetune][c.seed] = c
    # The seeds each setting ran in any loop or recipe: a loop that ran fewer is advised those seeds.
    swept: dict = {}
    for (device, precision, _, pairing), sides in groups.items():
        swept.setdefault((device, precision, pairing), set()).update(*(set(sides[k]) for k in ("full", "lora")))
    out = []
    for (device, precision, loop, pairing), sides in groups.items():
        full, lora = sides["full"], sides["lora"]
        if not full or not lora:
            continue
        # Both sides' figures over the seeds both ran: a seed that failed on one side would otherwise
        # move that side's mean F1 (and medians) by a seed the other side never saw.
        common = set(full) & set(lora)
        unpaired = _unpaired(full, lora, common)
        if common:
            full = {s: c for s, c in full.items() if s in common}
            lora = {s: c for s, c in lora.items() if s in common}
        ratio, pairs, busy = _speed(full, lora)
        _, difference, word, why = compare_seeds(full, lora, tuple(swept[device, precision, pairing]))  # LoRA - full
        variant = variant_of(next(iter(full.values())).run, varying, flip=False)
        out.append(FinetunePair(loop=loop, device=device, precision=precision, variant=variant,
                                full=_side(full), lora=_side(lora), speed_ratio=ratio, speed_pairs=pairs,
                                speed_kind=paired_kind(ratio, pairs, busy), busy=busy, difference=difference,
                                verdict=word, why=why, unpaired=unpaired))
    out.sort(key=lambda p: (p.device, p.variant, p.precision, order_of(p.loop, LOOP_ORDER)))
    return out
