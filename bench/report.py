"""The Markdown report: a pure function of records (never called from a loop).

    python -m bench report OUT [-o reports/NAME.md]

Writes the Markdown and its PNG plots side by side.  Every number in it is computed from the
records in OUT/results.jsonl; nothing is measured here.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import OrderedDict
from pathlib import Path

from bench import markdown as md
from bench.peak import train_flops_per_sequence
from bench.records import read_records
from bench.summary import latest_per_cell

REPORT_TITLE = "# bench report"  # a file that starts otherwise was not written here, and is never overwritten
from loops import LOOPS

LOOP_ORDER = tuple(LOOPS)
PRECISION_ORDER = ("fp32", "tf32", "bf16", "fp16")
# Settings that name a loop's own machinery rather than what it trains; shown, never flagged.  Each
# record adds the keys its loop declared (``loop_specific_keys``: the keys of its LoopResult.extra).
LOOP_SPECIFIC = {"param_groups", "grad_scaler_final_scale", "device", "loop_specific_keys", "extra_work_per_step",
                 "compiled"}


def loop_specific(settings_of_loops: dict) -> set:
    """Generic loop-specific keys, those each loop declared, and (records before the declaration)
    keys named after their loop."""
    keys = set(LOOP_SPECIFIC)
    for loop, settings in settings_of_loops.items():
        keys |= set(settings.get("loop_specific_keys") or ())
        keys |= {k for k in settings if k.startswith(f"{loop}_")}
    return keys


# ---------------------------------------------------------------------------------------------
# Grouping and numbers
# ---------------------------------------------------------------------------------------------

LOOP_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
LOOP_STYLES = (("-", 2.5), ("--", 1.5), (":", 1.5), ("-.", 1.5), ((0, (5, 1)), 1.5), ((0, (1, 1)), 1.5))


def _order(value, order):
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
    return " ".join(parts)


def _varying(records: list[dict]) -> set[str]:
    keys = set()
    for key in ("preset", "batch_size"):
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


class Cell:
    """The repeats of one cell, summarised."""

    def __init__(self, records: list[dict], varying: set[str]):
        self.records = records
        self.ok = [r for r in records if r["status"] == "ok"]
        first = records[0]
        self.loop, self.device, self.precision = first["loop"], first["device"], first["precision"]
        self.run = first.get("config", {}).get("run", {})
        self.variant = _variant(first, varying)

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

    @property
    def busy(self) -> bool:
        """Some run of this cell was measured while the machine was busy (bench.machine.BUSY_RULE)."""
        return any(r.get("machine_busy") for r in self.ok)

    def mfu(self, peak_tflops: float | None = None):
        v = [x for x in (mfu(r, peak_tflops) for r in self.ok) if x is not None]
        return statistics.median(v) if v else None


def cells_of(records: list[dict]) -> list[Cell]:
    groups: OrderedDict = OrderedDict()
    latest = latest_per_cell(records)
    varying = _varying(latest)
    for r in latest:
        groups.setdefault(group_key(r), []).append(r)
    cells = [Cell(rs, varying) for rs in groups.values()]
    cells.sort(key=lambda c: (c.device, c.variant, _order(c.precision, PRECISION_ORDER), _order(c.loop, LOOP_ORDER)))
    return cells


def _f(value, fmt="{:.1f}", missing="-"):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return fmt.format(value)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

def _header(records: list[dict]) -> list[str]:
    commands = list(dict.fromkeys(r.get("command") for r in records if r.get("command")))
    ok = [r for r in records if r["status"] == "ok"]
    env = (ok or records)[0].get("env") or {}
    lines = [f"{REPORT_TITLE}: three ways to fine-tune BERT on GLUE MRPC", ""]
    lines += [f"Made by `python -m bench report` from {len(records)} records "
              f"({sum(r['status'] == 'ok' for r in records)} ok, "
              f"{sum(r['status'] == 'skipped' for r in records)} skipped, "
              f"{sum(r['status'] == 'failed' for r in records)} failed). Every figure below comes from those records.", ""]
    lines += ["## Command", ""] + md.fenced(commands or ["(not recorded)"]) + [""]
    lines += ["## Environment", ""]
    rows = [("python", env.get("python")), ("torch", env.get("torch")), ("transformers", env.get("transformers")),
            ("accelerate", env.get("accelerate")), ("datasets", env.get("datasets")),
            ("CPU", f"{env.get('cpu_name', '?')} (torch capability {env.get('cpu_capability', '?')}, "
                    f"AMX-BF16 {'yes' if env.get('amx_bf16') else 'no'}, AVX512-BF16 {'yes' if env.get('avx512_bf16') else 'no'}, "
                    f"{env.get('torch_threads', '?')} threads)"),
            ("GPU", f"{env['gpu_name']} x{env.get('gpu_count')} (compute capability {env.get('gpu_capability')}, CUDA {env.get('cuda')})"
             if env.get("gpu_name") else "none used"),
            ("platform", env.get("platform")), ("git", env.get("git_sha"))]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {md.text(v)} |" for k, v in rows] + [""]
    if ok:
        r0 = ok[0]
        m = r0.get("model") or {}
        runs = [r["config"]["run"] for r in ok]

        def common(key, fmt=str):
            """The setting if every ok cell shares it; the variant columns say what differs."""
            values = {json.dumps(run.get(key), sort_keys=True) for run in runs}
            return fmt(runs[0].get(key)) if len(values) == 1 else "varies by cell"

        steps = (f"{common('max_steps')} optimizer steps" if runs[0].get("max_steps") else f"{common('epochs')} epochs")
        model = common("model")
        if model == "varies by cell" or len({json.dumps(r.get("model"), sort_keys=True) for r in ok}) > 1:
            model_line = "- model: varies by cell (each record names its model, weights and size)"
        else:
            model_line = (f"- model: {md.code(model)} — weights {md.code(m.get('weights'))}; "
                          f"tokenizer {md.code(m.get('tokenizer'))}; "
                          f"{m.get('n_params', 0) / 1e6:.1f} M parameters, {m.get('num_layers')} layers, hidden {m.get('hidden_size')}")
        lines += ["## What was trained", "", model_line,
                  f"- data: {md.code(r0.get('data_source'))} — {common('train_samples', lambda v: v or 3668)} training pairs, "
                  f"{r0.get('eval_examples')} validation pairs",
                  f"- schedule: lr {common('lr')}, batch {common('batch_size')}, {steps}, {common('scheduler')} decay, "
                  f"{common('warmup_steps')} warm-up steps, weight decay {common('weight_decay')}, "
                  f"clipping {common('max_grad_norm', lambda v: v or 'none')}, AdamW {common('adamw')}, seed {common('seed')}",
                  f"- timing: the first {common('timing_warmup')} optimizer steps of each run are left out; "
                  "a step is wall time from the end of one optimizer step to the end of the next", ""]
    return lines


def _device_tables(cells: list[Cell], plots: dict) -> list[str]:
    lines = []
    for device in dict.fromkeys(c.device for c in cells):
        dev_cells = [c for c in cells if c.device == device and c.ok]
        if not dev_cells:
            continue
        base = tutorial_baseline(dev_cells)
        base_sps = base.median("samples_per_s") if base else None
        repeats = max(len(c.ok) for c in dev_cells)
        mem_field = "peak_alloc_mib" if device == "cuda" else "peak_rss_mib"
        lines += [f"## {device}", ""]
        peaks = shared_peaks(dev_cells)
        lines += [f"Samples/s is the median of {repeats} run(s) per cell, each in a fresh process; spread is min–max "
                  "and CV the coefficient of variation across them. Speed-up is against manual-fp32 on this device"
                  + ("" if base else " (no manual-fp32 cell here)") + ". "
                  + ("Memory is CUDA peak allocated (peak reserved in brackets). " if device == "cuda" else
                     "Memory is the cell process's peak RSS. ")
                  + "MFU: model FLOPs over the padded batches per second, over the peak of the cell's precision: "
                  + ("; ".join(f"{p}: {t * 1000:.1f} GFLOP/s ({src})" for p, (t, src) in peaks.items())
                     if peaks else "no peak recorded") + ".", ""]
        header = ["loop", "precision"] + (["variant"] if any(c.variant for c in dev_cells) else []) + [
            "samples/s", "spread", "CV", "speed-up", "real tok/s", "step p50 ms", "step p90 ms", "peak MiB", "MFU",
            "val acc", "val F1", "final loss"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for c in dev_cells:
            sps = c.median("samples_per_s")
            spread = c.spread("samples_per_s")
            mem = _f(c.median(mem_field), "{:.0f}")
            if device == "cuda" and c.median("peak_reserved_mib") is not None:
                mem += f" ({c.median('peak_reserved_mib'):.0f})"
            row = [c.loop + (" ⚠ busy" if c.busy else ""), c.precision] + ([c.variant or "tutorial"] if "variant" in header else []) + [
                _f(sps), f"{spread[0]:.1f}–{spread[1]:.1f}" if spread else "-", _f(c.cv("samples_per_s"), "{:.1%}"),
                _f(sps / base_sps if sps and base_sps else None, "{:.2f}×"),
                _f(c.median("real_tokens_per_s"), "{:.0f}"),
                _f(c.median("step_s_p50") and c.median("step_s_p50") * 1000),
                _f(c.median("step_s_p90") and c.median("step_s_p90") * 1000),
                mem, _f(c.mfu(peaks.get(c.precision, (None,))[0]), "{:.2%}"),
                _f(c.median("eval_accuracy"), "{:.4f}"), _f(c.median("eval_f1"), "{:.4f}"),
                _f(c.median("train_loss_final"), "{:.4f}")]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        busy = [c for c in dev_cells if c.busy]
        if busy:
            from bench.machine import BUSY_RULE

            lines += [f"⚠ busy: {len(busy)} cell(s) had a run measured while the machine was busy ({BUSY_RULE}); "
                      "their speed says more about the machine than about the loop: "
                      + "; ".join(f"{c.loop} {c.precision}: " + md.text(", ".join(
                          w for r in c.ok for w in (r.get("machine_busy_why") or []))) for c in busy) + ".", ""]
        for name in ("throughput", "memory"):
            if (device, name) in plots:
                lines += [f"![{name} on {device}]({plots[(device, name)]})", ""]
    return lines


def comparison_groups(cells: list[Cell]) -> OrderedDict:
    """Cells that should train the same thing: same device, precision and variant, one per loop."""
    groups: OrderedDict = OrderedDict()
    for c in cells:
        groups.setdefault((c.device, c.precision, c.variant), []).append(c)
    return groups


def manual_cell(group: list[Cell]) -> Cell | None:
    """The reference of a comparison group: its manual loop, if it ran."""
    return next((c for c in group if c.loop == "manual" and c.ok), None)


def tutorial_baseline(cells: list[Cell]) -> Cell | None:
    """The manual loop in fp32 at the tutorial's settings (no preset, batch 8), else manual fp32."""
    manual = [c for c in cells if c.loop == "manual" and c.precision == "fp32" and c.ok]
    return next((c for c in manual if not c.run.get("preset") and c.run.get("batch_size") == 8),
                manual[0] if manual else None)


