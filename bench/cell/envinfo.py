"""The environment a record was made in: versions, device and CPU names, git sha."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from pathlib import Path


@functools.lru_cache(maxsize=None)
def git_sha() -> str | None:
    """The harness's commit (``-dirty``: with uncommitted changes to tracked files) when this process
    first asked: a cell asks as it starts (``bench.cell.main.run_cell``), so a commit made while it trains
    is not credited with the code it imported."""
    return _read_git_sha()


# A copy of the tree sent elsewhere (to a machine with no network, say) may carry no .git, or a stale
# one: the commit it was made from is named in this file at the tree's root while it runs there
# (benchmarks/gpu/run.sh writes it from what prepare.sh read here, and removes it at the end).
COMMIT_FILE = ".bench-commit"


def _read_git_sha() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        text = (root / COMMIT_FILE).read_text(encoding="utf-8").strip()
        if text and len(text) <= 64 and all(c.isalnum() or c == "-" for c in text):
            return text
    except (OSError, UnicodeDecodeError):
        pass
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _extra_versions() -> dict:
    """Versions of the packages the registered loops need beyond the core (lightning, ...)."""
    from importlib import metadata

    from loops import LOOPS

    out = {}
    for package in sorted({needs for _, needs in LOOPS.values() if needs}):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _version(package: str) -> str | None:
    """A package's version without importing it (a cell that does not use accelerate does not pay
    for its import to name its version)."""
    from importlib import metadata

    module = sys.modules.get(package)
    if module is not None and getattr(module, "__version__", None):
        return module.__version__
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str) -> dict:
    import torch
    import transformers

    from bench.precision import cpu_features

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": _version("accelerate"),
        "datasets": _version("datasets"),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "git_sha": git_sha(),
        "argv": sys.argv,
        **cpu_features(),
        **_extra_versions(),
    }
    from bench.devices import device as device_kind

    env.update(device_kind(device).environment())
    return env


def describe() -> list[tuple[str, str]]:
    """``bench env``: what a bug report or a figure needs said about this machine, like
    ``transformers env``: versions, CPU model and the flags that decide bf16 speed, cores, memory,
    GPUs, the load right now, and the regression class the benchmarks are gated in."""
    import os
    from importlib import metadata

    import psutil
    import torch

    from bench import __version__
    from bench.cell.load import busy_now
    from bench.precision import cpu_features
    from bench.regress import machine_class

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = cpu_features()
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if _has_flag(f)]
    rows = [("bench", f"{__version__} (git {git_sha() or 'unknown'})"), ("python", platform.python_version()),
            ("platform", platform.platform())]
    rows += [(p, version(p)) for p in _PACKAGES]
    rows += [("CPU", f"{cpu['cpu_name'] or '?'}, family/model {cpu['cpu_family_model']}"),
             ("CPU flags (bf16 speed)", ", ".join(flags) or "none of avx2/avx512f/avx512_bf16/amx"),
             ("torch CPU capability", torch.backends.cpu.get_cpu_capability()),
             ("cores", f"{psutil.cpu_count(logical=False)} physical, {psutil.cpu_count()} logical, "
                       f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable; "
                       f"torch threads {torch.get_num_threads()}"),
             ("memory", f"{psutil.virtual_memory().total / 2**30:.1f} GiB, {psutil.virtual_memory().available / 2**30:.1f} GiB free")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            rows.append((f"GPU {i}", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability "
                                     f"{p.major}.{p.minor}, CUDA {torch.version.cuda}"))
    else:
        rows.append(("GPU", "none visible to torch"))
    load1, load5, _ = os.getloadavg()
    busy = busy_now()
    rows += [("load", f"1-min {load1:.2f}, 5-min {load5:.2f}; " + (busy or "quiet now (bench.records.vocabulary.BUSY_RULE)")),
             ("regression class", machine_class())]
    return rows


def _has_flag(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and flag in line.split(":", 1)[1].split() for line in f)
    except OSError:
        return False


# Environment variables that change what a run measures or trains: devices and threads, the HF and
# Accelerate libraries' own switches, torch's allocator and determinism settings, bench's data.
RESULT_ENV_PREFIXES = ("HF_", "ACCELERATE_", "TRANSFORMERS_", "TORCH_", "PYTORCH_", "NCCL_", "CUBLAS_", "CUDA_",
                       "BENCH_")
RESULT_ENV = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "OPENBLAS_CORETYPE", "TOKENIZERS_PARALLELISM", "KMP_AFFINITY", "LD_PRELOAD")


def result_environment() -> dict[str, str]:
    """The variables of ``RESULT_ENV`` and ``RESULT_ENV_PREFIXES`` set in this process, by name."""
    import os

    return {k: v for k, v in sorted(os.environ.items())
            if k in RESULT_ENV or k.startswith(RESULT_ENV_PREFIXES)}


def describe_json() -> dict:
    """``bench env --json``: torch.utils.collect_env's fields (pip and conda package lists left out:
    the versions that matter are bench's own rows), NCCL's version where there is one, and bench's
    rows: CPU family/model and vector capability, the loops installed, the variables that change
    results."""
    import torch
    import torch.utils.collect_env as collect_env

    import loops
    from bench import __version__
    from bench.precision import cpu_features

    info = {k: v for k, v in collect_env.get_env_info()._asdict().items() if k not in ("pip_packages", "conda_packages")}
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None
    except (AttributeError, RuntimeError):
        nccl = None
    cpu = cpu_features()
    return {"bench": {"version": __version__, "git_sha": git_sha(), **cpu,
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      "cpu_flags": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if _has_flag(f)],
                      "loops_installed": loops.available(),
                      "loops_missing": {name: loops.missing_package(name) for name in loops.LOOPS
                                        if loops.missing_package(name)},
                      "versions": {p: v for p, v in describe() if p in _PACKAGES}},
            "collect_env": {**info, "nccl_version": nccl},
            "environment_variables": result_environment()}


_PACKAGES = ("torch", "transformers", "accelerate", "datasets", "evaluate", "lightning", "pandas", "tabulate",
             "pytest-benchmark")
