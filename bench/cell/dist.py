"""Facts about the process a cell runs in when torchrun launched it (RANK, WORLD_SIZE, ...), and
the two collectives the harness needs after training: gathering per-rank results on rank 0.

The harness does not invent its own distribution: torchrun starts the processes, each loop sets up
data parallelism its own way (the manual loop: ``init_process_group`` + DDP + DistributedSampler;
Accelerate and the Trainer: their own), and the harness only reads the process group they made.
"""

from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return world_size() > 1


def backend(device: str) -> str:
    """torch.distributed's backend for this device type (nccl on GPUs, gloo on the CPU)."""
    from bench.devices import device as device_kind

    return device_kind(device).ddp_backend


def torch_device(device: str) -> str:
    """The device string this rank uses: its own GPU under DDP."""
    from bench.devices import device as device_kind

    return device_kind(device).rank_device(local_rank(), is_distributed())


def ensure_process_group(device: str) -> None:
    """Join the process group torchrun set up, if the loop has not already."""
    import torch.distributed as dist

    if is_distributed() and not dist.is_initialized():
        dist.init_process_group(backend(device))


def gather_to_rank0(obj, device: str) -> list | None:
    """Every rank's ``obj`` on rank 0 (in rank order), None elsewhere; ``[obj]`` when alone."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    ensure_process_group(device)
    out = [None] * world_size() if rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(device: str) -> None:
    if is_distributed():
        import torch.distributed as dist

        ensure_process_group(device)
        dist.barrier()


def die_with_parent() -> None:
    """Be killed (SIGKILL) when the parent process dies, however it dies (Linux): a cell's process
    under the sweep, a DDP worker under torchrun.  No orphan keeps training after its sweep is gone."""
    import signal

    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
