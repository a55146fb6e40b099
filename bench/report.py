"""The Markdown report: a pure function of records (never called from a loop).

    python -m bench report OUT [-o reports/NAME.md]

Writes the Markdown and its PNG plots side by side.  Every number in it is computed from the
records in OUT/results.jsonl; nothing is measured here.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

from bench import markdown as md
from bench.analysis import (GAP_TOLERANCE, PARITY_TOLERANCE, CellStats, cells_of, comparison_groups, gap_kind,
                            gap_rows, gap_verdict, loop_specific, manual_cell, parity_rows, parity_verdict, phase_note, shared_peaks,
                            tutorial_baseline)
from bench.explain import ALL, explain_rows
from bench.phases import PHASES
from bench.plots import draw_plots
from bench.quality import quality_rows
from bench.records import read_records
from bench.summary import latest_per_cell

REPORT_TITLE = "# bench report"  # a file that starts otherwise was not written here, and is never overwritten

# ---------------------------------------------------------------------------------------------
# Grouping and numbers
# ---------------------------------------------------------------------------------------------

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
    lines = [f"{REPORT_TITLE}: fine-tuning BERT on GLUE MRPC, loop by loop", ""]
    lines += [f"Made by `python -m bench report` from {len(records)} records "
              f"({sum(r['status'] == 'ok' for r in records)} ok, "
              f"{sum(r['status'] == 'skipped' for r in records)} skipped, "
              f"{sum(r['status'] == 'failed' for r in records)} failed). Every figure below comes from those records.", ""]
    lines += ["## Command", ""] + md.fenced(commands or ["(not recorded)"]) + [""]
    lines += ["## Environment", ""]
    rows = [("python", env.get("python")), ("torch", env.get("torch")), ("transformers", env.get("transformers")),
            ("accelerate", env.get("accelerate")), ("datasets", env.get("datasets")),
            ("lightning", env.get("lightning") or "not installed"),
            ("CPU", f"{env.get('cpu_name', '?')}, family/model {env.get('cpu_family_model', '?')} (torch capability {env.get('cpu_capability', '?')}, "
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
                  f"- schedule: lr {common('lr')}, batch {common('batch_size')}{_in_force(ok)}, {steps}, {common('scheduler')} decay, "
                  f"{common('warmup_steps')} warm-up steps, weight decay {common('weight_decay')}, "
                  f"clipping {common('max_grad_norm', lambda v: v or 'none')}, AdamW {common('adamw')}, seed {common('seed')}",
                  f"- timing: the first {common('timing_warmup')} optimizer steps of each run are left out; "
                  "a step is wall time from the end of one optimizer step to the end of the next",
                  *_majority_line(ok), ""]
    return lines


def _in_force(ok: list[dict]) -> str:
    """What a batch size or an accumulation larger than the data became (records that say so)."""
    said = []
    for key, asked_key, what in (("batch_size_in_force", "batch_size", "batch"),
                                 ("grad_accum_in_force", "grad_accum", "accumulation")):
        pairs = {(r["config"]["run"].get(asked_key), (r.get("settings") or {}).get(key)) for r in ok}
        cut = sorted({f"{asked} → {got}" for asked, got in pairs if got is not None and asked is not None and got != asked})
        if cut:
            said.append(f"{what} {', '.join(cut)}")
    return f" (in force, as the training pairs allow: {'; '.join(said)})" if said else ""


def _anchor(heading: str) -> str:
    """The link GitHub (and most Markdown renderers) give a heading."""
    import re

    return "#" + re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


GAP_HEADING = "Is each loop as fast as the manual loop?"
PHASE_HEADING = "Where the time goes"
PARITY_HEADING = "Do the loops train the same thing?"
_KIND_WORDS = {"same": "within {tol} of manual's speed", "real": "{pct} {dir} than manual in every run",
               "noise": "{pct} {dir} at the median, not in every run: noise at this many repeats",
               "single": "{pct} {dir} in one run: cannot be told from noise", "busy": "{pct} {dir}, measured on a busy machine",
               "n/a": "not comparable with manual (other batches)"}


def _bottom_line(cells: list[CellStats], records: list[dict]) -> list[str]:
    """The answer, per device x precision (x variant): one sentence per loop, then what the evidence
    supports and what it cannot tell.  Every figure links to the section it comes from."""

    groups = [(key, [c for c in group if c.ok]) for key, group in comparison_groups(cells).items()]
    groups = [(key, group) for key, group in groups if group]
    if not groups:
        return ["## Bottom line", "", "No cell ran to the end: nothing to conclude (see *Skipped and failed cells*).", ""]
    ok = [r for c in cells for r in c.ok]
    env = ok[0].get("env") or {}
    base = next((r.get("eval_majority_baseline") for r in ok if r.get("eval_majority_baseline")), None)
    lines = ["## Bottom line", ""]
    for (device, precision, variant), group in groups:
        counters = any(c.median("peak_alloc_mib") is not None for c in group)
        mem_field, mem_word = ("peak_alloc_mib", "allocated") if counters else ("peak_rss_mib", "RSS")
        repeats = min(len(c.ok) for c in group)
        run = group[0].run
        length = f"{run.get('max_steps')} steps" if run.get("max_steps") else f"{run.get('epochs')} epochs"
        where = (f"{env.get('cpu_name', '?')} family/model {env.get('cpu_family_model', '?')}, "
                 f"{env.get('torch_threads', '?')} threads" if device == "cpu" else env.get("gpu_name") or device)
        lines += [f"**{device} / {precision}{' / ' + variant if variant else ''}** ({where}; {length} of "
                  f"{md.code(run.get('model'))}, {repeats} run(s) per cell):", ""]
        rows = {row["loop"]: row for row in gap_rows(group)}
        dev_link, gap_link, phase_link = _anchor(device), _anchor(GAP_HEADING), _anchor(PHASE_HEADING)
        ref = manual_cell(group)
        for c in group:
            sps = c.median("samples_per_s")
            if c is ref:
                speed = f"[{_f(sps)} samples/s]({dev_link}), the reference"
            elif c.loop in rows:
                row = rows[c.loop]
                kind = gap_kind(row)
                ratio = row["step_ratio"]
                text = _KIND_WORDS[kind].format(tol=f"{GAP_TOLERANCE:.0%}", pct=f"{abs(ratio - 1):.0%}" if ratio else "",
                                                dir="slower" if ratio and ratio > 1 else "faster")
                speed = (f"[{_f(sps)} samples/s]({dev_link}), [{_f(row['sps_ratio'], '{:.2f}')}× manual]({gap_link}): {text}")
                if kind in ("real", "noise") and row.get("phase_delta_s"):
                    speed += f" ([{phase_note(row)}]({phase_link}))"
            else:
                speed = f"[{_f(sps)} samples/s]({dev_link})"
            f1 = c.median("eval_f1")
            ci = c.f1_ci95()
            quality = f"[val F1 {_f(f1, '{:.3f}')}]({dev_link})" + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
            if base and f1 is not None:
                if abs(f1 - base["f1"]) < 5e-5:
                    quality += ", exactly the majority-class floor"
                elif ci and ci[0] > base["f1"]:
                    quality += ", above the majority-class floor"
                elif ci and ci[1] < base["f1"]:
                    quality += f", below the majority-class floor ({base['f1']:.3f})"
                else:
                    quality += f", not clearly above the majority-class floor ({base['f1']:.3f})"
            mem = c.median(mem_field)
            lines.append(f"- **{c.loop}**: {speed}; {quality}; [peak {_f(mem, '{:.0f}')} MiB {mem_word}]({dev_link}); "
                         f"[startup {_f(c.startup_s())} s]({dev_link}).")
        lines.append("")
        lines += _picks(group, rows, base, repeats, run, mem_field,
                        explained=any((r.get("config") or {}).get("run", {}).get("flip") for r in records))
    return lines


def _picks(group: list[CellStats], rows: dict, base: dict | None, repeats: int, run: dict, mem_field: str,
           explained: bool = False) -> list[str]:
    """What the evidence of one group supports, and what it cannot tell."""

    supports, cannot = [], []
    dev_link = _anchor(group[0].device)
    kinds = {loop: gap_kind(row) for loop, row in rows.items()}
    real = [loop for loop, k in kinds.items() if k == "real"]
    gap_link = _anchor(GAP_HEADING)
    if real:
        supports.append("speed: " + "; ".join(
            f"{loop} is {abs(rows[loop]['step_ratio'] - 1):.0%} {'slower' if rows[loop]['step_ratio'] > 1 else 'faster'} "
            f"than manual in every run, {phase_note(rows[loop])}" for loop in real)
            + f" ([gap table]({gap_link}))")
    if kinds and all(k == "same" for k in kinds.values()):
        supports.append(f"speed: every loop is within {GAP_TOLERANCE:.0%} of the manual loop's step time "
                        f"([gap table]({gap_link})): the choice between them is not a matter of speed here")
    elif kinds and not real:
        supports.append(f"speed: no loop's gap to the manual loop holds in every run ([gap table]({gap_link}))")
    cis = {c.loop: c.f1_ci95() for c in group}
    cis = {k: v for k, v in cis.items() if v}
    if len(cis) > 1 and max(lo for lo, _ in cis.values()) <= min(hi for _, hi in cis.values()):
        supports.append("quality: every loop's F1 interval overlaps every other's: this validation set does not tell "
                        "them apart")
    f1s = [c.median("eval_f1") for c in group]
    if base and f1s and all(f is not None and abs(f - base["f1"]) < 5e-5 for f in f1s):
        cannot.append(f"quality: every loop scores exactly the majority-class floor (F1 {base['f1']:.4f}): after "
                      f"{run.get('max_steps') or run.get('epochs')} {'steps' if run.get('max_steps') else 'epochs'} none "
                      "has learned beyond the class balance, so quality cannot rank them; train longer")
    setups = {c.loop: c.startup_s() for c in group if c.startup_s() is not None}
    if len(setups) > 1:
        fast, slow = min(setups, key=setups.get), max(setups, key=setups.get)
        supports.append(f"startup: {fast} reaches its first step soonest ([{setups[fast]:.1f} s]({dev_link})), {slow} "
                        f"last ([{setups[slow]:.1f} s]({dev_link})): what a short run pays on top of its steps")
    mems = {c.loop: c.median(mem_field) for c in group if c.median(mem_field) is not None}
    if len(mems) > 1:
        lo, hi = min(mems, key=mems.get), max(mems, key=mems.get)
        supports.append(f"memory: {lo} peaks lowest ([{mems[lo]:.0f} MiB]({dev_link})), {hi} highest "
                        f"([{mems[hi]:.0f} MiB]({dev_link}), {mems[hi] / mems[lo] - 1:+.0%})")
    rows = parity_rows(group) if run.get("parity") else []
    parity = [row for row in rows if parity_verdict(row) != "differs"]
    differ = [row for row in rows if parity_verdict(row) == "differs"]
    if differ:
        names = ", ".join(f"{row['loop']} (step losses up to {row['max_rel_diff'] or 0:.1e} apart)" for row in differ)
        supports.append(f"training: {names} {'runs' if len(differ) == 1 else 'run'} with settings "
                        f"that differ from the manual loop's ([parity]({_anchor(PARITY_HEADING)})): not expected "
                        "to train the same thing" + (f" (what each difference is worth: [{WHY_HEADING}]"
                                                     f"({_anchor(WHY_HEADING)}))" if explained else ""))
    if parity:
        worst = max((row["max_rel_diff"] or 0) for row in parity)
        supports.append((f"training: every loop's step losses agree with the manual loop's within {worst:.1e} "
                         if worst <= PARITY_TOLERANCE else
                         f"training: some loop's step losses differ from the manual loop's by up to {worst:.1e} ")
                        + f"([parity]({_anchor(PARITY_HEADING)})): "
                        + ("they train the same thing" if worst <= PARITY_TOLERANCE else "they do not train the same thing"
                           + (f" (what differs, and what each difference is worth: [{WHY_HEADING}]({_anchor(WHY_HEADING)}))"
                              if explained else "")))
    if repeats < 2:
        cannot.append("one run per cell: a gap cannot be told from this machine's run-to-run noise (`--repeats 3`)")
    if any(c.busy for c in group):
        cannot.append("some runs were measured on a busy machine (⚠ busy): their speed is the machine's")
    cannot.append("one machine: these figures compare within this CPU/GPU class only")
    return (["Supported: " + "; ".join(supports) + "."] if supports else []) + \
        ["", "Cannot tell: " + "; ".join(cannot) + ".", ""]


def _startup(c: CellStats) -> str:
    """Median seconds before the first step (imports, model, data, the loop's own setup)."""
    return _f(c.startup_s())


def _ci(c: CellStats) -> str:
    """The F1 interval of the cell's first run (bootstrap over the validation pairs), or '-'."""
    ci = c.f1_ci95()
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "-"


def _majority_line(records: list[dict]) -> list[str]:
    """The floor every fine-tuned model must clear, from the validation labels in the records."""
    base = next((r.get("eval_majority_baseline") for r in records if r.get("eval_majority_baseline")), None)
    if not base:
        return []
    said = "equivalent" if base["label"] == 1 else "not equivalent"
    return [f"- quality floor: predicting \"{said}\" for every validation pair scores accuracy {base['accuracy']:.4f}, "
            f"F1 {base['f1']:.4f} (the majority class); a cell at or below it has learned nothing the class balance "
            "does not give. F1 intervals are 95% bootstrap intervals over the validation pairs: cells whose "
            "intervals overlap are not told apart by this validation set"]


def _device_tables(cells: list[CellStats], plots: dict) -> list[str]:
    lines = []
    for device in dict.fromkeys(c.device for c in cells):
        dev_cells = [c for c in cells if c.device == device and c.ok]
        if not dev_cells:
            continue
        base = tutorial_baseline(dev_cells)
        base_sps = base.median("samples_per_s") if base else None
        repeats = max(len(c.ok) for c in dev_cells)
        # A device with memory counters (CUDA) reports its peak allocation; else the process's RSS.
        counters = any(c.median("peak_alloc_mib") is not None for c in dev_cells)
        mem_field = "peak_alloc_mib" if counters else "peak_rss_mib"
        lines += [f"## {device}", ""]
        peaks = shared_peaks(dev_cells)
        lines += [f"Samples/s is the median of {repeats} run(s) per cell, each in a fresh process; spread is min–max "
                  "and CV the coefficient of variation across them. Speed-up is against manual-fp32 on this device"
                  + ("" if base else " (no manual-fp32 cell here)") + ". "
                  + (f"Memory is {device} peak allocated (peak reserved in brackets). " if counters else
                     "Memory is the cell process's peak RSS. ")
                  + "Startup: seconds from the cell's start to the loop's first step (imports, model, data, the "
                  "loop's own setup; the record's `setup_s` has each part). "
                  + "MFU: model FLOPs over the padded batches per second, over the peak of the cell's precision: "
                  + ("; ".join(f"{p}: {t * 1000:.1f} GFLOP/s ({src})" for p, (t, src) in peaks.items())
                     if peaks else "no peak recorded") + "."
                  + (" J/sample: the GPU's energy counter (NVML) over the timed steps, over their samples."
                     if any(c.median("joules_per_sample") is not None for c in dev_cells) else ""), ""]
        header = ["loop", "precision"] + (["variant"] if any(c.variant for c in dev_cells) else []) + [
            "samples/s", "spread", "CV", "speed-up", "real tok/s", "step p50 ms", "step p90 ms", "peak MiB", "MFU",
            "startup s", "val acc", "val F1", "F1 95% CI", "final loss"]
        # GPU energy over the timed steps (NVML), where some cell of this device has it.
        energy = any(c.median("joules_per_sample") is not None for c in dev_cells)
        if energy:
            header.insert(header.index("MFU") + 1, "J/sample")
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for c in dev_cells:
            sps = c.median("samples_per_s")
            spread = c.spread("samples_per_s")
            mem = _f(c.median(mem_field), "{:.0f}")
            if counters and c.median("peak_reserved_mib") is not None:
                mem += f" ({c.median('peak_reserved_mib'):.0f})"
            row = [c.loop + (" ⚠ busy" if c.busy else ""), c.precision] + ([c.variant or "tutorial"] if "variant" in header else []) + [
                _f(sps), f"{spread[0]:.1f}–{spread[1]:.1f}" if spread else "-", _f(c.cv("samples_per_s"), "{:.1%}"),
                _f(sps / base_sps if sps and base_sps else None, "{:.2f}×"),
                _f(c.median("real_tokens_per_s"), "{:.0f}"),
                _f(c.median("step_s_p50") and c.median("step_s_p50") * 1000),
                _f(c.median("step_s_p90") and c.median("step_s_p90") * 1000),
                mem, _f(c.mfu(peaks.get(c.precision, (None,))[0]), "{:.2%}"), _startup(c),
                _f(c.median("eval_accuracy"), "{:.4f}"), _f(c.median("eval_f1"), "{:.4f}"), _ci(c),
                _f(c.median("train_loss_final"), "{:.4f}")]
            if energy:
                row.insert(header.index("J/sample"), _f(c.median("joules_per_sample"), "{:.3f}"))
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


def _fast_section(cells: list[CellStats]) -> list[str]:
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


def _gap_section(cells: list[CellStats]) -> list[str]:
    rows = [(key, row) for key, group in comparison_groups(cells).items() for row in gap_rows(group)]
    if not rows:
        return []
    lines = [f"## {GAP_HEADING}", "",
             "At identical settings (each group's settings are shown side by side under *Do the loops train the same "
             "thing?*) the loops do the same "
             "arithmetic on the same batches. `step ratio` is the median over steps of this loop's step time over the "
             "manual loop's for the same batch (repeats paired by index; its range across repeats beside it); "
             f"a gap beyond {GAP_TOLERANCE:.0%} counts as the loop's own only when every repeat shows it, and is then listed "
             "with the per-step work the loop does beyond the manual loop.", "",
             "`where` is the change of the loop's mean step against the manual loop's and the phases that carry it "
             "(*Where the time goes*).", "",
             "| device | precision | variant | loop | samples/s ÷ manual | step ratio | range over runs | manual CV | where | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (device, precision, variant), row in rows:
        rng = row["step_ratio_range"]
        lines.append(f"| {device} | {precision} | {variant or '-'} | {row['loop']} | {_f(row['sps_ratio'], '{:.3f}')} | "
                     f"{_f(row['step_ratio'], '{:.3f}')} | {f'{rng[0]:.3f}–{rng[1]:.3f}' if rng and row['runs'] > 1 else '-'} | "
                     f"{_f(row['manual_cv'], '{:.1%}')} | {phase_note(row)} | {gap_verdict(row)} |")
    return lines + [""]


def _phases_section(cells: list[CellStats], plots: dict) -> list[str]:
    split = [c for c in cells if c.ok and c.phases()]
    if not split:
        return []
    lines = [f"## {PHASE_HEADING}", "",
             "Each optimizer step split into `data` (waiting for the batch, collate, the copy to the device where "
             "the loader makes it), `forward`, `backward` (to the end of the backward pass, gradient all-reduce "
             "included), `optimizer` (unscale, clipping, the step, the scheduler, zero_grad) and `other` (the "
             "loop's own machinery between those), measured the same way in every loop (`bench/phases.py` says "
             "where each boundary comes from). Milliseconds per step, mean over the timed steps (median over "
             "repeats); the five add up to the mean step. `split cost` is what the split itself adds per step.", "",
             "| device | precision | variant | loop | " + " | ".join(PHASES) + " | step ms | split cost | steps adding up (±2%) |",
             "|---|---|---|---|" + "---|" * len(PHASES) + "---|---|---|"]
    for c in split:
        ph = c.phases()
        total = sum(ph.values())
        cost = c.median("phase_cost_s_p50")
        ok_steps = sum(r.get("phase_sum_ok_steps") or 0 for r in c.ok if r.get("phase_s_mean"))
        all_steps = sum(r.get("steps") or 0 for r in c.ok if r.get("phase_s_mean"))
        lines.append(f"| {c.device} | {c.precision} | {c.variant or '-'} | {c.loop} | "
                     + " | ".join(f"{ph[p] * 1000:.1f} ({ph[p] / total:.0%})" for p in PHASES)
                     + f" | {total * 1000:.1f} | {_f(cost and cost * 1e6, '{:.0f} µs')}"
                     + f"{_f(cost and total and cost / total, ' ({:.2%})', '')} | {ok_steps}/{all_steps} |")
    lines.append("")
    timeline = sorted({c.device for c in split for r in c.ok if phase_clock(r) == "device-timeline"})
    if timeline:
        lines += [f"On {', '.join(md.code(d) for d in timeline)} the split is on the device's timeline "
                  "(`phase_clock: device-timeline`): each boundary is an event that completes when the GPU reaches "
                  "it, not when the CPU passed it. While the CPU runs ahead of the GPU, host work (fetching and "
                  "collating the next batch, a host sync) overlaps GPU work and is counted in whichever phase the "
                  "GPU was busy with: `data` there is the time the GPU waited for a batch (a loader that keeps "
                  "ahead shows near zero, however long it takes), not the time loading took; on the host clock "
                  "(`phase_clock: host`, the CPU) it is the loading itself. `split cost` there is the CPU's "
                  "cost of recording the events.", ""]
    for device in dict.fromkeys(c.device for c in split):
        if (device, "phases") in plots:
            lines += [f"![where the time goes on {device}]({plots[(device, 'phases')]})", ""]
    off = sorted({r.get("phase_split") for c in cells for r in c.ok if r.get("phase_split")})
    if off:
        lines += ["Cells without a split: " + "; ".join(md.text(x) for x in off) + ".", ""]
    return lines


WALL_HEADING = "Where a cell's wall time goes"


def _wall_section(cells: list[CellStats]) -> list[str]:
    """Every second of a cell's process, named (``bench/wallclock.py``), beside where a step's goes."""
    from bench.wallclock import GROUPS, cell_summary

    rows = [(c, cell_summary(c.ok)) for c in cells if c.ok]
    rows = [(c, w) for c, w in rows if w]
    if not rows:
        return []
    labels = [label for label, _ in GROUPS]
    lines = [f"## {WALL_HEADING}", "",
             "Seconds of each cell's process, from its start to its record (median over repeats): "
             + "; ".join(f"`{label}` is {' + '.join(f'`{k}`' for k in keys)}" for label, keys in GROUPS)
             + " (the record's `wall_s`; `bench/wallclock.py` says what each part holds). "
             "`named` is the share of the process's wall time the parts account for; `fixed` is what the cell "
             "costs beyond its steps and evaluations; `after record` is the record's writing and the process's "
             "exit, measured by the sweep.", "",
             "| device | precision | variant | loop | " + " | ".join(labels)
             + " | cell s | named | fixed s | after record s |",
             "|---|---|---|---|" + "---|" * len(labels) + "---|---|---|---|"]
    for c, w in rows:
        lines.append(f"| {c.device} | {c.precision} | {c.variant or '-'} | {c.loop} | "
                     + " | ".join(_f(w[label], "{:.2f}") for label in labels)
                     + f" | {_f(w['process_wall_s'])} | {_f(w['named'], '{:.1%}')} | {_f(w['fixed_cost_s'])}"
                     + f" | {_f(w['after_record_s'], '{:.2f}')} |")
    return lines + [""]


def phase_clock(record: dict) -> str:
    """The clock a record's phase split is on (records before the field: by the device's timer)."""
    if record.get("phase_clock"):
        return record["phase_clock"]
    return "device-timeline" if str(record.get("device", "")).split(":")[0] == "cuda" else "host"


WHY_HEADING = "Why do they differ?"


def _why_section(found: list[dict], plots: dict) -> list[str]:
    """`bench explain`: each difference between two loops' native setups, measured alone."""
    if not found:
        return []
    lines = [f"## {WHY_HEADING}", "",
             "Each loop ran with its library's own defaults (`--defaults native`, declared in `loops/native.py`); "
             "`bench explain` then ran the first loop with each differing setting set to the second's value, "
             "and each loop without the machinery only its library has. An effect is what the difference adds "
             "to the first loop's mean step to make the second's (paired repeats, median); positive is slower. "
             "What the single flips do not add up to is left as interactions and the loops' own code.", ""]
    for f in found:
        a, b = f["a"], f["b"]
        ms = (lambda v: "-" if v is None else f"{v * 1000:+.1f}")
        lines += [f"### {f['device']} / {f['precision']}: {a} → {b}", "",
                  f"Mean step: {a} {_f(f['step_a_s'] and f['step_a_s'] * 1000)} ms, {b} "
                  f"{_f(f['step_b_s'] and f['step_b_s'] * 1000)} ms: {ms(f['total_s'])} ms to explain.", "",
                  "| difference | values (" + a + " → " + b + ") | flipped in | effect ms/step | runs | verdict | phase | "
                  "peak MiB | final loss | val F1 |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in f["effects"]:
            values = f"{md.code(r['values'][0])} → {md.code(r['values'][1])}" if r["values"] else "library machinery"
            lines.append(f"| `{r['setting']}` | {values} | {r['how']} | {ms(r['effect_s'])} | {r['runs']} | "
                         f"{r['verdict']} | {r.get('phase_note', '-')} | {_f(r['mem_mib'], '{:+.0f}')} | "
                         f"{_f(r['loss_final'], '{:+.2e}')} | {_f(r['f1'], '{:+.4f}')} |")
        lines.append(f"| interactions and the loops' own code | | | {ms(f['unexplained_s'])} | | what the single flips "
                     "leave of the total | | | | |")
        lines.append("")
        diff = f["differences"]
        if diff["inert"]:
            lines += ["Not flipped, since they cannot act in this cell: " + "; ".join(
                f"`{k}` ({loop}): {why}" for (loop, k), why in diff["inert"].items()) + ".", ""]
        lines += ["Held the same in both, by bench: " + "; ".join(f"{k}: {why}" for k, why in diff["held"].items())
                  + ".", ""]
        if diff["undeclared"]:
            lines += ["**Read back as different but declared nowhere** (the list above may be incomplete): "
                      + ", ".join(f"`{md.text(k)}`" for k in diff["undeclared"]) + ".", ""]
        every = f["everything"]
        if every:
            p_all, p_ab = every["parity"], f["parity_ab"]
            closes = p_all is not None and p_all <= PARITY_TOLERANCE
            lines += [f"{a} with every setting of {b} at once (`{ALL}`): step losses within {_f(p_all, '{:.1e}')} of "
                      f"{b}'s (against {_f(p_ab, '{:.1e}')} for {a} as it was): "
                      + ("**the listed settings are the whole difference in what is trained**" if closes else
                         f"**not within {PARITY_TOLERANCE:g}: something that changes training is missing from the list**")
                      + (f"; its mean step is {ms(every['row']['effect_s'])} ms from {a}'s." if every["row"]["effect_s"] is not None else "."), ""]
        key = (f["device"], f["precision"], a, b, "waterfall")
        if key in plots:
            lines += [f"![why {a} and {b} differ, {f['device']} / {f['precision']}]({plots[key]})", ""]
    return lines


QUALITY_HEADING = "Does any loop fine-tune better?"


def _pm(mean, sd) -> str:
    """An F1 mean with its seed sd, or the value alone at one seed."""
    if mean is None:
        return "-"
    return f"{mean:.4f} ± {sd:.4f}" if sd is not None else f"{mean:.4f} (one seed)"


def _ci_signed(ci) -> str:
    return f"{ci[0]:+.4f} to {ci[1]:+.4f}" if ci else "-"


def _group_title(q: dict) -> str:
    return f"{q['device']} / {q['precision']}" + (f" / {q['variant']}" if q["variant"] else "")


def _seeds_said(q: dict) -> str:
    seeds = sorted({row["seed"] for loop in q["loops"].values() if loop["comparison"]
                    for row in loop["comparison"]["per_seed"]}, key=str)
    return ", ".join(str(s) for s in seeds)


def _to_target(t: dict | None) -> str:
    """A loop's time to target over seeds, in words."""
    if not t:
        return ""
    if not t["reached"]:
        return f"never reached F1 {t['target_f1']} ({t['seeds']} seed(s))"
    median = "not reached at the median" if math.isinf(t["median_s"]) else f"{t['median_s']:.0f} s (step {t['median_step']:.0f})"
    return f"median time to F1 {t['target_f1']} {median}, reached at {t['reached']} of {t['seeds']} seed(s)"


def _quality_bottom(quality: list[dict]) -> list[str]:
    """The bottom line's quality verdict: one sentence per loop, next to its speed."""
    lines = []
    link = _anchor(QUALITY_HEADING)
    for q in quality:
        ref = q["loops"].get("manual")
        if ref is None or not any(v["comparison"] for v in q["loops"].values()):
            continue
        seeds = _seeds_said(q)
        lines += [f"**Quality across seeds, {_group_title(q)}** ({'seeds' if ',' in seeds else 'seed'} {seeds}; "
                  f"[paired comparison]({link})):", ""]
        for loop, v in q["loops"].items():
            t = _to_target(v["time_to_target"])
            if loop == "manual":
                lines.append(f"- **manual**: the reference, {_f(v['samples_per_s'])} samples/s; val F1 "
                             f"{_pm(v['f1_mean'], v['f1_sd'])}" + (f" over {v['seeds']} seeds" if v["seeds"] > 1 else "")
                             + (f"; {t}" if t else "") + ".")
                continue
            c = v["comparison"]
            ratio = (v["samples_per_s"] / ref["samples_per_s"] if v["samples_per_s"] and ref["samples_per_s"] else None)
            speed = f"{_f(ratio, '{:.2f}')}× manual's samples/s, median over seeds"
            if c is None:
                lines.append(f"- **{loop}** ({speed}): no paired comparison (no predictions on manual's pairs at a shared seed).")
                continue
            lines.append(f"- **{loop}** ({speed}): val F1 {_pm(v['f1_mean'], v['f1_sd'])} against manual's "
                         f"{_pm(ref['f1_mean'], ref['f1_sd'])}; paired difference {c['f1_diff']:+.4f} "
                         f"(95% CI {_ci_signed(c['f1_diff_ci95'])}): **{c['verdict']}**, {c['why']}"
                         + (f"; {t}" if t else "") + ".")
        lines.append("")
    return lines


def _quality_section(quality: list[dict], plots: dict) -> list[str]:
    """Per seed group: each loop's F1 across seeds, paired against the manual loop's, and time to target."""
    from bench.quality import MIN_SEEDS, MLPERF_MIN_RUNS, RESAMPLES

    if not quality:
        return []
    lines = [f"## {QUALITY_HEADING}", "",
             "Each loop against the manual loop on the same validation pairs. A seed fixes the classifier head's "
             "initialisation, the sample order and the dropout stream, the same in every loop, so at one seed two "
             "loops' predictions pair up pair by pair: `F1 − manual` is the loop's F1 minus manual's on the same "
             f"pairs, with a 95% paired bootstrap interval ({RESAMPLES} resamples of the pairs, the same for both "
             "loops). Across seeds it is the mean of those differences, with a two-level bootstrap interval "
             "(resample the seeds, then the pairs inside each drawn seed), which holds both the seed's draw and the "
             "validation set's size; `seed sd` is the standard deviation of the loop's F1 across seeds. A loop is "
             f"called better or worse only when that interval lies wholly on one side of 0, with at least {MIN_SEEDS} "
             "seeds. Every figure is recomputed from the records' per-pair predictions "
             "(`eval_predictions`).", ""]
    for q in quality:
        lines += [f"### {_group_title(q)}", ""]
        lines += ["| loop | seeds | val F1 mean ± seed sd | val acc mean | F1 − manual | 95% CI (seeds and pairs) | "
                  "acc − manual | 95% CI (seeds and pairs) | verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for loop, v in q["loops"].items():
            c = v["comparison"]
            if loop == "manual":
                cols = ["reference", "", "", "", ""]
            elif c is None:
                cols = ["-", "-", "-", "-", "no predictions on manual's pairs at a shared seed"]
            else:
                cols = [f"{c['f1_diff']:+.4f}", _ci_signed(c["f1_diff_ci95"]), f"{c['acc_diff']:+.4f}",
                        _ci_signed(c["acc_diff_ci95"]), f"**{c['verdict']}**: {c['why']}"]
            lines.append(f"| {loop} | {v['seeds']} | {_pm(v['f1_mean'], v['f1_sd'])} | {_f(v['acc_mean'], '{:.4f}')} | "
                         + " | ".join(cols) + " |")
        lines.append("")
        targets = {loop: v["time_to_target"] for loop, v in q["loops"].items() if v["time_to_target"]}
        if targets:
            lines += [f"Time to target over seeds: wall seconds (evaluations included) and optimizer steps until "
                      "validation F1 first reached the target; a seed that never reached it counts as slower than "
                      f"every seed that did. The MLPerf mean drops the fastest and the slowest seed (from "
                      f"{MLPERF_MIN_RUNS} seeds).", "",
                      "| loop | target F1 | seeds reached | median s | median steps | MLPerf mean s | MLPerf mean steps |",
                      "|---|---|---|---|---|---|---|"]

            def n(value, fmt):
                return "-" if value is None else ("not reached" if math.isinf(value) else fmt.format(value))

            for loop, t in targets.items():
                lines.append(f"| {loop} | {t['target_f1']} | {t['reached']}/{t['seeds']} | {n(t['median_s'], '{:.1f}')} | "
                             f"{n(t['median_step'], '{:.0f}')} | {n(t['mlperf_mean_s'], '{:.1f}')} | "
                             f"{n(t['mlperf_mean_step'], '{:.0f}')} |")
            lines.append("")
        per_seed = [(loop, row) for loop, v in q["loops"].items() if v["comparison"] for row in v["comparison"]["per_seed"]]
        if per_seed:
            lines += ["Per seed, paired on the same validation pairs:", "",
                      "| loop | seed | val F1 | manual's val F1 | F1 − manual | 95% CI (pairs) | acc − manual | "
                      "95% CI (pairs) | pairs predicted differently |", "|---|---|---|---|---|---|---|---|---|"]
            for loop, row in per_seed:
                lines.append(f"| {loop} | {row['seed']} | {row['f1_b']:.4f} | {row['f1_a']:.4f} | {row['f1_diff']:+.4f} | "
                             f"{_ci_signed(row['f1_diff_ci95'])} | {row['acc_diff']:+.4f} | "
                             f"{_ci_signed(row['acc_diff_ci95'])} | {row['pairs_differing']} of {row['pairs']} |")
            lines.append("")
        key = (q["device"], q["precision"], q["variant"], "f1")
        if key in plots:
            lines += [f"![validation F1 over steps, {_group_title(q)}]({plots[key]})", ""]
    return lines


def _time_to_accuracy(cells: list[CellStats]) -> list[str]:
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


def _settings_diff(group: list[CellStats]) -> list[str]:
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


def _parity_section(cells: list[CellStats], plots: dict) -> list[str]:
    lines = [f"## {PARITY_HEADING}", "",
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
                differs = (" (settings differ: not expected to agree: " + md.text("; ".join(row["differs"])) + ")"
                           if row["differs"] else "")
                lines.append(f"| {row['loop']} | {row['steps']} | {_f(row['max_rel_diff'], '{:.2e}')}{differs} | "
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

# ---------------------------------------------------------------------------------------------

def render(records: list[dict], out_md: Path) -> str:
    """Write the report (Markdown + PNGs beside it) and return the Markdown."""
    out_md.parent.mkdir(parents=True, exist_ok=True)
    cells = cells_of(records)
    explained = explain_rows(records)  # `bench explain` cells, if any: one analysis for table and plot
    plots = draw_plots(cells, out_md, explained)
    header = _header(records)
    # Cells of `bench explain` (one setting flipped) have their own section; the rest compare loops.
    main = [c for c in cells if not c.run.get("flip")]
    quality = quality_rows(main)  # only where records hold per-pair predictions
    lines = (header[:4] + _bottom_line(main, records) + _quality_bottom(quality) + header[4:]
             + _device_tables(cells, plots) + _fast_section(main) + _gap_section(main)
             + _phases_section(main, plots) + _wall_section(main) + _why_section(explained, plots)
             + _quality_section(quality, plots) + _time_to_accuracy(main)
             + _parity_section(main, plots) + _not_run(records))
    text = "\n".join(lines).rstrip() + "\n"
    from bench.safeio import write_atomic

    write_atomic(out_md, text)  # a full disk or a kill leaves the old report, never half of one
    return text


def _written_by(path: Path, title: str = REPORT_TITLE) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(title)
    except (OSError, UnicodeDecodeError):
        return False


CSV_FIRST_COLUMN = "loop"
CSV_FIELDS = ("samples_per_s", "real_tokens_per_s", "step_s_p50", "step_s_p90", "peak_alloc_mib", "peak_reserved_mib",
              "peak_rss_mib", "eval_accuracy", "eval_f1", "train_loss_final", "process_wall_s")


def csv_rows(records: list[dict]) -> list[dict]:
    """The flat per-cell table: one row per cell, medians over its ok repeats, the phase split's means
    and the startup total flattened into columns."""
    rows = []
    for c in cells_of(records):
        row = {"loop": c.loop, "device": c.device, "precision": c.precision, "variant": c.variant,
               "status": c.records[-1]["status"], "repeats_ok": len(c.ok), "repeats": len(c.records),
               "busy": c.busy, "model": c.run.get("model"), "batch_size": c.run.get("batch_size"),
               "max_steps": c.run.get("max_steps"), "cell_ids": " ".join(r.get("cell_id", "") for r in c.records)}
        row.update({f: c.median(f) for f in CSV_FIELDS})
        row["setup_total_s"] = c.startup_s()
        ci = c.f1_ci95()
        row["eval_f1_ci95_lo"], row["eval_f1_ci95_hi"] = (ci if ci else (None, None))
        phases = c.phases() or {}
        row.update({f"phase_{p}_s_mean": phases.get(p) for p in PHASES})
        rows.append(row)
    return rows


def write_csv(records: list[dict], path: Path) -> None:
    import csv

    from bench.safeio import write_atomic

    rows = csv_rows(records)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [CSV_FIRST_COLUMN])
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(path, writer=write)


def cmd_report(args) -> int:
    from bench.config import ConfigError

    source = Path(args.results)
    results = source / "results.jsonl" if source.is_dir() else source
    out_md = Path(args.output) if args.output else results.parent / "report.md"
    try:
        return _report(args, source, results, out_md)
    except OSError as exc:  # a read-only folder, a name too long: one line, nothing half-written
        raise ConfigError(f"{exc.filename or out_md}: cannot be written ({exc.strerror or exc}); "
                          "give -o a path in a folder you can write to") from None


def _report(args, source: Path, results: Path, out_md: Path) -> int:
    import sys

    from bench.config import ConfigError

    # The report never writes over records, nor over any file it did not write itself, nor through a link.
    from bench.safeio import refuse_link

    flag = "-o " if args.output else ""
    refuse_link(out_md)
    if out_md.exists() and out_md.resolve() == results.resolve():
        raise ConfigError(f"-o {out_md}: that is the results file being reported on; give a .md path")
    if out_md.is_dir():
        raise ConfigError(f"-o {out_md}: is a folder; give a .md file path")
    if out_md.exists() and not _written_by(out_md):
        raise ConfigError(f"{flag}{out_md}: exists and was not written by bench report; "
                          + ("give a new path" if flag else "move it aside, or give -o PATH"))
    if out_md.suffix.lower() != ".md":
        raise ConfigError(f"-o {out_md}: the report is Markdown; give a path ending in .md")
    csv_path = Path(args.csv) if getattr(args, "csv", None) else None
    if csv_path is not None and csv_path.exists() and (csv_path.resolve() == results.resolve() or
                                                       not _written_by(csv_path, CSV_FIRST_COLUMN)):
        raise ConfigError(f"--csv {csv_path}: exists and was not written by bench report; give a new path")
    records = read_records(source)
    render(records, out_md)
    print(f"report: {out_md}", file=sys.stderr)
    if csv_path is not None:
        write_csv(records, csv_path)
        print(f"csv: {csv_path}", file=sys.stderr)
    return 0
