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
against the baseline of this machine class.

Every figure gets one of three verdicts, printed with it: ok, regression, or could not judge (missing
from the run, not a finite positive number, no baseline to compare with: a class without a committed
baseline, a loop not measured, a corrupt or foreign JSON).  The exit code is the run's: 0 ok, 1 a
regression, 3 could not judge (2: the command line was wrong).
``--save`` writes this class's baseline from one or more runs (each figure's median over the runs,
so one noisy run does not set the bar); ``--save-ratios`` rewrites the shared ratio baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "baselines"


def machine_class(cpuinfo: str | None = None) -> str:
    """Baselines are per machine class: CPU vector capability, Intel's AMX, and core count.  torch
    calls an AMX Xeon and an AMD Zen 4/5 both AVX512, but their cores run these benchmarks 1.5-2x
    apart (a 2-core Xeon here: every loop 1.5-2.0x the Zen 5 baseline's medians, the 2x limit spent
    on the class alone), so a CPU with AMX tiles is a class of its own.  ``cpuinfo``: the text of
    /proc/cpuinfo (read here when not given; no AMX where it cannot be read)."""
    import torch

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    amx = any(line.split(":", 1)[0].strip() == "flags" and "amx_tile" in line.split(":", 1)[-1].split()
              for line in cpuinfo.splitlines())
    return f"cpu-{torch.backends.cpu.get_cpu_capability().lower()}{'-amx' if amx else ''}-{os.cpu_count()}core"


BASELINE_FORMAT = "bench-baseline/1"
RATIO_BASELINE = "ratios.json"


