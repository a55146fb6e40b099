"""Analysis: pure functions from records to typed summaries, used by the report and the CLI.

Cell statistics over repeats (``CellStats``), the groups of cells that should train the same thing,
MFU against one peak per device and precision, the loop-gap rows and their verdicts, the parity
rows, and every tolerance they are judged by.  Nothing here writes Markdown or draws.
"""

from __future__ import annotations

import json
import statistics
from collections import OrderedDict

from bench.peak import train_flops_per_sequence
from bench.summary import latest_per_cell
from loops import LOOPS

PARITY_TOLERANCE = 1e-5  # largest step-wise relative loss difference called parity (--parity)

LOOP_ORDER = tuple(LOOPS)


PRECISION_ORDER = ("fp32", "tf32", "bf16", "fp16")


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


def group_key(r: dict) -> tuple:
    """The cell without its repeat index: repeats of one cell share a key."""
    run = json.dumps(r.get("config", {}).get("run", {}), sort_keys=True)
    return r["loop"], r["device"], r["precision"], run


def _variant(r: dict, varying: set[str]) -> str:
    """A short name for what distinguishes this cell's run config when one report holds several
    (tutorial settings beside a preset, a batch-size sweep); empty when there is one."""
    run = r.get("config", {}).get("run", {})
    parts = []
    if "preset" in varying:
        parts.append(run.get("preset") or "tutorial")
    if "batch_size" in varying:
        parts.append(f"bs {run.get('batch_size')}")
    if "defaults" in varying:
        parts.append(run.get("defaults") or "tutorial")
    if "seed" in varying:  # seeds are never pooled as repeats of one cell
        parts.append(f"seed {run.get('seed')}")
    if run.get("flip"):
        parts.append(f"flip {run['flip']}")
    return " ".join(parts)


def _varying(records: list[dict]) -> set[str]:
    keys = set()
    for key in ("preset", "batch_size", "defaults", "seed"):
        if len({json.dumps(r.get("config", {}).get("run", {}).get(key)) for r in records}) > 1:
            keys.add(key)
    return keys


def device_peak_of(r: dict) -> float | None:
    """One device's peak (TFLOP/s) from a record; records before schema 2 stored DDP cells' peak
    summed over the ranks."""
    peak = r.get("device_peak_tflops")
    if peak and "summed over" in (r.get("device_peak_source") or ""):
        peak /= r.get("world_size") or 1
    return peak


def mfu(r: dict, peak_tflops: float | None = None) -> float | None:
    """Model FLOPs per second over the timed steps, divided by the peak of every device that ran
    them (one device's peak times the world size).  Under DDP the step lists are rank 0's: the FLOPs
    are rank 0's times the world size (the ranks' batches differ, their number and size do not)."""
    m = r.get("model") or {}
    peak = (peak_tflops or device_peak_of(r) or 0) * (r.get("world_size") or 1)
    samples, padded = r.get("step_samples") or [], r.get("step_padded_tokens") or []
    w = r.get("timing_warmup_steps") or 0
    if not (peak and samples and padded and r.get("timed_s") and m.get("n_params_non_embedding")):
        return None
    flops = 0.0
    for n, tokens in zip(samples[w:], padded[w:]):
        length = tokens / n  # every sequence of a batch is padded to the same length
        flops += n * train_flops_per_sequence(m["n_params_non_embedding"], m["num_layers"], m["hidden_size"], length)
    return flops * (r.get("world_size") or 1) / r["timed_s"] / (peak * 1e12)


