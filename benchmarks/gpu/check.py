"""The GPU check: the main job's questions on one GPU, in the order they matter, in one command that
ends by its own deadline, each part's records in OUT as soon as the part ends.

    benchmarks/gpu/run.sh [--dry-run] [--resume]      (installs the carried wheels, then runs this)

1. The environment, in seconds: versions into env.txt, the carried wheels' requirements against what
   the machine has, the GPU; a known incompatibility stops here.
2. A smoke cell (manual, fp32, a few steps): if it fails, nothing else runs.
3. The parts, each a ``bench run`` of its own into WORK/<part>, then its report and a tarball of its
   folder (records, report, CSV, plots, logs) in OUT:
     speed    the main job's speed at its real size: bert-base (random weights), 5 loops x fp32, bf16,
              the tutorial's settings, 100 timed steps a cell;
     quality  pretrained MiniLM, 5 loops x bf16, all of MRPC, 3 epochs, evaluation every 200 steps,
              target F1 0.85: accuracy and F1 with intervals and time to target;
     fast     --preset fast in bf16 (batch 32, length grouping, fused AdamW, DataLoader workers, pinned
              memory), bert-base;
     paths    tf32 and fp16, bert-base, the tutorial's settings;
     lora     the quality part's cells under LoRA (PEFT, r 8 on query and value, lr 5e-4): reported
              with the quality part's records, each loop's LoRA cell beside its full one.
   A part starts only if the deadline leaves it its minimum; the one running when the deadline
   comes is stopped (SIGTERM: what is recorded stays) and reported.  What did not fit is named in
   check.log; ``--resume`` (a second call on the same machine) continues each part from its
   records.
--dry-run: the same steps on the CPU, small: the tiny model for bert-base, the carried MiniLM (its
fp16 weights loaded as fp32) for a few steps, a subset of MRPC.

What comes back in OUT (at most 8 files): check.log, env.txt, <part>.tar.gz per part ended, and
inflight-results.jsonl (the running part's records, copied every few seconds) while a part runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".data" / "gpu"
CARRIED = ("datasets", "evaluate", "dill", "multiprocess", "fsspec", "peft")  # the wheels run.sh installs
VERSIONS = ("torch", "transformers", "accelerate", "lightning", "datasets", "evaluate", "pyarrow", "pandas",
            "fsspec", "huggingface_hub", "tokenizers", "safetensors", "numpy", "dill", "multiprocess", "psutil",
            "nvidia-ml-py", "peft")
REPORT_S = 60  # what a part's report and tarball may take
MEMORY_GIB = 48  # a cell's memory limit: the machine starts with little and grows (its kind has 128 GiB)


class Check:
    def __init__(self, out: Path, work: Path, deadline_s: float, dry: bool):
        self.out, self.work, self.dry = out, work, dry
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline_s
        self.log_path = out / "check.log"

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:5.0f} s] {text}"
        print(line, flush=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def left(self) -> float:
        return self.deadline - time.monotonic()


# -- 1. the environment ------------------------------------------------------------------------------

def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def requirement_conflicts() -> list[str]:
    """Each requirement of the carried packages that the installed versions do not meet."""
    from importlib import metadata

    from packaging.requirements import Requirement

    conflicts = []
    for dist in CARRIED:
        for text in metadata.requires(dist) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = _version(req.name)
            if have is None:
                conflicts.append(f"{dist} needs {req}, which is not installed")
            elif req.specifier and not req.specifier.contains(have, prereleases=True):
                conflicts.append(f"{dist} needs {req}, the machine has {req.name} {have}")
    return conflicts


def check_environment(c: Check) -> bool:
    rows = [f"{name} {_version(name) or '-'}" for name in VERSIONS]
    env = ["python " + sys.version.split()[0], *rows]
    conflicts = requirement_conflicts()
    env += ["", "requirement conflicts: " + ("; ".join(conflicts) if conflicts else "none")]
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            env.append(f"gpu: {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, "
                       f"capability {p.major}.{p.minor}, CUDA {torch.version.cuda}")
        elif not c.dry:
            conflicts.append("torch sees no CUDA device")
    except Exception as exc:  # noqa: BLE001 - the line says what failed
        conflicts.append(f"torch does not import: {type(exc).__name__}: {exc}")
    smi = _run_quiet(["nvidia-smi"]) if shutil.which("nvidia-smi") else "nvidia-smi: not on this machine"
    env += ["", "$ nvidia-smi", smi]
    bench_env = _run_quiet([sys.executable, "-m", "bench", "env"])
    env += ["", "$ python -m bench env", bench_env]
    _write_whole(c.out / "env.txt", "\n".join(env) + "\n")
    c.say("versions: " + ", ".join(rows[:8]))
    for text in conflicts:
        c.say(f"environment: {text}")
    return not conflicts


def _run_quiet(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (done.stdout + done.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{argv[0]}: {type(exc).__name__}: {exc}"


# -- the parts -----------------------------------------------------------------------------------

def parts(dry: bool) -> list[dict]:
    """Each part: its name, the ``bench run`` flags, the cell timeout, and the least time worth starting it in."""
    # Paths relative to the tree's root (each sweep runs there): records name the carried folders, not
    # where the machine keeps them.
    data = DATA.relative_to(ROOT)
    glue = ["--glue-dir", str(data / "glue")]
    if dry:
        bert = ["--model", "tiny", *glue, "--train-samples", "512", "--eval-samples", "96"]
        short = ["--max-steps", "12", "--timing-warmup", "2"]
        minilm = ["--model", str(data / "minilm-l6"), *glue, "--train-samples", "256", "--eval-samples", "96",
                  "--max-steps", "12", "--timing-warmup", "2", "--eval-every", "6", "--target-f1", "0.85"]
        device = ["--device", "cpu"]
    else:
        bert = ["--model", str(data / "bert-base-uncased"), "--no-weights", *glue]
        # 100 timed steps of 10-30 ms: over the busy rule's shortest judged window on 16 cores.
        short = ["--max-steps", "110", "--timing-warmup", "10"]
        minilm = ["--model", str(data / "minilm-l6"), *glue, "--epochs", "3", "--timing-warmup", "10",
                  "--eval-every", "200", "--target-f1", "0.85"]
        device = ["--device", "cuda"]
    every = ["--loops", "all", *device, "--no-progress", "--cell-memory-limit", str(MEMORY_GIB)]
    return [
        dict(name="smoke", flags=["--loops", "manual", *device, "--precision", "fp32", *bert,
                                  "--max-steps", "8", "--timing-warmup", "2", "--no-progress"],
             cell_timeout=180, least_s=30, cells=1),
        dict(name="speed", flags=[*every, "--precision", "fp32,bf16", *bert, *short], cell_timeout=120, least_s=60,
             cells=10),
        dict(name="quality", flags=[*every, "--precision", "bf16", *minilm], cell_timeout=300, least_s=90, cells=5),
        dict(name="fast", flags=[*every, "--precision", "bf16", "--preset", "fast", *bert, *short],
             cell_timeout=120, least_s=45, cells=5),
        # A CPU refuses tf32 and fp16 by name: the dry run asks for all four (two skipped with the reason).
        dict(name="paths", flags=[*every, "--precision", "all" if dry else "tf32,fp16", *bert, *short],
             cell_timeout=120, least_s=45, cells=20 if dry else 10),
        # LoRA (PEFT) on the quality part's cells: reported together with them (both folders' records
        # in one report), each loop's LoRA cell beside its full one.
        dict(name="lora", flags=[*every, "--precision", "bf16", "--finetune", "lora", "--lora-lr", "5e-4", *minilm],
             cell_timeout=300, least_s=90, cells=5),
    ]


def records_of(folder: Path) -> list[dict]:
    path = folder / "results.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def run_part(c: Check, part: dict, budget_s: float) -> int:
    """``bench run`` for the part, stopped with SIGTERM at ``budget_s`` (then SIGKILL 20 s later);
    its records copied to OUT every few seconds while it runs."""
    folder = c.work / part["name"]
    where = ["--resume", str(folder)] if records_of(folder) else ["--out", str(folder)]
    argv = [sys.executable, "-m", "bench", "run", *part["flags"], "--cell-timeout", str(part["cell_timeout"]), *where]
    c.say(f"{part['name']}: " + " ".join(argv[1:]) + f" (at most {budget_s:.0f} s)")
    log = open(c.work / f"{part['name']}.log", "a", encoding="utf-8")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    done = threading.Event()
    copier = threading.Thread(target=_copy_records, args=(folder, c.out / "inflight-results.jsonl", done), daemon=True)
    copier.start()
    try:
        rc = proc.wait(timeout=max(1.0, budget_s))
    except subprocess.TimeoutExpired:
        c.say(f"{part['name']}: its time is up; stopping it (SIGTERM: every record made so far stays)")
        proc.send_signal(signal.SIGTERM)  # the sweep ends its cell and keeps what is recorded
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = None
        _signal(proc, signal.SIGKILL)  # whatever of its process group is left
        rc = proc.wait() if rc is None else rc
        rc = rc if rc else 124
    done.set()
    copier.join()
    log.close()
    return rc


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _copy_records(folder: Path, dest: Path, done: threading.Event) -> None:
    while not done.wait(5.0):
        src = folder / "results.jsonl"
        if src.exists():
            _write_whole(dest, src.read_bytes())


def _write_whole(path: Path, content) -> None:
    """Whole or not at all: a temporary file beside it, renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(content, str):
        tmp.write_text(content, encoding="utf-8")
    else:
        tmp.write_bytes(content)
    os.replace(tmp, path)