def _fast_section(cells: list[Cell]) -> list[str]:
    """Each loop's tutorial-settings fp32 cell beside its preset cells, with the ratio."""
    fast = [c for c in cells if c.ok and c.run.get("preset")]
    if not fast:
        return []
    lines = ["## How fast can each loop go?", "",
             "Each loop at the tutorial's settings in fp32 beside the same loop under a preset (in every precision "
             "run); the ratio is samples/s over that loop's tutorial-fp32 cell, and `vs manual` over the manual "
             "loop's tutorial-fp32 cell on the same device.", ""]
    lines += ["| device | loop | preset | precision | fast-path settings | samples/s | × own tutorial fp32 | × manual tutorial fp32 | val F1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in fast:
        own = next((b for b in cells if b.ok and b.device == c.device and b.loop == c.loop and b.precision == "fp32"
                    and not b.run.get("preset")), None)
        manual = tutorial_baseline([b for b in cells if b.device == c.device])
        sps = c.median("samples_per_s")
        own_sps = own.median("samples_per_s") if own else None
        man_sps = manual.median("samples_per_s") if manual else None
        knobs = ", ".join(f"{k}={c.run.get(k)}" for k in ("batch_size", "group_by_length", "pad_to_multiple_of",
                                                          "adamw", "compile", "attn", "num_workers", "pin_memory")
                          if c.run.get(k) not in (None, False, 0, "sdpa", "torch-default") or k == "batch_size")
        lines.append(f"| {c.device} | {c.loop} | {c.run.get('preset')} | {c.precision} | {md.text(knobs)} | {_f(sps)} | "
                     f"{_f(sps / own_sps if sps and own_sps else None, '{:.2f}×')} | "
                     f"{_f(sps / man_sps if sps and man_sps else None, '{:.2f}×')} | {_f(c.median('eval_f1'), '{:.4f}')} |")
    return lines + [""]


GAP_TOLERANCE = 0.05


def gap_rows(group: list[Cell]) -> list[dict]:
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
                    "manual_cv": ref.cv("samples_per_s"),
                    "extra_work": [f"{c.loop} {text}" for text in settings.get("extra_work_per_step") or ()]})
    return out


