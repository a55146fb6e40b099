"""LoRA beside full fine-tuning, loop by loop (``--finetune full,lora``): speed, memory, what trains,
quality as a paired difference across seeds, and time to target (``bench/analysis/finetune.py``)."""

from __future__ import annotations

from bench.analysis.finetune import FinetunePair, Side
from bench.analysis.verdicts import say
from bench.report import markdown as md
from bench.report.context import Context
from bench.report.format import f, group_title, head

HEADING = "LoRA beside full fine-tuning"


def _arrow(a, b, fmt: str = "{:.1f}") -> str:
    return f"{f(a, fmt)} → {f(b, fmt)}"


def _params(side: Side) -> str:
    if side.trainable_params is None:
        return "-"
    share = f" ({side.trainable_params / side.total_params:.2%})" if side.total_params else ""
    return f"{side.trainable_params:,}{share}"


def _f1(side: Side) -> str:
    ci = f" [{side.f1_ci95[0]:.3f}, {side.f1_ci95[1]:.3f}]" if side.f1_ci95 else ""
    return f(side.f1_mean, "{:.3f}") + ci + (f" ({side.seeds} seeds)" if side.seeds > 1 else "")


def _difference(p: FinetunePair) -> str:
    d = p.difference
    if d is None:
        return "-"
    return f"{d.f1_diff:+.3f} [{d.f1_diff_ci95[0]:+.3f}, {d.f1_diff_ci95[1]:+.3f}]"


def _unpaired(p: FinetunePair) -> str:
    return f" ({md.text(p.unpaired)}: left out)" if p.unpaired else ""


def _adapter(p: FinetunePair) -> str:
    a = p.lora.adapter
    if a is None:
        return "LoRA settings not recorded"
    return (f"r {a.r}, alpha {a.alpha:g}, dropout {a.dropout:g} on {md.code(','.join(a.target_modules))} "
            f"({md.text(a.targets_source)}'s choice; {a.adapted_layers} modules adapted), trained in full beside it: "
            f"{md.code(','.join(a.modules_to_save)) if a.modules_to_save else 'nothing'}")


def lines(ctx: Context) -> list[str]:
    pairs: list[FinetunePair] = ctx.finetune
    if not pairs:
        return []
    targets = any(p.full.target_reached or p.lora.target_reached for p in pairs)
    out = [f"## {HEADING}", "",
           "Each loop's LoRA cells beside its full fine-tuning cells, the same in every setting but the recipe "
           "(fine-tuning, LoRA settings, learning rate). Speed is LoRA's samples/s over full's, paired by seed; "
           "F1 is the mean over seeds; `LoRA − full` is the paired difference on the same validation pairs "
           "(95% interval across seeds and pairs, or over the pairs at one seed).", ""]
    settings = sorted({(_adapter(p), f"lr {p.full.lr:g} (full), {p.lora.lr:g} (LoRA)") for p in pairs})
    out += [f"- LoRA: {adapter}; {lr}" for adapter, lr in settings] + [""]
    header = ("| group | loop | samples/s full → LoRA | LoRA's speed | peak MiB | optimizer state MiB | "
              "trained parameters full → LoRA | val F1 full → LoRA | LoRA − full F1 [95% CI] | quality |"
              + (" time to target s |" if targets else ""))
    out += head(header)
    for p in pairs:
        speed = say(p.speed_kind, "finetune", p.speed_ratio, slower_above_1=False, runs=len(p.speed_pairs))
        row = (f"| {md.text(group_title(p.device, p.precision, p.variant))} | {md.text(p.loop)} | "
               f"{_arrow(p.full.samples_per_s, p.lora.samples_per_s)} | {speed} | "
               f"{_arrow(p.full.peak_mib, p.lora.peak_mib, '{:.0f}')} | "
               f"{_arrow(p.full.optimizer_state_mib, p.lora.optimizer_state_mib, '{:.2f}')} | "
               f"{_params(p.full)} → {_params(p.lora)} | {_f1(p.full)} → {_f1(p.lora)} | {_difference(p)} | "
               f"{p.verdict or 'not compared'}{_unpaired(p)} |")
        if targets:
            row += (f" {f(p.full.time_to_target_s)} ({p.full.target_reached or '-'}) → "
                    f"{f(p.lora.time_to_target_s)} ({p.lora.target_reached or '-'}) |")
        out.append(row)
    # Each reason once, with the loops it is said of: the loops' verdicts can rest on different evidence.
    whys: dict[str, list[str]] = {}
    for p in pairs:
        if p.why and p.loop not in whys.setdefault(p.why, []):
            whys[p.why].append(p.loop)
    if whys:
        said = "; ".join(f"{', '.join(md.text(loop) for loop in loops)}: {why}" if len(whys) > 1 else why
                         for why, loops in whys.items())
        out += ["", f"Quality: {said}."]
    if ctx.environments.mixed_machines:
        out += ["", f"These runs were measured on {ctx.environments.machine_total} machines ([Environment](#environment) "
                    "says which ran where): LoRA's speed pairs a seed's two runs only where both ran on one machine, "
                    "and the samples/s, peaks and times to target of loops measured on different machines do not "
                    "compare with each other."]
    return out + [""]
