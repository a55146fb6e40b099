"""The command, the environment and what was trained: what a reader needs to rerun the report."""

from __future__ import annotations

import json

from bench.report.format import head as table_head
from bench.report import markdown as md
from bench.analysis.machines import environment_rows
from bench.analysis.cells import group_key
from bench.records import Record
from bench.records.portable import portable_tree
from bench.report.context import Context


def _environment(env: dict) -> list[str]:
    return ["## Environment", "", *table_head("| | |")] + [f"| {k} | {md.text(v)} |" for k, v in environment_rows(env)] + [""]


def _where(runs: list[Record], every: list[str], seeded: bool) -> str:
    """Which runs of a report one environment holds: its loops, per seed where the report's seeds vary."""
    def loops(names):
        names = list(dict.fromkeys(names))
        return "every loop" if set(names) == set(every) and len(every) > 1 else ", ".join(names)

    if not seeded:
        return f"{len(runs)} run(s): {loops(r.loop for r in runs)}"
    by_seed: dict = {}
    for r in runs:
        by_seed.setdefault(r.run.seed, []).append(r.loop)
    seeds = sorted(by_seed, key=lambda s: (s is None, s))
    return f"{len(runs)} run(s): " + "; ".join(f"seed {s}: {loops(by_seed[s])}" for s in seeds)


def _environments(ctx: Context) -> list[str]:
    """One column per environment the runs were measured in, and which runs ran in each."""
    envs = ctx.environments
    every = list(dict.fromkeys(r.loop for r in ctx.records))
    seeded = len({r.run.seed for rs in envs.runs.values() for r in rs}) > 1
    letters = [envs.letter(e) for e in envs.seen]
    cols = [environment_rows(envs.env_of(e)) for e in envs.seen]
    differ = [len({col[i][1] for col in cols}) > 1 for i in range(len(cols[0]))]
    n = envs.machine_total
    head = (f"These runs were measured in {len(envs.seen)} environments, "
            + (f"on {n} machines" if n > 1 else "on one machine") +
            " (a folder continued with `--resume` in another session, or gathered over sessions): "
            + ("a time figure compares only with one measured on the same machine; F1 does not depend on it. "
               if n > 1 else "the software differs, and time figures may move with it. ")
            + "The rows marked *differs* tell them apart.")
    out = ["## Environment", "", head, "", *table_head("| | " + " | ".join(letters) + " | |")]
    out.append("| runs | " + " | ".join(_where(envs.runs[e], every, seeded) for e in envs.seen) + " | |")
    for i, (key, _) in enumerate(cols[0]):
        mark = " *differs* |" if differ[i] else " |"
        out.append(f"| {key} | " + " | ".join(md.text(col[i][1]) for col in cols) + " |" + mark)
    return out + [""]


def in_force(ok: list[Record]) -> str:
    """What a batch size or an accumulation larger than the data became (records that say so)."""
    said = []
    for key, asked, what in (("batch_size_in_force", lambda r: r.run.batch_size, "batch"),
                             ("grad_accum_in_force", lambda r: r.run.grad_accum, "accumulation")):
        pairs = {(asked(r), (r.settings or {}).get(key)) for r in ok}
        cut = sorted({f"{a} → {got}" for a, got in pairs if got is not None and a is not None and got != a})
        if cut:
            said.append(f"{what} {', '.join(cut)}")
    return f" (in force, as the training pairs allow: {'; '.join(said)})" if said else ""


def majority_line(records: list[Record]) -> list[str]:
    """The floor every fine-tuned model must clear, from the validation labels in the records."""
    base = next((r.eval_majority_baseline for r in records if r.eval_majority_baseline), None)
    if not base:
        return []
    said = "equivalent" if base.label == 1 else "not equivalent"
    return [f"- quality floor: predicting \"{said}\" for every validation pair scores accuracy {base.accuracy:.4f}, "
            f"F1 {base.f1:.4f} (the majority class); a cell at or below it has learned nothing the class balance "
            "does not give. F1 intervals are 95% bootstrap intervals over the validation pairs: cells whose "
            "intervals overlap are not told apart by this validation set"]


