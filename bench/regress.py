"""Gate a pytest-benchmark run against the committed baseline of this machine class.

    python -m bench.regress CURRENT.json [--baseline-dir benchmarks/baselines]
    python -m bench.regress RUN1.json RUN2.json RUN3.json --save

Checks, each with a threshold that holds on a noisy shared 2-core machine:
- every benchmark's median is within ``--max-slowdown`` (default 2x: absolute seconds on a shared
  machine swing by a third between runs, so this only catches gross regressions);
- each loop's time over the manual loop's, measured in interleaved rounds of one run (the median
  of the per-round ratios), has not grown by more than ``--max-ratio-growth`` (default 25%; clean runs here move the paired ratios by up to a fifth) over
  the baseline's ratio: the sensitive check, since a slow spell of the machine cancels out;
- the meter's own work costs at most ``--max-meter-overhead`` (default 1%) of the manual loop's time.
The ratios and the meter's cost are close to machine-independent (a slow machine slows every loop),
so they are gated on every machine against one committed baseline, ``ratios.json``; absolute medians
only against the baseline of this machine class, and a class without one skips that check alone.
``--save`` writes this class's baseline from one or more runs (each figure's median over the runs,
so one noisy run does not set the bar); ``--save-ratios`` rewrites the shared ratio baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "baselines"


def machine_class() -> str:
    """Baselines are per machine class: CPU vector capability and core count."""
    import torch

    return f"cpu-{torch.backends.cpu.get_cpu_capability().lower()}-{os.cpu_count()}core"


BASELINE_FORMAT = "bench-baseline/1"
RATIO_BASELINE = "ratios.json"


def load_ratio_baseline(baseline_dir: Path = DEFAULT_DIR) -> dict[str, float]:
    """The machine-independent figures every run is gated on: loop/manual ratios."""
    data = json.loads((baseline_dir / RATIO_BASELINE).read_text())
    return dict(data["ratios"])


def medians(path: Path) -> dict[str, float]:
    """A run's figures: benchmark medians and paired ratios (a pytest-benchmark JSON), or a saved
    baseline's."""
    data = json.loads(path.read_text())
    if data.get("format") == BASELINE_FORMAT:
        return dict(data["medians"])
    out = {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}
    for b in data["benchmarks"]:  # paired ratios measured inside one benchmark
        for key, value in (b.get("extra_info") or {}).items():
            if key.endswith("/manual"):
                out[f"paired {key}"] = value
    return out


def _loop_name(name: str) -> str | None:
    if name.startswith("test_loop_steps[") and name.endswith("]"):
        return name[len("test_loop_steps["):-1]
    return None


def ratios(m: dict[str, float]) -> dict[str, float]:
    """loop/manual ratios: the paired ones (interleaved rounds) where the run has them, else the
    ratio of the separate benchmarks' medians; and the meter's cost over the manual loop's."""
    manual = m.get("test_loop_steps[manual]")
    out = {k[len("paired "):]: v for k, v in m.items() if k.startswith("paired ")}
    if manual:
        for name, value in m.items():
            loop = _loop_name(name)
            if loop and loop != "manual":
                out.setdefault(f"{loop}/manual", value / manual)
        if "test_meter_overhead" in m:
            out["meter overhead"] = m["test_meter_overhead"] / manual
    return out