class CellStats:
    """The repeats of one cell, summarised."""

    def __init__(self, records: list[dict], varying: set[str]):
        self.records = records
        self.ok = [r for r in records if r["status"] == "ok"]
        first = records[0]
        self.loop, self.device, self.precision = first["loop"], first["device"], first["precision"]
        self.run = first.get("config", {}).get("run", {})
        self.variant = _variant(first, varying)
        # The seed (head init, sample order, dropout), and the variant without it: what the cells of
        # one loop at different seeds share (bench/quality.py compares the loops across seeds).
        self.seed = first.get("seed", self.run.get("seed"))
        self.seedless_variant = _variant(first, varying - {"seed"})

    def values(self, field):
        return [r[field] for r in self.ok if r.get(field) is not None]

    def median(self, field):
        v = self.values(field)
        return statistics.median(v) if v else None

    def spread(self, field):
        v = self.values(field)
        return (min(v), max(v)) if len(v) > 1 else None

    def cv(self, field):
        v = self.values(field)
        return statistics.stdev(v) / statistics.fmean(v) if len(v) > 1 and statistics.fmean(v) else None

    def startup_s(self) -> float | None:
        """Median seconds before the first step (the records' ``setup_s.total_s``)."""
        v = [r["setup_s"]["total_s"] for r in self.ok if (r.get("setup_s") or {}).get("total_s") is not None]
        return statistics.median(v) if v else None

    def f1_ci95(self) -> list | None:
        """The F1 interval of the cell's first run that has one (bootstrap over the validation pairs)."""
        return next((r["eval_f1_ci95"] for r in self.ok if r.get("eval_f1_ci95")), None)

    def phases(self) -> dict | None:
        """Mean seconds per step in each phase (bench/phases.py), the median over the repeats that
        recorded a split; None when none did."""
        from bench.phases import PHASES

        split = [r["phase_s_mean"] for r in self.ok if r.get("phase_s_mean")]
        return {p: statistics.median(s[p] for s in split) for p in PHASES} if split else None

    @property
    def busy(self) -> bool:
        """Some run of this cell was measured while the machine was busy (bench.machine.BUSY_RULE)."""
        return any(r.get("machine_busy") for r in self.ok)

    def mfu(self, peak_tflops: float | None = None):
        v = [x for x in (mfu(r, peak_tflops) for r in self.ok) if x is not None]
        return statistics.median(v) if v else None


def phase_delta(base: CellStats, other: CellStats) -> dict | None:
    """Per phase, other's mean seconds a step minus base's; None unless both recorded a split."""
    mine, theirs = other.phases(), base.phases()
    return {p: mine[p] - theirs[p] for p in mine} if mine and theirs else None


def cells_of(records: list[dict]) -> list[CellStats]:
    groups: OrderedDict = OrderedDict()
    latest = latest_per_cell(records)
    varying = _varying(latest)
    for r in latest:
        groups.setdefault(group_key(r), []).append(r)
    cells = [CellStats(rs, varying) for rs in groups.values()]
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
    return next((c for c in group if c.loop == "manual" and c.ok), None)


def tutorial_baseline(cells: list[CellStats]) -> CellStats | None:
    """The manual loop in fp32 at the tutorial's settings (no preset, batch 8), else manual fp32."""
    manual = [c for c in cells if c.loop == "manual" and c.precision == "fp32" and c.ok]
    return next((c for c in manual if not c.run.get("preset") and c.run.get("batch_size") == 8),
                manual[0] if manual else None)


GAP_TOLERANCE = 0.05  # a loop-gap beyond this, in every repeat, is called real