def _trained(ok: list[Record]) -> list[str]:
    r0 = ok[0]
    m = r0.model
    runs = [portable_tree(r.run_as_recorded) for r in ok]  # what was used, not where it lay

    def common(key, fmt=str):
        """The setting if every ok cell shares it; the variant columns say what differs."""
        values = {json.dumps(run.get(key), sort_keys=True) for run in runs}
        return fmt(runs[0].get(key)) if len(values) == 1 else "varies by cell"

    steps = f"{common('max_steps')} optimizer steps" if runs[0].get("max_steps") else f"{common('epochs')} epochs"
    # The base model, whatever was trained of it (full fine-tuning or LoRA: the fine-tuning line below).
    recipe = {"finetune", "n_params_trainable", "adapter", "train_flops_per_sequence_coeffs"}
    models = {json.dumps({k: v for k, v in (r.model.to_dict() if r.model else {}).items() if k not in recipe},
                         sort_keys=True) for r in ok}
    if common("model") == "varies by cell" or len(models) > 1:
        model_line = "- model: varies by cell (each record names its model, weights and size)"
    else:
        model_line = (f"- model: {md.code(common('model'))} — weights {md.code(m.weights if m else None)}; "
                      f"tokenizer {md.code(m.tokenizer if m else None)}; {(m.n_params if m else 0) / 1e6:.1f} M "
                      f"parameters, {m.num_layers if m else None} layers, hidden {m.hidden_size if m else None}")
    return ["## What was trained", "", model_line, *_finetune_line(ok),
            f"- data: {md.code(r0.data_source)}"
            + (f" (fingerprint {md.code(r0.data_fingerprint)})" if r0.data_fingerprint else "")
            + f" — {common('train_samples', lambda v: v or 3668)} training pairs, {r0.eval_examples} validation pairs",
            f"- schedule: lr {common('lr')}, batch {common('batch_size')}{in_force(ok)}, {steps}, {common('scheduler')} "
            f"decay, {common('warmup_steps')} warm-up steps, weight decay {common('weight_decay')}, "
            f"clipping {common('max_grad_norm', lambda v: v or 'none')}, AdamW {common('adamw')}, seed {common('seed')}",
            f"- timing: the first {common('timing_warmup')} optimizer steps of each run are left out; "
            "a step is wall time from the end of one optimizer step to the end of the next",
            *majority_line(ok), ""]


def _finetune_line(ok: list[Record]) -> list[str]:
    """What of the model trained: said when any cell trained LoRA adapters (full fine-tuning alone
    is the tutorial's, said by nothing)."""
    lora = [r for r in ok if r.model and r.model.adapter]
    if not lora:
        return []
    settings = {json.dumps({k: v for k, v in r.model.adapter.to_dict().items() if k not in ("trainable_params",
                                                                                            "total_params")},
                           sort_keys=True) for r in lora}
    a = lora[0].model.adapter
    said = (f"LoRA r {a.r}, alpha {a.alpha:g}, dropout {a.dropout:g} on {md.code(','.join(a.target_modules))} "
            f"({md.text(a.targets_source)}'s choice), {md.code(','.join(a.modules_to_save))} trained in full; "
            f"{a.trainable_params:,} of {a.total_params:,} parameters trained"
            if len(settings) == 1 else "LoRA settings vary by cell (each record's model.adapter names them)")
    cells = {group_key(r) for r in ok}  # cells over their repeats, not each run
    lora_cells = {group_key(r) for r in lora}
    full = len(cells - lora_cells)
    return [f"- fine-tuning: {said}, in {len(lora_cells)} cell{'s' if len(lora_cells) != 1 else ''}"
            + (f"; the other {full} fine-tune every weight" if full else "")]


def lines(ctx: Context) -> list[str]:
    records = ctx.records
    commands = list(dict.fromkeys(r.command for r in records if r.command))
    ok = [r for r in records if r.status == "ok"]
    out = ["## Command", ""] + md.fenced(commands or ["(not recorded)"]) + [""]
    chosen = list(dict.fromkeys(r.device_choice for r in records if r.device_choice))  # --device auto
    out += [f"Device: {md.text(c)}." for c in chosen] + ([""] if chosen else [])
    out += _environments(ctx) if ctx.environments.mixed else _environment((ok or records)[0].env or {})
    return out + (_trained(ok) if ok else [])