class Unjudged(Exception):
    """A file the gate cannot read as what it should be: the verdict is "could not judge"."""


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Unjudged(f"{path}: not readable as {what} ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise Unjudged(f"{path}: not {what} (a JSON {type(data).__name__}, not an object)")
    return data


def load_ratio_baseline(baseline_dir: Path = DEFAULT_DIR) -> dict[str, float]:
    """The machine-independent figures every run is gated on: loop/manual ratios."""
    path = baseline_dir / RATIO_BASELINE
    data = _read_json(path, "a ratio baseline")
    if data.get("format") != BASELINE_FORMAT or not isinstance(data.get("ratios"), dict) or not data["ratios"]:
        raise Unjudged(f"{path}: not a ratio baseline (format {BASELINE_FORMAT!r} with a non-empty 'ratios')")
    return dict(data["ratios"])


def medians(path: Path) -> dict[str, float]:
    """A run's figures: benchmark medians and paired ratios (a pytest-benchmark JSON), or a saved
    baseline's."""
    data = _read_json(path, "a pytest-benchmark JSON or a baseline")
    if data.get("format") == BASELINE_FORMAT:
        if not isinstance(data.get("medians"), dict):
            raise Unjudged(f"{path}: a baseline without its 'medians'")
        return dict(data["medians"])
    benchmarks = data.get("benchmarks")
    if not isinstance(benchmarks, list):
        raise Unjudged(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    if not benchmarks:
        raise Unjudged(f"{path}: holds no benchmark at all")
    try:
        out = {b["name"]: b["stats"]["median"] for b in benchmarks}
    except (KeyError, TypeError) as e:
        raise Unjudged(f"{path}: a benchmark without a name or a median ({e!r})") from None
    for b in benchmarks:  # paired ratios measured inside one benchmark
        for key, value in (b.get("extra_info") or {}).items():
            if key.endswith("/manual"):
                out[f"paired {key}"] = value
    return out


def _loop_name(name: str) -> str | None:
    if name.startswith("test_loop_steps[") and name.endswith("]"):
        return name[len("test_loop_steps["):-1]
    return None


def _usable(value) -> bool:
    """A figure a comparison can rest on: a finite positive number (NaN compares False with everything)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def ratios(m: dict[str, float]) -> dict[str, float]:
    """loop/manual ratios: the paired ones (interleaved rounds) where the run has them, else the
    ratio of the separate benchmarks' medians; and the meter's cost over the manual loop's."""
    from loops import REFERENCE_LOOP

    manual = m.get(f"test_loop_steps[{REFERENCE_LOOP}]")
    out = {k[len("paired "):]: v for k, v in m.items() if k.startswith("paired ")}
    if _usable(manual):
        for name, value in m.items():
            loop = _loop_name(name)
            if loop and loop != REFERENCE_LOOP and _usable(value):
                out.setdefault(f"{loop}/manual", value / manual)
        if "test_meter_overhead" in m:
            out["meter overhead"] = m["test_meter_overhead"] / manual if _usable(m["test_meter_overhead"]) \
                else float("nan")
    return out


# Gated as a share of the manual loop's time only ("meter overhead" below), never as an absolute median:
# the meter's 20 steps take about a millisecond, which a Zen 4 and a Zen 5 of one class (AVX-512, 2
# cores) measure at 1.3 and 0.6 ms with the same code.
SHARE_GATED = {"test_meter_overhead"}

OK, REGRESSION, UNJUDGED = "ok", "regression", "could not judge"
EXIT = {OK: 0, REGRESSION: 1, UNJUDGED: 3}


def check(current: dict[str, float], baseline: dict[str, float] | None, base_r: dict[str, float],
          max_slowdown: float, max_ratio_growth: float, max_meter_overhead: float) -> list[tuple[str, str]]:
    """Every figure's verdict, as (verdict, line): absolute medians against ``baseline`` (this
    class's; None: none, which is itself a figure not judged), ratios against ``base_r`` (shared by
    every machine).  A figure that is missing, not a finite positive number, or without a baseline
    is "could not judge", never "ok"."""
    out = []
    if baseline is None:
        out.append((UNJUDGED, "absolute medians: no baseline for this machine class"))
    for name, base in sorted((baseline or {}).items()):
        if name.startswith("paired "):
            continue  # ratios, gated below
        if name in SHARE_GATED:
            continue  # a millisecond figure whose median moves 2x between CPUs of one class: its share is gated
        value = current.get(name)
        if value is None:
            out.append((UNJUDGED, f"{name}: in the baseline but not measured in this run"))
        elif not (_usable(value) and _usable(base)):
            out.append((UNJUDGED, f"{name}: median {value!r} vs baseline {base!r} is not a comparison of two timings"))
        else:
            factor = value / base
            line = f"{name}: median {value * 1000:.1f} ms vs baseline {base * 1000:.1f} ms ({factor:.2f}x, limit {max_slowdown:.2f}x)"
            out.append((REGRESSION if factor > max_slowdown else OK, line))
    cur_r = ratios(current)
    for key in sorted(set(base_r) | set(cur_r) | {"meter overhead"}):
        value, base = cur_r.get(key), base_r.get(key)
        if key == "meter overhead":
            if not (_usable(value) or value == 0):
                out.append((UNJUDGED, f"meter overhead: {value!r} (no finite figure in this run)"))
            else:
                line = f"meter overhead: {value:.2%} of the manual loop's time (limit {max_meter_overhead:.0%})"
                out.append((REGRESSION if value > max_meter_overhead else OK, line))
        elif value is None:
            out.append((UNJUDGED, f"{key}: in the ratio baseline but not measured in this run"))
        elif not _usable(value):
            out.append((UNJUDGED, f"{key}: {value!r} is not a ratio of two timings"))
        elif not _usable(base):
            out.append((UNJUDGED, f"{key}: {value:.3f} (no baseline ratio to compare with)"))
        else:
            growth = value / base - 1
            line = f"{key}: {value:.3f} vs baseline {base:.3f} ({growth:+.1%}, limit +{max_ratio_growth:.0%})"
            out.append((REGRESSION if growth > max_ratio_growth else OK, line))
    return out


def verdict(results: list[tuple[str, str]]) -> str:
    """The run's verdict: a regression wherever one figure regressed; else could not judge wherever
    one figure could not be judged; else ok."""
    kinds = {kind for kind, _ in results}
    return REGRESSION if REGRESSION in kinds else UNJUDGED if UNJUDGED in kinds or not results else OK


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
    try:
        return _gate(current, baseline_path, ratio_path, cls, args)
    except Unjudged as e:
        print(f"bench.regress: could not judge: {e}", file=sys.stderr)
        return EXIT[UNJUDGED]


def _gate(current: Path, baseline_path: Path, ratio_path: Path, cls: str, args) -> int:
    """Print every figure compared and its verdict, then the run's; exit 0 (ok), 1 (regression) or
    3 (could not judge: a figure missing, not a number, or without a baseline)."""
    if not ratio_path.exists():
        raise Unjudged(f"no ratio baseline {ratio_path}; record one with --save-ratios")
    base_r = load_ratio_baseline(args.baseline_dir)
    baseline = None
    if baseline_path.exists():
        print(f"gating medians against {baseline_path}")
        baseline = medians(baseline_path)
    else:
        print(f"no absolute baseline for machine class {cls} ({baseline_path}): its medians cannot be judged "
              f"(record one with: python -m bench.regress RUN.json [RUN2.json ...] --save)")
    print(f"gating ratios against {ratio_path}")
    results = check(medians(current), baseline, base_r, args.max_slowdown, args.max_ratio_growth,
                    args.max_meter_overhead)
    for kind, line in results:
        print(f"{ {OK: 'ok   ', REGRESSION: 'FAIL ', UNJUDGED: '???? '}[kind]}{line}")
    found = verdict(results)
    counts = ", ".join(f"{sum(k == kind for k, _ in results)} {kind}" for kind in (OK, REGRESSION, UNJUDGED))
    if found == REGRESSION:
        print(f"\nregression ({counts}):", *[line for kind, line in results if kind == REGRESSION], sep="\n  ")
    elif found == UNJUDGED:
        print(f"\ncould not judge ({counts}):", *[line for kind, line in results if kind == UNJUDGED], sep="\n  ")
    else:
        print(f"no regression ({counts})")
    return EXIT[found]


if __name__ == "__main__":
    sys.exit(main())
