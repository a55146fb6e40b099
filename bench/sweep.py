"""The sweep: expand loops x devices x precisions (x repeats) into cells, run each cell in a fresh
process with a timeout, append its record as it ends, and resume from what is already recorded."""

from __future__ import annotations

import collections
import json
import re
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.config import Cell, ConfigError
from bench.records import RESULTS_FILE, Record, append_record, read_records

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TAIL_LINES = 15


def launch_argv(cell: Cell, python: str, module: str, rendezvous: dict | None = None) -> list[str]:
    """How a cell's process(es) start: ``python -m bench.cell`` alone, or under torchrun for DDP.
    torchrun is the launcher for all three loops: Accelerate and the Trainer read the same
    RANK / WORLD_SIZE / MASTER_ADDR environment that ``accelerate launch`` would set."""
    if cell.world_size == 1:
        return [python, "-m", module]
    argv = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(cell.nproc)]
    if cell.nnodes == 1 and not rendezvous:
        argv.append("--standalone")  # a free port on localhost
    else:
        rdzv = rendezvous or {}
        argv += ["--nnodes", str(cell.nnodes), "--node-rank", str(rdzv.get("node_rank", 0)),
                 "--master-addr", str(rdzv.get("master_addr", "127.0.0.1")),
                 "--master-port", str(rdzv.get("master_port", 29500))]
    return argv + ["-m", module]


def refuse_explicit(devices, precisions, devices_explicit: bool, precisions_explicit: bool, skip_reason,
                    nproc: int = 1) -> None:
    """Asked for by name but impossible here: an error before anything runs.  (Impossible only
    through ``all``: a skipped record, see ``run_sweep``.)"""
    from bench.precision import device_unavailable, too_many_processes

    for d in devices:
        why = too_many_processes(d, nproc)
        if why:
            raise ConfigError(f"--nproc {nproc}: {why}")

    if devices_explicit:
        for d in devices:
            why = device_unavailable(d)
            if why:
                raise ConfigError(f"--device {d}: {why}")
    if devices_explicit and precisions_explicit:
        for d in devices:
            for p in precisions:
                why = skip_reason(Cell(loop="manual", device=d, precision=p))
                if why:
                    raise ConfigError(f"--device {d} --precision {p}: {why}")


def completed_ids(out_dir: Path) -> set[str]:
    """Cells already ``ok`` or ``skipped`` in OUT (a failed cell is run again on resume)."""
    path = out_dir / RESULTS_FILE
    if not path.exists():
        return set()
    return {r["cell_id"] for r in read_records(path, allow_empty=True) if r.get("status") in ("ok", "skipped")}


CELL_DIR_PREFIX = "bench-cell-"
# torchrun's own lines (its banners, its elastic agent's log lines) say nothing about the cell.
_BANNER = re.compile(r"^\s*([*=\-]{5,}|[EWI]\d{4} .*torch/distributed/elastic|.*torch\.distributed\.elastic"
                     r"|Setting OMP_NUM_THREADS environment variable)")


def remove_stale_cell_dirs() -> list[str]:
    """Temporary folders of cells whose sweep died without cleaning up (SIGKILL): each is named
    after its sweep's PID, and removed once that process is gone."""
    import shutil

    import psutil

    removed = []
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{CELL_DIR_PREFIX}*-*"):
        pid = path.name[len(CELL_DIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


def single_process_devices(cell: Cell, env: dict) -> dict:
    """The environment that gives a one-process GPU cell one GPU: the first visible one.  On a host
    with several GPUs the Trainer would otherwise spread a single-process cell over all of them with
    ``nn.DataParallel`` (TrainingArguments sets ``n_gpu = device_count()`` when not distributed):
    a batch of 8 x n_gpu, a loss per replica, phase hooks firing from replica threads.  Under
    torchrun each rank takes its own GPU by LOCAL_RANK, and all visible GPUs are the node's."""
    if cell.world_size != 1 or cell.device.split(":")[0] != "cuda":
        return {}
    visible = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "0").split(",") if d.strip()]
    return {"CUDA_VISIBLE_DEVICES": visible[0]} if visible else {}  # "": none visible, left so


LOG_DIR = "logs"  # OUT/logs/<cell_id>.log: everything a cell's process printed


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


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a cell's process and every process under it.  torchrun starts its workers in
    sessions of their own, so killing the cell's process group would leave them training."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for p in [*family]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    psutil.wait_procs(family, timeout=10)


def rank_errors(folder: str) -> list[str]:
    """The error lines each failed rank of a DDP cell left (``bench.cell`` writes them), rank by rank."""
    lines = []
    for path in sorted(Path(folder).glob("error-rank*.txt")):
        rank = path.stem[len("error-rank"):]
        text = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        lines += [f"rank {rank}: {line}" for line in text]
    return lines


def _relay(stream, sink, tail: collections.deque, log=None, progress_prefix: str | None = None) -> None:
    """Keep everything the child says in its log (and its last lines for a failure's reason); pass
    to ``sink`` (a terminal) only the frames of the cell's own progress bar, which start with its
    label: third-party load reports, download and map bars and warnings stay in the log."""
    buf, shown = b"", False
    for chunk in iter(lambda: stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096), b""):
        if log is not None:
            log.write(chunk)
            log.flush()
        buf += chunk
        *pieces, buf = re.split(rb"[\r\n]", buf)
        for piece in pieces:
            text = piece.decode("utf-8", "replace")
            if text.strip():
                tail.append(text)
            if sink is not None and progress_prefix and text.startswith(progress_prefix):
                sink.write("\r" + text + "\033[K")
                sink.flush()
                shown = True
    if buf.strip():
        tail.append(buf.decode("utf-8", "replace"))
    if shown:  # the bar's last frame is not left under the next line
        sink.write("\r\033[K")
        sink.flush()