def report_and_pack(c: Check, part: dict) -> None:
    """The part's report (``bench run`` writes it; a stopped run may not have: then ``bench report``,
    bounded in time), then one tarball of its folder in OUT."""
    folder = c.work / part["name"]
    if not records_of(folder):
        c.say(f"{part['name']}: no records")
        return
    argv = [sys.executable, "-m", "bench", "report", str(folder)]
    try:
        if (folder / "report.md").exists() and (folder / "report.md").stat().st_mtime >= (
                folder / "results.jsonl").stat().st_mtime:
            raise FileExistsError  # the run's own report covers every record
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=REPORT_S,
                              start_new_session=True)
        if done.returncode:
            c.say(f"{part['name']}: bench report exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    except FileExistsError:
        pass
    except subprocess.TimeoutExpired:
        c.say(f"{part['name']}: bench report ran past {REPORT_S} s and was stopped; the records are packed without it")
    tmp = c.out / f"{part['name']}.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            if path.name != ".bench.lock":
                tar.add(path, arcname=f"{part['name']}/{path.name}")
        tar.add(c.work / f"{part['name']}.log", arcname=f"{part['name']}/sweep.log")  # what bench run printed
    os.replace(tmp, c.out / f"{part['name']}.tar.gz")
    (c.out / "inflight-results.jsonl").unlink(missing_ok=True)


def cell_lines(c: Check, part: dict) -> None:
    rows = records_of(c.work / part["name"])
    for r in rows:
        preset = (r.get("config") or {}).get("run", {}).get("preset") or "tutorial"
        c.say(f"  {r.get('loop', '?'):<10} {r.get('precision', '?'):<5} {preset:<8} {r.get('status', '?'):<7} process {r.get('process_wall_s') or 0:6.1f} s, "
              f"training {r.get('train_wall_s') or 0:6.1f} s, {r.get('samples_per_s') or 0:8.1f} samples/s"
              + (f", F1 {r['eval_f1']:.4f}" if r.get("eval_f1") is not None else "")
              + (f"  {str(r.get('reason'))[:100]}" if r.get("reason") else ""))
    ok = sum(r.get("status") == "ok" for r in rows)
    c.say(f"{part['name']}: {len(rows)} records of {part['cells']} cells, {ok} ok, "
          f"{sum(r.get('status') == 'skipped' for r in rows)} skipped, {sum(r.get('status') == 'failed' for r in rows)} failed"
          + ("" if len(rows) >= part["cells"] else f"; {part['cells'] - len(rows)} not run (continue with --resume)"))


def complete(c: Check, part: dict) -> bool:
    """Every cell of the part recorded, its latest record ok or skipped (a resumed sweep reruns failures)."""
    latest = {r.get("cell_id"): r.get("status") for r in records_of(c.work / part["name"])}
    return len(latest) >= part["cells"] and all(s in ("ok", "skipped") for s in latest.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, small")
    parser.add_argument("--resume", action="store_true", help="continue each part from WORK's records")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds the whole check may take (default 460 on a GPU, 3600 dry)")
    parser.add_argument("--parts", default=None, help="comma list of parts to run (default: all, in order)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="where the results go (default: $OUT)")
    parser.add_argument("--work", default=None, help="the sweeps' folders (default: $TMPDIR/bench-gpu-check)")
    args = parser.parse_args(argv)
    out = Path(args.out or ROOT / "runs" / ("gpu-check-dry-run" if args.dry_run else "gpu-check")).resolve()
    work = Path(args.work or Path(os.environ.get("TMPDIR", "/tmp")) / "bench-gpu-check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    c = Check(out, work, args.deadline or (3600 if args.dry_run else 460), args.dry_run)
    c.say(("dry run on the CPU" if args.dry_run else "GPU check") + f", deadline {c.left():.0f} s"
          + (", resuming" if args.resume else ""))

    if not check_environment(c):
        c.say("stopped: the environment above cannot run the check")
        return 3
    c.say("environment written (env.txt)")
    wanted = args.parts.split(",") if args.parts else None
    not_run = []
    for part in parts(args.dry_run):
        name = part["name"]
        if wanted and name not in wanted and name != "smoke":
            continue
        if (name == "smoke" and args.resume) or complete(c, part):
            continue
        budget = c.left() - (0 if name == "smoke" else REPORT_S)
        if budget < part["least_s"]:
            not_run.append(name)
            continue
        rc = run_part(c, part, budget)
        c.say(f"{name}: bench run exit {rc}")
        if name == "smoke":
            rows = records_of(work / name)
            cell_lines(c, part)
            if not rows or rows[0].get("status") != "ok":
                tail = (work / "smoke.log").read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
                for line in tail:
                    c.say(f"  | {line}")
                c.say("stopped: the smoke cell did not train; nothing else was run")
                return 4
            continue
        try:
            report_and_pack(c, part)
        except Exception as exc:  # noqa: BLE001 - one part's packing must not cost the others
            c.say(f"{name}: could not pack its folder: {type(exc).__name__}: {exc}")
        cell_lines(c, part)
        if rc not in (0, 1, 124):  # 2: refused before any work (its log says why)
            for line in (work / f"{name}.log").read_text(encoding="utf-8", errors="replace").splitlines()[-5:]:
                c.say(f"  | {line}")
    if not_run:
        c.say("not run for lack of time: " + ", ".join(not_run) + " (continue with: benchmarks/gpu/run.sh --resume)")
    c.say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