def gap_rows(group: list[CellStats]) -> list[dict]:
    """Each loop's speed against the manual loop's at identical settings.

    The step ratio pairs the loops step by step: they saw the same batches in the same order (the
    checksum says so), so step i of one and step i of the other did the same work, and the median
    of their ratio is free of batch-length variation.  Repeats are paired by repeat index (a sweep
    runs them a round at a time, so repeat r of each loop ran close together in time)."""
    ref = manual_cell(group)
    out = []
    if ref is None:
        return out
    for c in group:
        if c is ref or not c.ok:
            continue
        per_run = []
        for r in c.ok:
            m = next((x for x in ref.ok if x.get("repeat") == r.get("repeat")), None)
            if m is None or m.get("batch_order_checksum") != r.get("batch_order_checksum"):
                continue
            w = max(r.get("timing_warmup_steps") or 0, m.get("timing_warmup_steps") or 0)
            ratios = [a / b for a, b in zip(r["step_s"][w:], m["step_s"][w:]) if b > 0]
            if ratios:
                per_run.append(statistics.median(ratios))
        sps, ref_sps = c.median("samples_per_s"), ref.median("samples_per_s")
        settings = c.ok[0].get("settings") or {}
        out.append({"loop": c.loop, "runs": len(per_run), "sps_ratio": sps / ref_sps if sps and ref_sps else None,
                    "busy": c.busy or ref.busy,
                    "step_ratio": statistics.median(per_run) if per_run else None,
                    "step_ratio_range": (min(per_run), max(per_run)) if per_run else None,
                    "manual_cv": ref.cv("samples_per_s"), "phase_delta_s": phase_delta(ref, c),
                    "extra_work": [f"{c.loop} {text}" for text in settings.get("extra_work_per_step") or ()]})
    return out


def phase_note(row: dict) -> str:
    """Where a loop's step time differs from the manual loop's: the change of its mean step and the
    phases that carry it, largest first (those moving at least a tenth of the change or 0.1 ms)."""
    delta = row.get("phase_delta_s")
    if not delta:
        return "no phase split recorded"
    total = sum(delta.values())
    floor = max(abs(total) / 10, 1e-4)
    moved = sorted((p for p in delta if abs(delta[p]) >= floor), key=lambda p: -abs(delta[p]))
    parts = ", ".join(f"`{p}` {delta[p] * 1000:+.1f} ms" for p in moved) or "no phase moves by 0.1 ms"
    return f"{total * 1000:+.1f} ms/step: {parts}"


def paired_kind(ratio: float | None, pairs: list[float], busy: bool = False) -> str:
    """What paired runs say of a ratio (B over A, paired by repeat), in one word: ``same`` (the median
    within GAP_TOLERANCE of 1), ``single`` (one pair cannot say), ``busy`` (the machine was),
    ``real`` (beyond the tolerance, on the same side, in every pair), ``noise`` (not in every pair),
    ``n/a`` (no ratio).  The gap table, ``bench compare`` and ``bench explain`` all judge by it."""
    if ratio is None:
        return "n/a"
    if abs(ratio - 1) <= GAP_TOLERANCE:
        return "same"
    if len(pairs) < 2:
        return "single"
    if busy:
        return "busy"
    beyond = all(p > 1 + GAP_TOLERANCE for p in pairs) or all(p < 1 - GAP_TOLERANCE for p in pairs)
    return "real" if beyond else "noise"


def gap_kind(row: dict) -> str:
    """A loop's gap to the manual loop, judged by ``paired_kind`` over its repeats' step ratios (their
    smallest and largest stand for all of them: every one is beyond the tolerance on one side exactly
    when both ends are)."""
    lo, hi = row["step_ratio_range"] or (None, None)
    return paired_kind(row["step_ratio"], [lo, hi][:row["runs"]], row.get("busy"))


def gap_verdict(row: dict) -> str:
    kind, ratio, runs = gap_kind(row), row["step_ratio"], row["runs"]
    if kind == "n/a":
        return "not comparable: no run saw the manual loop's batches in the same order"
    gap = ratio - 1
    if kind == "same":
        return f"within {GAP_TOLERANCE:.0%} of manual"
    slower = "slower" if gap > 0 else "faster"
    lo, hi = row["step_ratio_range"]
    if kind == "single":
        return (f"{abs(gap):.0%} {slower} in a single run; one run cannot tell a gap from the machine's "
                "run-to-run noise: rerun with `--repeats 3` or more")
    if kind == "busy":
        return (f"{abs(gap):.0%} {slower} at the median, but not called real: the machine was busy while this loop "
                "or the manual loop was measured (⚠ busy in the table above); rerun on a quiet machine")
    if kind == "real":
        why = "; ".join(row["extra_work"]) or "no per-step extra work is recorded for this loop"
        where = f", {phase_note(row)}" if row.get("phase_delta_s") else ""
        return (f"{abs(gap):.0%} {slower} in every one of {runs} runs: a real gap{where}. "
                f"Per-step work beyond the manual loop: {why}")
    return (f"{abs(gap):.0%} {slower} at the median, but not beyond {GAP_TOLERANCE:.0%} in every run (step ratio "
            f"{lo:.2f}–{hi:.2f} across {runs} runs): not separable from this machine's run-to-run noise at "
            f"{runs} repeats")


