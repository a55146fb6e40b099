"""How a report's time and size grow with the seeds: 2,500 seeds x 2 loops of the tiny model.

    python benchmarks/report_size.py [--seeds 2500] [--limit-s 60] [--limit-files 20]

Two real cells (manual and trainer, the tiny model, a few steps, in this process) are copied to every
seed, each copy's predictions and step losses drawn anew (a fixed generator), and appended as one
results file; then ``bench report`` renders it in a process of its own, timed from outside.  Fails
(exit 1) when the report takes longer than --limit-s or leaves more than --limit-files files beside
the records.  A benchmark, not a unit test: the machine's speed decides the first limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def seed_records(seeds: int, glue_dir: str | None) -> list:
    from bench.cell.main import run_cell
    from bench.config import Cell, RunConfig

    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=64, eval_samples=48, max_steps=6, timing_warmup=2,
                    seed=1)
    base = [run_cell(Cell(loop, "cpu", "fp32", run), progress=False) for loop in ("manual", "trainer")]
    for r in base:
        if r.status != "ok":
            raise SystemExit(f"report_size: the {r.loop} cell failed: {r.reason}")
    rng = random.Random(0)
    out = []
    for seed in range(1, seeds + 1):
        for r in base:
            config = {**r.config, "run": {**r.config["run"], "seed": seed}}
            preds = dataclasses.replace(r.eval_predictions, predicted=[
                p if rng.random() > 0.1 else 1 - p for p in r.eval_predictions.predicted])
            out.append(dataclasses.replace(
                r, seed=seed, cell_id=f"{r.cell_id[:8]}{seed:08d}", config=config, eval_predictions=preds,
                step_losses=[x * (0.9 + 0.2 * rng.random()) for x in (r.step_losses or [])]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--seeds", type=int, default=2500)
    parser.add_argument("--limit-s", type=float, default=60.0)
    parser.add_argument("--limit-files", type=int, default=20)
    parser.add_argument("--glue-dir", default=None, help="MRPC (default: $BENCH_GLUE_DIR, else a generated fixture)")
    args = parser.parse_args(argv)
    import os

    from bench.records.io import append_record
    from tests.helpers.mrpc_fixture import write_mrpc_like

    with tempfile.TemporaryDirectory() as tmp:
        glue = args.glue_dir or os.environ.get("BENCH_GLUE_DIR") or str(write_mrpc_like(Path(tmp) / "glue"))
        out = Path(tmp) / "run"
        out.mkdir()
        records = seed_records(args.seeds, glue)
        for r in records:
            append_record(out, r)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bench", "report", str(out)], cwd=ROOT, capture_output=True,
                              text=True)
        seconds = time.perf_counter() - t0
        files = [p for p in out.rglob("*") if p.is_file() and p.name not in ("results.jsonl", ".bench.lock")]
        lines = (out / "report.md").read_text(encoding="utf-8").count("\n") if (out / "report.md").exists() else 0
        print(f"report_size: {len(records)} records ({args.seeds} seeds x 2 loops): bench report took {seconds:.1f} s "
              f"(exit {done.returncode}), wrote {len(files)} files, report.md {lines} lines")
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        over = [f"{seconds:.1f} s > {args.limit_s:g} s"] if seconds > args.limit_s else []
        over += [f"{len(files)} files > {args.limit_files}"] if len(files) > args.limit_files else []
        if over:
            print("report_size: over its limits: " + "; ".join(over), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
