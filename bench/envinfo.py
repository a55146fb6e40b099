"""The environment a record was made in: versions, device and CPU names, git sha."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path


def git_sha() -> str | None:
    root = Path(__file__).resolve().parent.parent
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


def environment(device: str) -> dict:
    import accelerate
    import datasets
    import torch
    import transformers

    from bench.precision import cpu_features

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
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