def shared_peaks(cells: list[CellStats]) -> dict[str, tuple[float, str]]:
    """One peak per precision for all cells of a device: a datasheet figure as recorded, or the
    best of the GEMM measurements the cells made on the spot (one measurement swings with the
    load of a shared machine; the best is the closest to what the device can do)."""
    out: dict[str, tuple[float, str]] = {}
    for precision in dict.fromkeys(c.precision for c in cells):
        recs = [r for c in cells if c.precision == precision for r in c.ok if device_peak_of(r)]
        if not recs:
            continue
        best = max(recs, key=device_peak_of)
        source = best.get("device_peak_source", "").split(", summed over")[0]
        if source.startswith("measured"):
            measured = [r for r in recs if ", handed from cell " not in (r.get("device_peak_source") or "")]
            source = f"best of {len(measured)} on-the-spot measurements, {source}"
        out[precision] = (device_peak_of(best), source + " (per device)")
    return out


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
    from bench.config import run_config_from_dict
    from loops.native import MACHINERY, TRAINING_MACHINERY, inert, machinery

    mine, theirs = c.run, ref.run
    out = [f"{k} ({theirs.get(k)!r} in {ref.loop}, {mine.get(k)!r} in {c.loop})"
           for k in sorted(set(mine) | set(theirs) - NOT_IN_THE_LOSSES)
           if k not in NOT_IN_THE_LOSSES and json.dumps(mine.get(k)) != json.dumps(theirs.get(k))]
    for cell in (ref, c):
        run = run_config_from_dict(cell.run)
        world = (cell.ok[0] if cell.ok else cell.records[0]).get("world_size") or 1
        for key, value in machinery(cell.loop, run).items():
            harness = MACHINERY[cell.loop][key][1]
            if key in TRAINING_MACHINERY and value != harness and not inert(cell.loop, key, cell.device, world,
                                                                             run.grad_accum):
                out.append(f"{key} ({value!r} in {cell.loop}, the harness sets {harness!r})")
    return out


def parity_rows(group: list[CellStats]) -> list[dict]:
    """Largest step-wise relative loss difference of each loop against the manual loop, and what in
    their settings makes them train different things (``differs``: then they need not agree)."""
    ref = manual_cell(group)
    out = []
    if ref is None:
        return out
    ref_losses = ref.ok[0]["step_losses"]
    for c in group:
        if c is ref or not c.ok:
            continue
        losses = c.ok[0]["step_losses"]
        largest, worst = loss_difference(losses, ref_losses)
        out.append({"loop": c.loop, "steps": min(len(ref_losses), len(losses)), "max_rel_diff": largest,
                    "at_step": worst + 1 if largest else None,
                    "same_batches": c.ok[0].get("batch_order_checksum") == ref.ok[0].get("batch_order_checksum"),
                    "differs": training_differences(c, ref)})
    return out


def parity_verdict(row: dict) -> str:
    """``agrees``, ``fails`` (same settings, losses apart or other batches) or ``differs`` (settings
    differ: not expected to agree, and no failure)."""
    if row["differs"]:
        return "differs"
    good = row["max_rel_diff"] is not None and row["max_rel_diff"] <= PARITY_TOLERANCE and row["same_batches"]
    return "agrees" if good else "fails"
