"""Where a sweep's cells run: one after another in this process's children (``sequential``, the
default), or as Ray tasks, several at once, on this machine or a cluster (``ray``).

Either way a cell runs exactly as ``bench/sweep/launch.py`` runs it (its process tree, timeout, memory
watch, failure record); only the records come back, and the driver alone appends them, so a
results folder has one writer whatever the executor, and ``--resume`` reads it the same way."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from bench.config import Cell, ConfigError
from bench.records import Record


def add_flags(x) -> None:
    """``bench run``'s executor options (an argparse group)."""
    from bench.config.argtypes import positive_int

    x.add_argument("--executor", choices=("sequential", "ray"), default="sequential",
                   help="run cells one after another (default), or as Ray tasks, several at once")
    x.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="an existing Ray cluster (default: start Ray on this machine); with --executor ray")
    x.add_argument("--cpus-per-cell", type=positive_int, default=None,
                   help="CPUs each Ray task asks for (default: the machine's cores / cells at once)")
    x.add_argument("--cells-at-once", type=positive_int, default=2,
                   help="cells run at the same time on a Ray started here (default 2)")


EXECUTORS = ("sequential", "ray")


def import_ray():
    """Ray, or one line saying how to install it (the ``ray`` extra)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("--executor ray: needs the package 'ray', not installed here "
                          "(pip install -e \".[ray]\")") from None
    return ray


def default_cpus_per_cell(cells_at_once: int) -> int:
    """The machine's cores divided by the cells that can run at once (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, cells_at_once))


def start_ray(address: str | None, num_cpus: int | None = None):
    """Ray connected before any cell: an existing cluster at ``address``, or a local one started here
    (no dashboard: the machine may be offline).  An address that does not answer is one line."""
    ray = import_ray()
    if ray.is_initialized():  # connected already, as the address was checked before any work
        return ray
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--ray-address {address}: Ray does not answer there ({first})" if address
                          else f"--executor ray: Ray cannot start on this machine ({first})") from None
    return ray


def task_options(cell: Cell, cpus: int) -> dict:
    """What the Ray task of one cell asks for: its CPU share, and for a CUDA cell its ``--nproc`` GPUs
    as one task's ``num_gpus``.  A single task's resources always come from one node (the task runs
    in one worker process, which Ray places on a node that holds all of them; its GPU ids are that
    node's, set as ``CUDA_VISIBLE_DEVICES`` in the worker), so torchrun's ranks inside the task find
    their GPUs on their own node without a placement group.  No retry: a cell that fails is recorded
    as failed, as it is sequentially."""
    gpus = cell.nproc if cell.device.split(":")[0] == "cuda" else 0
    return {"num_cpus": cpus, "num_gpus": gpus, "max_retries": 0}


def where_it_ran() -> dict:
    """What the process that runs a cell had: its CPU cores, the GPUs it sees, its host."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {"cpu_cores": cores, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "hostname": socket.gethostname()}


def _run_in_task(cell_dict: dict, timeout_s, command: str, log_path: str | None, memory_limit) -> dict:
    """A Ray task's body: the cell as ``run_isolated`` runs it; a record (as a dict) comes back."""
    from bench.sweep.launch import run_isolated

    cell = Cell.from_dict(cell_dict)
    record = run_isolated(cell, timeout_s, False, command, log_path=Path(log_path) if log_path else None,
                          memory_limit=memory_limit)
    out = record.to_dict()
    out["_where"] = where_it_ran()
    try:
        import ray

        out["_where"]["ray_node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001  (outside Ray: no node id to say)
        pass
    return out


def run_with_ray(cells: list[Cell], *, timeout_s, command: str, log_dir: Path | None, memory_limit,
                 address: str | None, cpus_per_cell: int | None, cells_at_once: int) -> Iterator[Record]:
    """Each cell one Ray task asking for what it needs (its CPU share; ``--nproc`` GPUs on one
    node for a CUDA cell); records are yielded as tasks end, for the driver to append.  A task
    lost with its node, or Ray's own error, is a failed record with the reason.  Interrupted
    (Ctrl-C, the generator closed): the tasks in flight are cancelled, their process trees killed."""
    cpus = cpus_per_cell or default_cpus_per_cell(cells_at_once)
    ray = start_ray(address, None if address else cpus * cells_at_once)
    # At most this many at once on the Ray started here; on a cluster its resources decide (0: unknown).
    at_once = 0 if address else min(len(cells), cells_at_once)
    remote = ray.remote(_run_in_task)
    pending = {}
    try:
        for cell in cells:
            log = str(log_dir / f"{cell.cell_id}.log") if log_dir else None
            ref = remote.options(**task_options(cell, cpus)).remote(cell.to_dict(), timeout_s, command, log,
                                                                    memory_limit)
            pending[ref] = cell
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            cell = pending.pop(ref)
            yield _record_of(ray, ref, cell, command, at_once)
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001  (already gone)
                pass
        ray.shutdown()


def _record_of(ray, ref, cell: Cell, command: str, at_once: int) -> Record:
    """The task's record, or a failed record saying what Ray said (a lost node, a killed worker); either
    says it ran under Ray, beside up to ``at_once - 1`` others, and (where the task said) where.  Its
    node is the host's name: one machine whatever Ray session ran on it (a resumed sweep starts
    another, with another node id), and two Ray nodes on one host share its cores."""
    from bench.cell.main import record_base

    try:
        data = ray.get(ref)
    except Exception as exc:  # noqa: BLE001  (every Ray error becomes the cell's failure)
        base = record_base(cell, command)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Record(**{**base, "status": "failed", "reason": f"Ray: {type(exc).__name__}: {first}",
                         "failure": {"kind": "executor", "message": str(exc)[:2000], "last_lines": []},
                         "executor": "ray", "cells_at_once": at_once})
    where = data.pop("_where", {})
    record = Record.from_dict(data)
    record.executor = "ray"
    record.cells_at_once = at_once
    record.cpu_cores = ",".join(map(str, where.get("cpu_cores", [])))
    record.cuda_visible_devices = where.get("cuda_visible_devices", "")
    record.node = where.get("hostname") or where.get("ray_node_id", "")
    return record
