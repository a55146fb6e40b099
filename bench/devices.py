"""Everything that differs between device types, in one table: how a step is timed and synced,
which memory counters exist, where the MFU peak comes from, the DDP backend, and which precisions
run.  The meter, the peak, the distributed helpers, the precision rules and the cell consult it;
adding a device type is one entry here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    """A device type: everything the harness does differently per device is a field of its entry
    (the methods below read the fields, never the name), so a new device is one entry in ``DEVICES``."""

    name: str
    torch_type: str  # the torch device type its cells run on ("cpu", "cuda", "mps")
    host: bool  # the host CPU itself: no copies to a device, the libraries' cpu=True / use_cpu=True
    async_copies: bool  # host-to-device copies can be non_blocking (what Lightning and Fabric do on it)
    ddp_backend: str  # torch.distributed backend for this device's processes
    event_timer: bool  # time steps with device events (no sync per step), else perf_counter
    memory_counters: bool  # torch.<device>.max_memory_allocated / reserved exist
    datasheet_peaks: bool  # MFU's peak from a datasheet table when the model is known, else measured
    gemm_size: int  # square GEMM that reaches the device's peak in about a second
    finite_check_every: int  # steps between nan/inf checks of the losses (each check reads the device)
    device_per_rank: bool  # under DDP each local rank takes its own device (cuda:LOCAL_RANK)
    deterministic_env: tuple = ()  # environment a --parity cell needs before the first kernel
    # The variable that pins a process to some of the devices (a single-process cell to one), if any.
    visible_devices_env: str | None = None
    # The machine-load GEMM probe (bench/cell/load.py): its size, products timed per sync, the window
    # whose best timing counts, and the untimed products before it (a GPU's clock ramps up from idle).
    # On a CPU: the best of as many 256^3 products (0.1-0.3 ms each on a core) as fit in 0.05 s,
    # 150-500 calls, enough for the best to settle well inside the 15% the busy rule judges by.
    probe_size: int = 256
    probe_products: int = 1
    probe_seconds: float = 0.05
    probe_warmup_s: float = 0.0

    # -- availability and precisions ------------------------------------------------------------
    def unavailable(self) -> str | None:
        """Why this device cannot be used here, or None."""
        import torch

        if self.torch_type == "cpu":
            return None
        if self.torch_type == "cuda":
            return None if torch.cuda.is_available() else "no CUDA device is available (torch.cuda.is_available() is False)"
        if self.torch_type == "mps":
            mps = getattr(torch.backends, "mps", None)
            return None if mps is not None and mps.is_available() else "no MPS device is available"
        return f"unknown torch device type {self.torch_type!r}"

    def precision_unsupported(self, precision: str) -> str | None:
        """Why this precision cannot run on this (available) device, or None: decided by what torch
        reports for this machine, not by a table of hopes."""
        import torch

        if precision == "fp32":
            return None
        if self.torch_type == "cuda":
            if precision == "fp16":
                return None
            major, minor = torch.cuda.get_device_capability()
            return None if major >= 8 else f"{precision} needs compute capability >= 8.0, this GPU has {major}.{minor}"
        if precision == "tf32":
            return "tf32 is cuda-only (a tensor-core matmul mode of NVIDIA GPUs)"
        if self.torch_type == "mps":
            if precision == "bf16" and not torch.backends.mps.is_macos_or_newer(14, 0):
                return "bf16 on MPS needs macOS 14 or newer"
            return None
        if not torch.amp.autocast_mode.is_autocast_available("cpu"):
            return f"{precision} on cpu: this torch build has no CPU autocast"
        if precision == "fp16":
            # torch itself has float16 autocast and a CPU GradScaler, but Accelerate accepts
            # mixed_precision="fp16" on the CPU and then trains in fp32 (no autocast, no scaler), and
            # Lightning switches it to bf16: loops would be something else under an fp16 label.
            return ("fp16 on cpu: torch can autocast to float16 here, but Accelerate (and the Trainer "
                    "through it) accepts fp16 on the CPU and silently trains fp32, so the loops cannot be compared")
        return None

    def too_many_processes(self, nproc: int) -> str | None:
        """Why ``nproc`` processes per node cannot each have a device of their own, or None."""
        import os

        import torch

        cores = os.cpu_count() or 1
        if self.host and nproc > cores:
            # Each gloo rank is a whole training process: past the cores they only contend, and each
            # holds its own model, data and workers (64 of them take a small machine out of memory).
            return f"more processes than this machine's {cores} CPU cores; give --nproc {cores} or fewer"
        if self.torch_type == "cuda" and nproc > 1 and torch.cuda.is_available() and nproc > torch.cuda.device_count():
            return f"one process per GPU, and this node has {torch.cuda.device_count()} GPU(s)"
        return None

    def rank_device(self, local_rank: int, distributed: bool) -> str:
        """The device string one rank uses."""
        return f"{self.torch_type}:{local_rank}" if self.device_per_rank and distributed else self.torch_type

    def set_current(self, local_rank: int) -> None:
        """Make this rank's device the current one, before anything else touches the device."""
        if self.device_per_rank and self.torch_type == "cuda":
            import torch

            if local_rank < torch.cuda.device_count():
                torch.cuda.set_device(local_rank)

    def environment(self) -> dict:
        """What a record says of the accelerator it ran on (nothing for the CPU: see cpu_features)."""
        import torch

        if self.torch_type != "cuda" or not torch.cuda.is_available():
            return {}
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return {"gpu_name": props.name, "gpu_count": torch.cuda.device_count(),
                "gpu_capability": f"{props.major}.{props.minor}", "gpu_memory_mib": props.total_memory // 2**20,
                "cuda": torch.version.cuda}

    # -- timing ---------------------------------------------------------------------------------
    def synchronize(self) -> None:
        if self.torch_type == "cuda":
            import torch

            torch.cuda.synchronize()

    def mark(self):
        """A point in time: a recorded event (read later, no sync now) or perf_counter."""
        if self.event_timer:
            import torch

            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def seconds_between(self, a, b) -> float:
        return a.elapsed_time(b) / 1000.0 if self.event_timer else b - a

    # -- memory ---------------------------------------------------------------------------------
    def reset_peak_memory(self) -> None:
        if self.memory_counters:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def init_context(self) -> None:
        """Make the device's context now, so that its cost has a name of its own instead of landing
        in whatever touches the device first: on CUDA the driver's context (lazy until the first
        allocation) and cuBLAS's handle (made at the first product)."""
        if self.torch_type == "cuda":
            import torch

            x = torch.ones(8, 8, device=torch.device("cuda", torch.cuda.current_device()))
            x @ x
            torch.cuda.synchronize()

    def release_cached_memory(self) -> None:
        """Give the caching allocator's unused blocks back to the device."""
        if self.memory_counters:
            import torch

            torch.cuda.empty_cache()

    def peak_memory_mib(self) -> dict:
        if not self.memory_counters:
            return {}
        import torch

        return {"peak_alloc_mib": torch.cuda.max_memory_allocated() / 2**20,
                "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20}


DEVICES = {
    # Reading a CPU loss costs nothing: check every step.  Each GPU check is a sync: every 25 steps.
    "cpu": Device("cpu", torch_type="cpu", host=True, async_copies=False, ddp_backend="gloo", event_timer=False, memory_counters=False, datasheet_peaks=False,
                  gemm_size=1024, finite_check_every=1, device_per_rank=False),
    # cuBLAS is deterministic only with a fixed workspace, set before its first handle is made.
    "cuda": Device("cuda", torch_type="cuda", host=False, async_copies=True, ddp_backend="nccl", event_timer=True, memory_counters=True, datasheet_peaks=True,
                   gemm_size=8192, finite_check_every=25, device_per_rank=True,
                   deterministic_env=(("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),),
                   visible_devices_env="CUDA_VISIBLE_DEVICES",
                   # ~2.3-2.7 ms a 4096^3 IEEE fp32 product on an H100/H200: 10 per sync time the device, not
                   # launches; 0.25 s of them first brings the clock up from idle, then the best of ~10
                   # timings over 0.25 s.
                   probe_size=4096, probe_products=10, probe_seconds=0.25, probe_warmup_s=0.25),
    "mps": Device("mps", torch_type="mps", host=False, async_copies=False, ddp_backend="gloo", event_timer=False, memory_counters=False, datasheet_peaks=False,
                  gemm_size=4096, finite_check_every=25, device_per_rank=False),
}


def device(name: str) -> Device:
    """The table's entry for a device type ('cuda:1' is 'cuda')."""
    return DEVICES[name.split(":")[0]]


# ``--device auto`` (the default): the first device type of this order the machine can use, as the
# Trainer, Accelerate and lm-eval pick theirs.
AUTO_ORDER = ("cuda", "mps", "cpu")


def auto_device() -> tuple[str, str]:
    """The device ``--device auto`` picks here, and the sentence each record keeps about it (which
    device, and why each one before it in ``AUTO_ORDER`` was passed over)."""
    passed = []
    for name in AUTO_ORDER:
        why = DEVICES[name].unavailable()
        if why is None:
            return name, f"--device auto chose {name}" + (f" ({'; '.join(passed)})" if passed else "")
        passed.append(why)
    raise AssertionError("the CPU is always available")