def gap_verdict(row: dict) -> str:
    ratio, runs = row["step_ratio"], row["runs"]
    if ratio is None:
        return "not comparable: no run saw the manual loop's batches in the same order"
    gap = ratio - 1
    if abs(gap) <= GAP_TOLERANCE:
        return f"within {GAP_TOLERANCE:.0%} of manual"
    slower = "slower" if gap > 0 else "faster"
    lo, hi = row["step_ratio_range"]
    if runs < 2:
        return (f"{abs(gap):.0%} {slower} in a single run; one run cannot tell a gap from the machine's "
                "run-to-run noise: rerun with `--repeats 3` or more")
    if row.get("busy"):
        return (f"{abs(gap):.0%} {slower} at the median, but not called real: the machine was busy while this loop "
                "or the manual loop was measured (⚠ busy in the table above); rerun on a quiet machine")
    if (lo > 1 + GAP_TOLERANCE) or (hi < 1 - GAP_TOLERANCE):
        why = "; ".join(row["extra_work"]) or "no per-step extra work is recorded for this loop"
        return f"{abs(gap):.0%} {slower} in every one of {runs} runs: a real gap. Per-step work beyond the manual loop: {why}"
    return (f"{abs(gap):.0%} {slower} at the median, but not beyond {GAP_TOLERANCE:.0%} in every run (step ratio "
            f"{lo:.2f}–{hi:.2f} across {runs} runs): not separable from this machine's run-to-run noise at "
            f"{runs} repeats")