def check(current: dict[str, float], baseline: dict[str, float] | None, base_r: dict[str, float],
          max_slowdown: float, max_ratio_growth: float, max_meter_overhead: float) -> list[str]:
    """Absolute medians against ``baseline`` (this class's; None: not checked), ratios against
    ``base_r`` (shared by every machine)."""
    failures = []
    for name, base in sorted((baseline or {}).items()):
        if name.startswith("paired "):
            continue  # ratios, gated below
        if name not in current:
            failures.append(f"{name}: in the baseline but not in this run")
            continue
        factor = current[name] / base
        line = f"{name}: median {current[name] * 1000:.1f} ms vs baseline {base * 1000:.1f} ms ({factor:.2f}x)"
        print(("FAIL " if factor > max_slowdown else "ok   ") + line)
        if factor > max_slowdown:
            failures.append(f"{line} > {max_slowdown:.2f}x")
    cur_r = ratios(current)
    for key, value in sorted(cur_r.items()):
        if key == "meter overhead":
            bad = value > max_meter_overhead
            line = f"meter overhead: {value:.2%} of the manual loop's time (limit {max_meter_overhead:.0%})"
        else:
            base = base_r.get(key)
            growth = value / base - 1 if base else 0.0
            bad = growth > max_ratio_growth
            line = f"{key}: {value:.3f} vs baseline {base:.3f} ({growth:+.1%}, limit +{max_ratio_growth:.0%})" if base \
                else f"{key}: {value:.3f} (no baseline ratio)"
        print(("FAIL " if bad else "ok   ") + line)
        if bad:
            failures.append(line)
    return failures


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.regress", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("current", type=Path, nargs="+", help="pytest-benchmark JSON of this run (with --save: of one or more runs)")
    p.add_argument("--baseline-dir", type=Path, default=DEFAULT_DIR,
                   help="folder of the committed baselines: <machine class>.json and ratios.json")
    p.add_argument("--machine-class", default=None,
                   help="gate against this class's baseline instead of the detected one (e.g. cpu-avx2-2core)")
    p.add_argument("--save", action="store_true",
                   help="write the baseline of this machine class: each figure's median over the runs given")
    p.add_argument("--save-ratios", action="store_true",
                   help="write the shared ratio baseline (ratios.json) from the runs given")
    p.add_argument("--max-slowdown", type=float, default=2.0,
                   help="fail when a benchmark's median is more than this many times its baseline's")
    p.add_argument("--max-ratio-growth", type=float, default=0.25,
                   help="fail when a loop/manual ratio grows by more than this fraction over the baseline's")
    p.add_argument("--max-meter-overhead", type=float, default=0.01,
                   help="fail when the meter's own work costs more than this fraction of the manual loop's time")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    missing = [str(c) for c in args.current if not c.exists()]
    if missing:
        print(f"bench.regress: error: {missing[0]}: no such benchmark JSON", file=sys.stderr)
        return 2
    if len(args.current) > 1 and not (args.save or args.save_ratios):
        print("bench.regress: error: gate one run at a time (several runs only with --save)", file=sys.stderr)
        return 2
    cls = args.machine_class or machine_class()
    baseline_path = args.baseline_dir / f"{cls}.json"
    ratio_path = args.baseline_dir / RATIO_BASELINE
    if args.save or args.save_ratios:
        runs = [medians(c) for c in args.current]
        common = [k for k in runs[0] if all(k in r for r in runs)]
        meds = {k: statistics.median(r[k] for r in runs) for k in common}
        args.baseline_dir.mkdir(parents=True, exist_ok=True)
        sources = [c.name for c in args.current]
        if args.save:
            baseline = {"format": BASELINE_FORMAT, "machine_class": cls, "runs": len(runs), "sources": sources,
                        "medians": meds}
            baseline_path.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")
            print(f"baseline for {cls} saved from {len(runs)} run(s), figure by figure medians: {baseline_path}")
        if args.save_ratios:
            data = {"format": BASELINE_FORMAT, "measured_on": cls, "runs": len(runs), "sources": sources,
                    "ratios": {k: v for k, v in ratios(meds).items() if k != "meter overhead"}}
            ratio_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            print(f"ratio baseline saved from {len(runs)} run(s) on {cls}: {ratio_path}")
        return 0
    (current,) = args.current
    if not ratio_path.exists():
        print(f"bench.regress: error: no ratio baseline {ratio_path}; record one with --save-ratios", file=sys.stderr)
        return 2
    base_r = load_ratio_baseline(args.baseline_dir)
    baseline = None
    if baseline_path.exists():
        print(f"gating medians against {baseline_path}")
        baseline = medians(baseline_path)
    else:
        print(f"no absolute baseline for machine class {cls} ({baseline_path}): medians not gated "
              f"(record one with: python -m bench.regress RUN.json [RUN2.json ...] --save); ratios still gated")
    print(f"gating ratios against {ratio_path}")
    failures = check(medians(current), baseline, base_r, args.max_slowdown, args.max_ratio_growth,
                     args.max_meter_overhead)
    if failures:
        print(f"\n{len(failures)} regression(s):", *failures, sep="\n  ")
        return 1
    print("no regression")
    return 0


if __name__ == "__main__":
    sys.exit(main())
