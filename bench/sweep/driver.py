"""The sweep: expand loops x devices x precisions (x repeats) into cells, run each cell in a fresh
process with a timeout, append its record as it ends, and resume from what is already recorded.

A cell's process is ``bench/sweep/launch.py``'s (launch, temporary folder, the failure it ends in); its
log, the relay of its output and the kill of its process tree ``bench/sweep/celllog.py``'s; the watch on
its memory ``bench/sweep/memwatch.py``'s."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from loops import REFERENCE_LOOP
from bench.sweep.celllog import LOG_DIR, CellLog, kill_tree  # noqa: F401  (named here too: the sweep's parts)
from bench.config import Cell, ConfigError
from bench.sweep.launch import launch_argv, remove_stale_cell_dirs, run_isolated, single_process_devices  # noqa: F401
from bench.sweep.memwatch import default_memory_limit_bytes
from bench.records.vocabulary import HANDED
from bench.records import RESULTS_FILE, Record, append_record, read_records
from bench.records.portable import cell_key


def refuse_nproc(devices, nproc: int) -> None:
    """More processes per node than the device can give each one: an error before anything runs."""
    from bench.precision import too_many_processes

    for d in devices:
        why = too_many_processes(d, nproc)
        if why:
            raise ConfigError(f"--nproc {nproc}: {why}")


def refuse_explicit(devices, precisions, devices_explicit: bool, precisions_explicit: bool, skip_reason,
                    nproc: int = 1) -> None:
    """Asked for by name but impossible here: an error before anything runs.  (Impossible only
    through ``all``: a skipped record, see ``run_sweep``.)"""
    from bench.precision import device_unavailable

    refuse_nproc(devices, nproc)
    if devices_explicit:
        for d in devices:
            why = device_unavailable(d)
            if why:
                raise ConfigError(f"--device {d}: {why}")
    if devices_explicit and precisions_explicit:
        for d in devices:
            for p in precisions:
                why = skip_reason(Cell(loop=REFERENCE_LOOP, device=d, precision=p))
                if why:
                    raise ConfigError(f"--device {d} --precision {p}: {why}")


def completed_ids(out_dir: Path) -> set[str]:
    """Cells already ``ok`` or ``skipped`` in OUT, by ``cell_key`` (a failed cell is run again on resume)."""
    path = out_dir / RESULTS_FILE
    if not path.exists():
        return set()
    return {r.cell_key for r in read_records(path, allow_empty=True) if r.status in ("ok", "skipped")}


def _cell_line(record: Record, seconds: float, ran_s: list, left: int) -> str:
    """``ok 19.5 samples/s, 41 s; ETA 3 min`` (ETA: the mean time of the cells run so far, times those left)."""
    if record.status != "skipped":
        ran_s.append(seconds)
    line = record.status
    if record.samples_per_s:
        line += f" {record.samples_per_s:.1f} samples/s"
    line += f", {seconds:.0f} s" if record.status != "skipped" else ""
    if record.reason:
        line += f" ({record.reason})"
    if left and ran_s:
        eta = sum(ran_s) / len(ran_s) * left
        line += f"; ETA {eta / 60:.0f} min" if eta >= 90 else f"; ETA {eta:.0f} s"
    return line


def append_or_record_failure(out_dir: Path, record: Record) -> None:
    """Append the cell's record; on a full disk, the cell recorded as failed in a short record if
    that still fits, and the sweep stopped in one line (``DiskFull``): resume once space is back."""
    from bench.safeio import DiskFull

    try:
        append_record(out_dir, record)
    except DiskFull as exc:
        short = Record(loop=record.loop, device=record.device, precision=record.precision, status="failed",
                       reason=f"its record did not fit on the disk: {exc.what}", cell_id=record.cell_id,
                       repeat=record.repeat, started_at=record.started_at, finished_at=record.finished_at,
                       config=record.config, command=record.command,
                       failure={"kind": "disk-full", "message": str(exc), "last_lines": []})
        try:
            append_record(out_dir, short)
            said = "the cell is recorded as failed"
        except DiskFull:
            said = "the cell could not be recorded"
        raise DiskFull(f"{exc.what}: {said}, every earlier record is whole",
                       f"free some space and continue with --resume {out_dir}") from None


def peak_to_hand(record: Record) -> tuple[float, str] | None:
    """The peak a cell measured, to hand to the sweep's later cells of its device and precision, with
    where it came from; None when it measured none (or was handed one itself)."""
    source = record.device_peak_source.split(", per device")[0]
    if record.status != "ok" or not record.device_peak_tflops or not source.startswith("measured") \
            or HANDED in source:
        return None  # a datasheet figure costs nothing to look up again
    return record.device_peak_tflops, f"{source}{HANDED}{record.cell_id}, measured once per sweep"




def training_share_line(records: list[Record], wall_s: float) -> str:
    """The sweep's last line: how much of its wall clock was timed training steps."""
    timed = sum(r.timed_s or 0.0 for r in records)
    share = timed / wall_s if wall_s > 0 else 0.0
    return f"timed steps {timed:.0f} s of {wall_s:.0f} s ({share:.0%})"