def _gap_section(cells: list[Cell]) -> list[str]:
    rows = [(key, row) for key, group in comparison_groups(cells).items() for row in gap_rows(group)]
    if not rows:
        return []
    lines = ["## Is each loop as fast as the manual loop?", "",
             "At identical settings (each group's settings are shown side by side under *Do the loops train the same "
             "thing?*) the loops do the same "
             "arithmetic on the same batches. `step ratio` is the median over steps of this loop's step time over the "
             "manual loop's for the same batch (repeats paired by index; its range across repeats beside it); "
             f"a gap beyond {GAP_TOLERANCE:.0%} counts as the loop's own only when every repeat shows it, and is then listed "
             "with the per-step work the loop does beyond the manual loop.", "",
             "| device | precision | variant | loop | samples/s ÷ manual | step ratio | range over runs | manual CV | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (device, precision, variant), row in rows:
        rng = row["step_ratio_range"]
        lines.append(f"| {device} | {precision} | {variant or '-'} | {row['loop']} | {_f(row['sps_ratio'], '{:.3f}')} | "
                     f"{_f(row['step_ratio'], '{:.3f}')} | {f'{rng[0]:.3f}–{rng[1]:.3f}' if rng and row['runs'] > 1 else '-'} | "
                     f"{_f(row['manual_cv'], '{:.1%}')} | {gap_verdict(row)} |")
    return lines + [""]


def _time_to_accuracy(cells: list[Cell]) -> list[str]:
    timed = [c for c in cells if c.ok and c.ok[0].get("eval_curve")]
    if not timed:
        return []
    target = timed[0].run.get("target_f1")
    lines = ["## Time to accuracy", "",
             f"Validation F1 every {timed[0].run.get('eval_every')} optimizer steps; time to target is wall time from "
             f"the first step until F1 first reached {target}, evaluations included (they are excluded from samples/s).", "",
             "| device | loop | precision | variant | time to target s | at step | best F1 | evaluations | evaluation s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in timed:
        r = c.ok[0]
        best = max(e["eval_f1"] for e in r["eval_curve"])
        lines.append(f"| {c.device} | {c.loop} | {c.precision} | {c.variant or '-'} | "
                     f"{_f(c.median('time_to_target_s'))} | {r.get('time_to_target_step') or 'not reached'} | "
                     f"{best:.4f} | {len(r['eval_curve'])} | {_f(r.get('eval_during_training_s'))} |")
    return lines + [""]


def shared_peaks(cells: list[Cell]) -> dict[str, tuple[float, str]]:
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
            source = f"best of {len(recs)} on-the-spot measurements, {source}"
        out[precision] = (device_peak_of(best), source + " (per device)")
    return out


def _not_run(records: list[dict]) -> list[str]:
    bad = [r for r in latest_per_cell(records) if r["status"] != "ok"]
    lines = ["## Skipped and failed cells", ""]
    if not bad:
        return lines + ["None: every cell ran and is ok.", ""]
    lines += ["| loop | device | precision | status | reason |", "|---|---|---|---|---|"]
    for r in bad:
        lines.append(f"| {md.text(r['loop'])} | {md.text(r['device'])} | {md.text(r['precision'])} | "
                     f"{md.text(r['status'])} | {md.text(r.get('reason') or '')} |")
    return lines + [""]


def _settings_diff(group: list[Cell]) -> list[str]:
    """Side-by-side effective settings of the loops of one device/precision, differences marked."""
    by_loop = OrderedDict((c.loop, c.ok[0].get("settings") or {}) for c in group if c.ok)
    if len(by_loop) < 2:
        return []
    keys = list(dict.fromkeys(k for s in by_loop.values() for k in s))
    specific = loop_specific(by_loop)
    lines = ["| setting | " + " | ".join(by_loop) + " | |", "|---|" + "---|" * len(by_loop) + "---|"]
    diffs = []
    for k in keys:
        vals = [json.dumps(s.get(k), sort_keys=True, default=str) for s in by_loop.values()]
        differs = len(set(vals)) > 1
        mark = "" if not differs else ("loop-specific" if k in specific else "**differs**")
        if differs and k not in specific:
            diffs.append(k)
        cells = [v if len(v) <= 60 else v[:57] + "..." for v in vals]
        name = f"**{md.text(k)}**" if mark == "**differs**" else md.text(k)
        lines.append(f"| {name} | " + " | ".join(md.code(c) for c in cells) + f" | {mark} |")
    summary = (f"Settings in force that differ between the loops: **{', '.join(diffs)}**." if diffs else
               "The settings in force are the same in every loop (loop-specific machinery aside).")
    return [summary, ""] + lines + [""]


def parity_rows(group: list[Cell]) -> list[dict]:
    """Largest step-wise relative loss difference of each loop against the manual loop."""
    ref = manual_cell(group)
    out = []
    if ref is None:
        return out
    ref_losses = ref.ok[0]["step_losses"]
    for c in group:
        if c is ref or not c.ok:
            continue
        losses = c.ok[0]["step_losses"]
        n = min(len(ref_losses), len(losses))
        rel = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(ref_losses[:n], losses[:n])]
        worst = max(range(n), key=lambda i: rel[i]) if n else None
        out.append({"loop": c.loop, "steps": n, "max_rel_diff": rel[worst] if n else None,
                    "at_step": worst + 1 if n and rel[worst] > 0 else None,
                    "same_batches": c.ok[0].get("batch_order_checksum") == ref.ok[0].get("batch_order_checksum")})
    return out


def _parity_section(cells: list[Cell], plots: dict) -> list[str]:
    lines = ["## Do the loops train the same thing?", "",
             "Same data order, same initial weights, same RNG state at the first step: the step losses should "
             "agree. The largest step-wise relative difference of each loop's loss against the manual loop's, the "
             "final metrics, and the settings read back from each loop's live objects:", ""]
    for (device, precision, variant), group in comparison_groups(cells).items():
        if sum(1 for c in group if c.ok) < 2:
            continue
        title = f"{device} / {precision}" + (f" / {variant}" if variant else "")
        lines += [f"### {title}", ""]
        rows = parity_rows(group)
        if rows:
            lines += ["| loop vs manual | steps compared | largest relative loss difference | at step | same batches, same order |",
                      "|---|---|---|---|---|"]
            for row in rows:
                lines.append(f"| {row['loop']} | {row['steps']} | {_f(row['max_rel_diff'], '{:.2e}')} | "
                             f"{row['at_step'] or '-'} | {'yes' if row['same_batches'] else '**no**'} |")
            lines.append("")
        lines += ["| loop | val acc | val F1 | final loss |", "|---|---|---|---|"]
        for c in group:
            if c.ok:
                lines.append(f"| {c.loop} | {_f(c.median('eval_accuracy'), '{:.4f}')} | "
                             f"{_f(c.median('eval_f1'), '{:.4f}')} | {_f(c.median('train_loss_final'), '{:.4f}')} |")
        lines.append("")
        if (device, precision, variant, "loss") in plots:
            lines += [f"![loss curves, {title}]({plots[(device, precision, variant, 'loss')]})", ""]
        lines += _settings_diff(group)
    return lines


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------

def _plots(cells: list[Cell], out_md: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = out_md.stem
    made = {}
    for device in dict.fromkeys(c.device for c in cells):
        dev = [c for c in cells if c.device == device and c.ok]
        if not dev:
            continue
        labels = [f"{c.loop}\n{c.precision}" + (f"\n{c.variant}" if c.variant else "") for c in dev]
        for name, field, ylabel in (("throughput", "samples_per_s", "samples/s (median)"),
                                    ("memory", "peak_alloc_mib" if device == "cuda" else "peak_rss_mib",
                                     "peak MiB" + (" (CUDA allocated)" if device == "cuda" else " (process RSS)"))):
            values = [c.median(field) or 0 for c in dev]
            fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(dev) + 2), 4))
            colors = [LOOP_COLORS[_order(c.loop, LOOP_ORDER) % len(LOOP_COLORS)] for c in dev]
            ax.bar(range(len(dev)), values, color=colors)
            if name == "throughput":
                for i, c in enumerate(dev):
                    s = c.spread(field)
                    if s:
                        ax.plot([i, i], s, color="black", linewidth=1)
            ax.set_xticks(range(len(dev)))
            ax.set_xticklabels(labels, fontsize=8)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{name} on {device}")
            fig.tight_layout()
            path = out_md.parent / f"{stem}-{device}-{name}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            made[(device, name)] = path.name
    for (device, precision, variant), group in comparison_groups([c for c in cells if c.ok]).items():
        fig, ax = plt.subplots(figsize=(7, 4))
        styles = {loop: LOOP_STYLES[i % len(LOOP_STYLES)] for i, loop in enumerate(LOOP_ORDER)}
        n = max(len(c.ok[0]["step_losses"]) for c in group)
        # Over hundreds of steps the per-batch losses are a band; a running mean shows the trend (the
        # raw losses stay faintly behind it, and the parity table compares them step by step).
        window = n // 50 if n > 200 else 1
        for c in group:
            losses = c.ok[0]["step_losses"]
            style, width = styles.get(c.loop, ("-", 1))
            steps = range(1, len(losses) + 1)
            if window > 1:
                if c.loop == "manual":
                    ax.plot(steps, losses, "-", color="0.85", linewidth=0.5, label="manual, per step")
                losses = [sum(losses[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1))
                          for i in range(len(losses))]
            ax.plot(steps, losses, linestyle=style, linewidth=width, label=c.loop)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss" + (f" (running mean over {window} steps)" if window > 1 else ""))
        ax.set_title(f"loss per step, {device} / {precision}" + (f" / {variant}" if variant else ""))
        ax.legend()
        fig.tight_layout()
        tag = f"{device}-{precision}{'-' + variant if variant else ''}".replace(" ", "-")  # no spaces in links
        path = out_md.parent / f"{stem}-{tag}-loss.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made[(device, precision, variant, "loss")] = path.name
    return made


