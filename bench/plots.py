"""The report's plots: throughput, memory and where the time goes per device, loss per step per
comparable group.
PNG files beside the Markdown; drawn from the analysis' cell summaries only."""

from __future__ import annotations

from pathlib import Path

from bench.analysis import LOOP_ORDER, CellStats, order_of, comparison_groups

LOOP_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


LOOP_STYLES = (("-", 2.5), ("--", 1.5), (":", 1.5), ("-.", 1.5), ((0, (5, 1)), 1.5), ((0, (1, 1)), 1.5))


def _png(out_md: Path, *pieces: str) -> Path:
    """A plot's path beside the report: the pieces (record fields) in a safe character set, so a
    crafted ``device`` cannot put a file outside the report's folder."""
    from bench.safeio import inside, safe_name

    return inside(out_md.parent, out_md.parent / f"{out_md.stem}-{'-'.join(safe_name(p) for p in pieces)}.png")


def _save(fig, path: Path) -> None:
    """Written beside its place and renamed into it: a full disk leaves the old plot, not half a new one."""
    from bench.safeio import write_atomic

    write_atomic(path, writer=lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def draw_plots(cells: list[CellStats], out_md: Path, explained: list[dict] = ()) -> dict:
    """``explained``: ``bench.explain.explain_rows`` of the same records, for the waterfalls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}
    for device in dict.fromkeys(c.device for c in cells):
        dev = [c for c in cells if c.device == device and c.ok]
        if not dev:
            continue
        labels = [f"{c.loop}\n{c.precision}" + (f"\n{c.variant}" if c.variant else "") for c in dev]
        counters = any(c.median("peak_alloc_mib") is not None for c in dev)
        for name, field, ylabel in (("throughput", "samples_per_s", "samples/s (median)"),
                                    ("memory", "peak_alloc_mib" if counters else "peak_rss_mib",
                                     "peak MiB" + (f" ({device} allocated)" if counters else " (process RSS)"))):
            values = [c.median(field) or 0 for c in dev]
            fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(dev) + 2), 4))
            colors = [LOOP_COLORS[order_of(c.loop, LOOP_ORDER) % len(LOOP_COLORS)] for c in dev]
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
            path = _png(out_md, device, name)
            _save(fig, path)
            plt.close(fig)
            made[(device, name)] = path.name
    made.update(_phase_plots(cells, out_md, plt))
    made.update(_waterfalls(out_md, plt, explained))
    made.update(_f1_curve_plots(cells, out_md, plt))
    for (device, precision, variant), group in comparison_groups([c for c in cells if c.ok and not c.run.get("flip")]).items():
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
        path = _png(out_md, device, precision, *([variant] if variant else []), "loss")  # no spaces in links
        _save(fig, path)
        plt.close(fig)
        made[(device, precision, variant, "loss")] = path.name
    return made


PHASE_COLORS = {"data": "#8c8c8c", "forward": "#4c72b0", "backward": "#55a868", "optimizer": "#dd8452",
                "other": "#c44e52"}


def _phase_plots(cells: list[CellStats], out_md: Path, plt) -> dict:
    """Per device, one stacked bar per cell: its mean step split into the five phases."""
    from bench.phases import PHASES

    made = {}
    for device in dict.fromkeys(c.device for c in cells):
        dev = [c for c in cells if c.device == device and c.ok and c.phases()]
        if not dev:
            continue
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(dev) + 2.5), 4))
        bottom = [0.0] * len(dev)
        for phase in PHASES:
            values = [c.phases()[phase] * 1000 for c in dev]
            ax.bar(range(len(dev)), values, bottom=bottom, color=PHASE_COLORS[phase], label=phase)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(range(len(dev)))
        ax.set_xticklabels([f"{c.loop}\n{c.precision}" + (f"\n{c.variant}" if c.variant else "") for c in dev], fontsize=8)
        ax.set_ylabel("ms per optimizer step (mean)")
        ax.set_title(f"where the time goes on {device}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        path = _png(out_md, device, "phases")
        _save(fig, path)
        plt.close(fig)
        made[(device, "phases")] = path.name
    return made


def _waterfalls(out_md: Path, plt, explained) -> dict:
    """From loop A's mean step to loop B's: each measured difference, then what is left."""
    made = {}
    for f in explained:
        if f["step_a_s"] is None or f["step_b_s"] is None:
            continue
        steps = [(f["a"], f["step_a_s"] * 1000, "total")]
        steps += [(r["setting"], (r["effect_s"] or 0) * 1000, "delta") for r in f["effects"]]
        steps += [("rest", (f["unexplained_s"] or 0) * 1000, "delta"), (f["b"], f["step_b_s"] * 1000, "total")]
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(steps) + 1), 4))
        level = 0.0
        for i, (name, value, kind) in enumerate(steps):
            if kind == "total":
                ax.bar(i, value, color="#4c72b0")
                level = value
            else:
                ax.bar(i, value, bottom=level, color="#c44e52" if value > 0 else "#55a868")
                level += value
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels([s[0] for s in steps], fontsize=8, rotation=20, ha="right")
        ax.set_ylabel("ms per optimizer step (mean)")
        ax.set_title(f"{f['a']} → {f['b']}, {f['device']} / {f['precision']}: what each difference adds")
        fig.tight_layout()
        path = _png(out_md, f["device"], f["precision"], f["a"], f["b"], "why")
        _save(fig, path)
        plt.close(fig)
        made[(f["device"], f["precision"], f["a"], f["b"], "waterfall")] = path.name
    return made


def _f1_curve_plots(cells: list[CellStats], out_md: Path, plt) -> dict:
    """Per seed group with per-pair predictions and evaluation curves: validation F1 over the steps,
    one line per loop (mean over seeds) with a band from its lowest to its highest seed."""
    from bench.quality import f1_curves, quality_rows, seed_groups

    made = {}
    wanted = {(q["device"], q["precision"], q["variant"]) for q in quality_rows(cells)}
    for (device, precision, variant), by_loop in seed_groups(cells).items():
        curves = f1_curves(by_loop) if (device, precision, variant) in wanted else {}
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for loop, cv in curves.items():
            color = LOOP_COLORS[order_of(loop, LOOP_ORDER) % len(LOOP_COLORS)]
            style, width = LOOP_STYLES[order_of(loop, LOOP_ORDER) % len(LOOP_STYLES)]  # loops that agree stay visible
            ax.plot(cv["step"], cv["mean"], color=color, linestyle=style, linewidth=width,
                    label=f"{loop} (mean of {cv['seeds']} seed(s))")
            if cv["seeds"] > 1:
                ax.fill_between(cv["step"], cv["lo"], cv["hi"], color=color, alpha=0.15, linewidth=0)
        target = next((c.run.get("target_f1") for by_seed in by_loop.values() for c in by_seed.values()
                       if c.run.get("target_f1")), None)
        if target:
            ax.axhline(target, color="0.5", linestyle=":", linewidth=1, label=f"target F1 {target}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("validation F1 (band: lowest to highest seed)")
        ax.set_title(f"validation F1, {device} / {precision}" + (f" / {variant}" if variant else ""))
        ax.legend(fontsize=8)
        fig.tight_layout()
        tag = f"{device}-{precision}{'-' + variant if variant else ''}".replace(" ", "-")
        path = out_md.parent / f"{out_md.stem}-{tag}-f1.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made[(device, precision, variant, "f1")] = path.name
    return made