def _prepare(cells: list[Cell], out_dir: Path, write: bool, isolate: bool, memory_limit: int | None) -> int:
    """Before the first cell: stale cell folders gone, OUT made, the memory limit (bytes) decided, and
    for cells in this process the environment a --parity cell needs."""
    remove_stale_cell_dirs()
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
    if not isolate:
        # Cells in this process share its libraries, which read some settings once (cuBLAS its
        # workspace): what a --parity cell needs is set before the first cell uses the device.
        from bench.cell.main import deterministic_env_for

        for key, value in deterministic_env_for(cells).items():
            os.environ.setdefault(key, value)
    return default_memory_limit_bytes() if memory_limit is None else memory_limit


def run_sweep(cells: list[Cell], out_dir: Path, cell_timeout: float | None = None, resume: bool = False,
              progress: bool = True, command: str = "", isolate: bool = True,
              rendezvous: dict | None = None, write: bool = True, memory_limit: int | None = None,
              device_choice: str = "", after_record: Callable[[Record], str] | None = None,
              executor: str = "sequential", ray_address: str | None = None,
              cpus_per_cell: int | None = None, cells_at_once: int = 2) -> list[Record]:
    """Run every cell not already recorded; append each record as it ends.  Returns the records
    made by this call.  ``write=False``: a node other than 0, whose ranks train and record nothing.
    ``memory_limit``: bytes a cell's process tree may hold (default: ``DEFAULT_MEMORY_SHARE`` of
    the machine's memory).  ``device_choice``: what ``--device auto`` chose, put on each record;
    ``after_record(record)``: called once it is appended, between cells (the trackers)."""
    from bench.cell.main import run_cell, skipped_record

    memory_limit = _prepare(cells, out_dir, write, isolate, memory_limit)
    done = completed_ids(out_dir) if resume else set()
    if executor == "ray":
        return _sweep_with_ray(cells, out_dir, done, cell_timeout, command, memory_limit, device_choice,
                               after_record, ray_address, cpus_per_cell, cells_at_once)
    made, ran_s = [], []  # the records made; seconds each cell run by this sweep took, for the ETA
    # MFU's peak per (device, precision): measured by the first cell that runs there, handed to the rest.
    peaks: dict[tuple[str, str], tuple[float, str]] = {}
    for i, cell in enumerate(cells, 1):
        head = f"[{i}/{len(cells)}] {cell.label}"
        if cell_key(cell.to_dict()) in done:
            print(f"{head}: already recorded in {out_dir / RESULTS_FILE}, not run again", file=sys.stderr)
            continue
        record = skipped_record(cell, command)  # decided here, without starting a process
        if record is not None and not write:
            continue
        t0 = time.monotonic()
        if record is None and (isolate or cell.world_size > 1):
            print(f"{head}: running", file=sys.stderr)
            record = run_isolated(cell, cell_timeout, progress, command, rendezvous=rendezvous,
                                  log_path=out_dir / LOG_DIR / f"{cell.cell_id}.log" if write else None,
                                  memory_limit=memory_limit, peak=peaks.get((cell.device, cell.precision)))
            if record is None:
                print(f"{head}: done on this node; node 0 records it", file=sys.stderr)
                continue
        elif record is None:
            record = run_cell(cell, progress=progress, command=command, peak=peaks.get((cell.device, cell.precision)))
        if (cell.device, cell.precision) not in peaks and peak_to_hand(record):
            peaks[(cell.device, cell.precision)] = peak_to_hand(record)
        record.device_choice = device_choice
        if write:
            append_or_record_failure(out_dir, record)
        made.append(record)
        line = _cell_line(record, time.monotonic() - t0, ran_s, len(cells) - i)
        line += after_record(record) if after_record is not None and write else ""
        log = out_dir / LOG_DIR / f"{cell.cell_id}.log"
        print(f"{head}: {line}" + (f"; its output: {log}" if record.status == "failed" and log.exists() else ""),
              file=sys.stderr)
        _stop_on_full_disk(record, head, out_dir)
    return made