# ---------------------------------------------------------------------------------------------

def render(records: list[dict], out_md: Path) -> str:
    """Write the report (Markdown + PNGs beside it) and return the Markdown."""
    out_md.parent.mkdir(parents=True, exist_ok=True)
    cells = cells_of(records)
    plots = _plots(cells, out_md)
    lines = (_header(records) + _device_tables(cells, plots) + _fast_section(cells) + _gap_section(cells)
             + _time_to_accuracy(cells)
             + _parity_section(cells, plots) + _not_run(records))
    text = "\n".join(lines).rstrip() + "\n"
    out_md.write_text(text, encoding="utf-8")
    return text


def _written_by_report(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(REPORT_TITLE)
    except (OSError, UnicodeDecodeError):
        return False


def cmd_report(args) -> int:
    import sys

    from bench.config import ConfigError

    source = Path(args.results)
    results = source / "results.jsonl" if source.is_dir() else source
    out_md = Path(args.output) if args.output else results.parent / "report.md"
    # The report never writes over records, nor over any file it did not write itself.
    if out_md.exists() and out_md.resolve() == results.resolve():
        raise ConfigError(f"-o {out_md}: that is the results file being reported on; give a .md path")
    if out_md.is_dir():
        raise ConfigError(f"-o {out_md}: is a folder; give a .md file path")
    if out_md.exists() and not _written_by_report(out_md):
        raise ConfigError(f"-o {out_md}: exists and was not written by bench report; give a new path")
    if out_md.suffix.lower() != ".md":
        raise ConfigError(f"-o {out_md}: the report is Markdown; give a path ending in .md")
    records = read_records(source)
    render(records, out_md)
    print(f"report: {out_md}", file=sys.stderr)
    return 0
