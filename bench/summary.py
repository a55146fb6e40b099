"""The table printed at the end of every run: the latest record of each cell."""

from __future__ import annotations


def latest_per_cell(records: list[dict]) -> list[dict]:
    """A cell run again (after a failure, on resume) keeps every record on disk; tables use its
    latest one."""
    latest: dict[str, dict] = {}
    for r in records:
        latest[r.get("cell_id") or id(r)] = r
    return list(latest.values())


def _fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_table(records: list[dict]) -> str:
    from tabulate import tabulate

    rows = []
    latest = latest_per_cell(records)
    seeds = len({r.get("seed") for r in latest}) > 1  # a --seeds sweep: which seed each row is
    for r in latest:
        rows.append([
            r["loop"], r["device"], r["precision"], *([r.get("seed")] if seeds else []), r.get("repeat", 0),
            r["status"] + (" (busy machine)" if r.get("machine_busy") else
                           # null with a why: the timed window was too short to judge (not "quiet")
                           " (busy: not judged)" if r.get("machine_busy") is None and r.get("machine_busy_why")
                           else ""),
            _fmt(r.get("samples_per_s")), _fmt(r.get("real_tokens_per_s"), 0),
            _fmt((r.get("step_s_p50") or 0) * 1000 if r.get("step_s_p50") is not None else None),
            _fmt(r.get("peak_alloc_mib") if r.get("peak_alloc_mib") is not None else r.get("peak_rss_mib"), 0),
            _fmt(r.get("eval_accuracy"), 4), _fmt(r.get("eval_f1"), 4), _fmt(r.get("train_loss_final"), 4),
            (r.get("reason") or "")[:80],
        ])
    headers = ["loop", "device", "precision", *(["seed"] if seeds else []), "rep", "status", "samples/s", "real tok/s", "step p50 ms",
               "peak MiB", "val acc", "val F1", "final loss", "reason"]
    # disable_numparse: the cells keep the formatting given above ("0.8122", not "0.8122" re-read as 0.8122 -> "0.81")
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