def _stop_on_full_disk(record: Record, head: str, out_dir: Path) -> None:
    """A cell that failed for a full disk (errno 28): every cell after it would train to its end and
    fail the same way, so the sweep stops here, its records whole, naming where the space ran out."""
    import tempfile

    from bench.config import ConfigError
    from bench.safeio import says_disk_full

    message = getattr(record.failure, "message", "") if record.failure else ""
    if record.status == "failed" and says_disk_full(f"{record.reason} {message}"):
        raise ConfigError(f"{head}: the disk is full ({record.reason}); the sweep stops here with every record "
                          f"whole: free space in {tempfile.gettempdir()} (the cells' temporary folder) or {out_dir}, "
                          f"then continue with --resume {out_dir}")


def _sweep_with_ray(cells, out_dir: Path, done: set, cell_timeout, command: str, memory_limit,
                    device_choice: str, after_record, ray_address, cpus_per_cell, cells_at_once) -> list[Record]:
    """The sweep with its cells as Ray tasks: this process alone appends each record as its task
    ends (whole lines, as the sequential sweep), so a driver killed mid-sweep loses only the cells
    in flight and ``--resume`` runs those again."""
    from bench.cell.main import skipped_record
    from bench.sweep.executors import run_with_ray

    made: list[Record] = []
    to_run = []
    for i, cell in enumerate(cells, 1):
        head = f"[{i}/{len(cells)}] {cell.label}"
        if cell_key(cell.to_dict()) in done:
            print(f"{head}: already recorded in {out_dir / RESULTS_FILE}, not run again", file=sys.stderr)
            continue
        record = skipped_record(cell, command)
        if record is not None:
            record.device_choice = device_choice
            append_or_record_failure(out_dir, record)
            made.append(record)
            print(f"{head}: {record.status} ({record.reason})", file=sys.stderr)
        else:
            to_run.append(cell)
    print(f"{len(to_run)} cells as Ray tasks, up to {cells_at_once} at once", file=sys.stderr)
    t0 = time.monotonic()
    for n, record in enumerate(run_with_ray(to_run, timeout_s=cell_timeout, command=command,
                                            log_dir=out_dir / LOG_DIR, memory_limit=memory_limit,
                                            address=ray_address, cpus_per_cell=cpus_per_cell,
                                            cells_at_once=cells_at_once), 1):
        record.device_choice = device_choice
        append_or_record_failure(out_dir, record)
        made.append(record)
        line = f"{record.status}, {time.monotonic() - t0:.0f} s into the sweep"
        if record.reason:
            line += f" ({record.reason})"
        line += after_record(record) if after_record is not None else ""
        print(f"[{n}/{len(to_run)}] {record.loop} {record.device} {record.precision}: {line}", file=sys.stderr)
        _stop_on_full_disk(record, f"[{n}/{len(to_run)}]", out_dir)
    return made
