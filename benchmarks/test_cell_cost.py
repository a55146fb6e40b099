"""What a cell costs beyond its training: the fixed cost per cell and the training share of a sweep.

A cell's fixed cost is its ``process_wall_s`` less its warm-up and timed steps and its evaluation
(``bench.records.vocabulary.fixed_cost_s``): the interpreter, imports, model and data, probes, the loop's own
setup, the harness's bookkeeping.  Goals, on a 2-core CPU with MiniLM: at most 3 s per
cell, median over the five loops; the README's main job at least 50% of its wall clock in timed steps.

Two ways to run it:

- CI (``.ci/run``, with the other benchmarks): a reduced main job, every loop for ``CI_STEPS`` steps
  with ``CI_EVAL_SAMPLES`` validation pairs (the fixed cost does not depend on either: the full
  training split is still loaded and tokenized), about a minute; its figures land in the saved
  benchmark JSON's ``extra_info``.  Its training share is that of the reduced job, not the goal's.
- The full measurement, the README's main job itself (every loop, MiniLM, 30 steps, the whole
  validation split), a few minutes::

      python benchmarks/test_cell_cost.py [--out DIR] [--max-steps 30]

  prints the same figures as JSON (fixed cost per loop and its median, the parts' medians, timed
  steps over the sweep's wall clock).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GLUE_DIR = (ROOT.parent / "shared" / "data" / "glue").resolve()
CI_STEPS = 8  # the 5 warm-up steps and 3 timed ones
CI_EVAL_SAMPLES = 64
FIXED_COST_GOAL_S = 3.0
TRAINING_SHARE_GOAL = 0.5


def measure(out: Path, max_steps: int, eval_samples: int | None = None, glue_dir: Path = GLUE_DIR) -> dict:
    """Run the main job (reduced by ``max_steps`` / ``eval_samples``) as a user does, each cell in its
    own process, and say where its wall clock went."""
    from bench.records import read_records
    from bench.records.vocabulary import WALL_PARTS as PARTS, fixed_cost_s, named_s

    argv = [sys.executable, "-m", "bench", "run", "--loops", "all", "--device", "cpu", "--model", "minilm-l6",
            "--glue-dir", str(glue_dir), "--max-steps", str(max_steps), "--out", str(out), "--no-progress"]
    if eval_samples:
        argv += ["--eval-samples", str(eval_samples)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    t0 = time.time()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    sweep_s = time.time() - t0
    if done.returncode != 0:
        raise RuntimeError(f"the sweep failed ({done.returncode}): {done.stderr[-2000:]}")
    records = [r for r in read_records(out) if r.status == "ok"]
    fixed = {r.loop: fixed_cost_s(r) for r in records}
    timed = sum(r.timed_s for r in records)
    return {
        "command": " ".join(argv[1:]),
        "cells": len(records),
        "fixed_cost_s_median": statistics.median(fixed.values()),
        "fixed_cost_s": fixed,
        "fixed_cost_goal_s": FIXED_COST_GOAL_S,
        # The first figure (6.2 s on a 2-core Zen 5 before the cuts), computable from any record:
        # process_wall_s - train_wall_s - eval_s (train_wall_s holds the steps and in-training evaluations).
        "process_minus_train_eval_s_median": statistics.median(
            r.process_wall_s - r.train_wall_s - r.eval_s for r in records),
        "process_wall_s_median": statistics.median(r.process_wall_s for r in records),
        "parts_s_median": {k: statistics.median(r.wall_s[k] for r in records) for k, _ in PARTS},
        "after_record_s_median": statistics.median(r.wall_s.get("after_record_s", 0.0) for r in records),
        "named_share_min": min(named_s(r.wall_s) / r.process_wall_s for r in records),
        "timed_steps_s": timed,
        "sweep_wall_s": sweep_s,
        "timed_share": timed / sweep_s,
        "timed_share_goal": TRAINING_SHARE_GOAL,
        "sweep_last_line": done.stderr.strip().splitlines()[-1],
    }


def test_cell_fixed_cost(benchmark, tmp_path):
    """The reduced main job once (a sweep of every loop is already many cells: no rounds)."""
    figures = {}

    def sweep():
        figures.update(measure(tmp_path / "out", CI_STEPS, CI_EVAL_SAMPLES))

    benchmark.group = "cell cost"
    benchmark.pedantic(sweep, rounds=1, iterations=1)
    benchmark.extra_info.update(figures, job=f"reduced main job: {CI_STEPS} steps, {CI_EVAL_SAMPLES} validation pairs")
    print(json.dumps(figures, indent=1))
    assert figures["cells"] >= 3 and figures["named_share_min"] > 0.98


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="The README's main job: fixed cost per cell and training share.",
                                allow_abbrev=False)
    p.add_argument("--out", type=Path, default=None, help="results folder (default: a temporary one)")
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--eval-samples", type=int, default=None)
    p.add_argument("--glue-dir", type=Path, default=GLUE_DIR)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args.out or Path(tmp) / "out", args.max_steps, args.eval_samples, args.glue_dir)
    import torch

    figures["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    figures["cores"] = os.cpu_count()
    print(json.dumps(figures, indent=1))
    print(f"fixed cost per cell: {figures['fixed_cost_s_median']:.2f} s median over {figures['cells']} loops "
          f"(goal <= {FIXED_COST_GOAL_S:g} s); timed steps {figures['timed_steps_s']:.0f} s of "
          f"{figures['sweep_wall_s']:.0f} s ({figures['timed_share']:.0%}, goal >= {TRAINING_SHARE_GOAL:.0%})")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
