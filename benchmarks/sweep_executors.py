"""A sweep's wall clock under each executor on this machine: the same tiny cells run sequentially and
as Ray tasks two at a time.  A script, not a timed test: run it on a quiet machine and read the lines.

    python benchmarks/sweep_executors.py [--cells-at-once 2] [--max-steps 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep(out: Path, glue_dir: str, max_steps: int, extra: list[str]) -> float:
    argv = [sys.executable, "-m", "bench", "run", "--loops", "manual,fabric", "--repeats", "2", "--device", "cpu",
            "--model", "tiny", "--glue-dir", glue_dir, "--max-steps", str(max_steps), "--timing-warmup", "2",
            "--train-samples", "64", "--eval-samples", "16", "--no-progress", "--out", str(out), *extra]
    t0 = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        sys.exit(f"sweep failed: {result.stderr.strip().splitlines()[-1]}")
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells-at-once", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=8)
    ap.add_argument("--glue-dir", default=os.environ.get("BENCH_GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue")))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seq = sweep(Path(tmp) / "seq", a.glue_dir, a.max_steps, [])
        ray = sweep(Path(tmp) / "ray", a.glue_dir, a.max_steps,
                    ["--executor", "ray", "--cells-at-once", str(a.cells_at_once)])
    print(f"cores: {len(os.sched_getaffinity(0))}; 4 tiny cells, --max-steps {a.max_steps}")
    print(f"sequential: {seq:.1f} s wall")
    print(f"ray ({a.cells_at_once} at once, Ray's start included): {ray:.1f} s wall ({seq / ray:.2f}x)")


if __name__ == "__main__":
    main()