def run_isolated(cell: Cell, timeout_s: float | None, progress: bool, command: str,
                 python: str = sys.executable, module: str = "bench.cell", rendezvous: dict | None = None,
                 log_path: Path | None = None) -> Record | None:
    """Run one cell in its own process.  A crash, an out-of-memory kill or a timeout becomes a
    ``failed`` record carrying the child's last lines.  Everything the child prints goes to
    ``log_path`` (appended: a cell run again keeps its earlier attempts' log); only its progress
    bar reaches the terminal, and only when there is one (``progress``)."""
    from bench.cell import _now, record_base

    from bench.dist import die_with_parent

    base = record_base(cell, command)
    # Named after this sweep's PID so that a later sweep can clear it if this one is SIGKILLed; the
    # cell's own temporary files (the Trainer's output folder, ...) go inside it through TMPDIR.
    with tempfile.TemporaryDirectory(prefix=f"{CELL_DIR_PREFIX}{os.getpid()}-") as tmp:
        cell_path, result_path = os.path.join(tmp, "cell.json"), os.path.join(tmp, "record.json")
        with open(cell_path, "w", encoding="utf-8") as f:
            json.dump(cell.to_dict(), f)
        argv = launch_argv(cell, python, module, rendezvous) + [cell_path, result_path, "--command", command]
        if not progress:
            argv.append("--no-progress")
        if timeout_s:  # the cell stops early, and says why, once it cannot finish in time
            argv += ["--time-budget", f"{timeout_s:g}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        env["TMPDIR"] = tmp
        env.update(single_process_devices(cell, env))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=die_with_parent)
        tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        log = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab")
            log.write(f"=== {cell.label} repeat {cell.repeat}, {_now()}: {shlex.join(argv)}\n".encode())
        reader = threading.Thread(target=_relay, args=(proc.stdout, sys.stderr if progress else None, tail, log,
                                                       f"{cell.label}:"), daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            code = proc.wait()
            timed_out = True
        except BaseException:  # Ctrl-C, SIGTERM: take the child with us, record nothing for this cell
            kill_tree(proc)
            proc.wait()
            raise
        reader.join(timeout=5)
        if log is not None:
            log.close()
        if not timed_out and code == 0 and os.path.exists(result_path):
            with open(result_path, encoding="utf-8") as f:
                return Record.from_dict(json.load(f))
        if not timed_out and code == 0 and rendezvous and rendezvous.get("node_rank", 0) > 0:
            return None  # another node: global rank 0, on node 0, writes the record
        if timed_out:
            kind, reason = "timeout", f"timed out after {timeout_s:g} s (--cell-timeout)"
        elif code < 0:
            sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            kind = "killed"
            reason = f"the cell's process was killed by {sig}" + (" (out of memory?)" if sig == "SIGKILL" else "")
        else:
            kind, reason = "exit", f"the cell's process exited with code {code} without a record"
        last = list(tail)
        errors = rank_errors(tmp)  # a DDP rank's own error, not torchrun's banner
        said = [line for line in last if not _BANNER.match(line)]
        if errors:
            reason += f": {errors[-1][:300]}"
        elif said:
            reason += f": {said[-1][:300]}"
        return Record(status="failed", reason=reason, finished_at=_now(),
                      failure={"kind": kind, "message": reason, "last_lines": last, "rank_errors": errors}, **base)


def run_sweep(cells: list[Cell], out_dir: Path, cell_timeout: float | None = None, resume: bool = False,
              progress: bool = True, command: str = "", isolate: bool = True,
              rendezvous: dict | None = None, write: bool = True) -> list[Record]:
    """Run every cell not already recorded; append each record as it ends.  Returns the records
    made by this call.  ``write=False``: a node other than 0, whose ranks train and record nothing."""
    from bench.cell import run_cell, skipped_record

    remove_stale_cell_dirs()
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
    if not isolate:
        # Cells in this process share its libraries, which read some settings once (cuBLAS its
        # workspace): what a --parity cell needs is set before the first cell uses the device.
        from bench.cell import deterministic_env_for

        for key, value in deterministic_env_for(cells).items():
            os.environ.setdefault(key, value)
    done = completed_ids(out_dir) if resume else set()
    made = []
    ran_s: list[float] = []  # seconds each cell run by this sweep took, for the ETA
    for i, cell in enumerate(cells, 1):
        head = f"[{i}/{len(cells)}] {cell.label}"
        if cell.cell_id in done:
            print(f"{head}: already recorded in {out_dir / RESULTS_FILE}, not run again", file=sys.stderr)
            continue
        record = skipped_record(cell, command)  # decided here, without starting a process
        if record is not None and not write:
            continue
        t0 = time.monotonic()
        if record is None and (isolate or cell.world_size > 1):
            print(f"{head}: running", file=sys.stderr)
            record = run_isolated(cell, cell_timeout, progress, command, rendezvous=rendezvous,
                                  log_path=out_dir / LOG_DIR / f"{cell.cell_id}.log" if write else None)
            if record is None:
                print(f"{head}: done on this node; node 0 records it", file=sys.stderr)
                continue
        elif record is None:
            record = run_cell(cell, progress=progress, command=command)
        if write:
            append_record(out_dir, record)
        made.append(record)
        line = _cell_line(record, time.monotonic() - t0, ran_s, len(cells) - i)
        log = out_dir / LOG_DIR / f"{cell.cell_id}.log"
        if record.status == "failed" and log.exists():
            line += f"; its output: {log}"
        print(f"{head}: {line}", file=sys.stderr)
    return made
