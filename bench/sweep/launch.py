"""One cell in a process of its own: how it is launched (``python -m bench.cell.main``, or torchrun for
DDP), its temporary folder, and what becomes of it: its record, or a ``failed`` record saying why
(a crash, a timeout, a kill, out of memory) with the child's last lines."""

from __future__ import annotations

import collections
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.sweep.celllog import BANNER, TAIL_LINES, WORKER_SIGKILL, CellLog, kill_tree, rank_errors, relay
from bench.config import Cell
from bench.sweep.memwatch import MemoryWatch, gib
from bench.records import Record
from bench.cell.wallclock import process_start_time, utc_now

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CELL_DIR_PREFIX = "bench-cell-"


def launch_argv(cell: Cell, python: str, module: str, rendezvous: dict | None = None) -> list[str]:
    """How a cell's process(es) start: ``python -m bench.cell.main`` alone, or under torchrun for DDP.
    torchrun is the launcher for every loop: Accelerate and the Trainer read the same
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
        try:  # another user's folder is theirs to clear, whatever its name says
            st = path.lstat()
        except OSError:
            continue
        if st.st_uid != os.getuid() or path.is_symlink():
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
    name = cell.kind.visible_devices_env
    if cell.world_size != 1 or name is None:
        return {}
    visible = [d.strip() for d in env.get(name, "0").split(",") if d.strip()]
    return {name: visible[0]} if visible else {}  # "": none visible, left so


def run_isolated(cell: Cell, timeout_s: float | None, progress: bool, command: str,
                 python: str = sys.executable, module: str = "bench.cell.main", rendezvous: dict | None = None,
                 log_path: Path | None = None, memory_limit: int | None = None,
                 peak: tuple[float, str] | None = None) -> Record | None:
    """Run one cell in its own process.  A crash, an out-of-memory kill or a timeout becomes a
    ``failed`` record carrying the child's last lines.  Everything the child prints goes to
    ``log_path`` (appended: a cell run again keeps its earlier attempts' log); only its progress
    bar reaches the terminal, and only when there is one (``progress``).  ``memory_limit``: bytes of
    RSS the cell's process tree may hold before it is stopped and recorded out of memory."""
    from bench.cell.main import record_base

    base = record_base(cell, command)
    # Named after this sweep's PID so that a later sweep can clear it if this one is SIGKILLed; the
    # cell's own temporary files (the Trainer's output folder, ...) go inside it through TMPDIR.
    with tempfile.TemporaryDirectory(prefix=f"{CELL_DIR_PREFIX}{os.getpid()}-") as tmp:
        cell_path, result_path = os.path.join(tmp, "cell.json"), os.path.join(tmp, "record.json")
        with open(cell_path, "w", encoding="utf-8") as f:
            json.dump(cell.to_dict(), f)
        argv = launch_argv(cell, python, module, rendezvous) + [cell_path, result_path, "--command", command]
        argv += _cell_options(progress, timeout_s, peak)
        child = _Child(cell, argv, _child_env(cell, tmp), memory_limit, log_path, progress)
        code, timed_out = child.wait(timeout_s)
        child.finish()
        if child.watch.tripped:
            reason = (f"out of memory (peak {gib(child.watch.peak)}, limit {gib(child.watch.limit)}, "
                      "--cell-memory-limit): the cell was stopped")
            return _failed(base, "out-of-memory", reason, list(child.tail),
                           peak_rss_bytes=child.watch.peak, limit_bytes=child.watch.limit)
        if not timed_out and code == 0 and os.path.exists(result_path):
            return _its_record(cell, result_path, child)
        if not timed_out and code == 0 and rendezvous and rendezvous.get("node_rank", 0) > 0:
            return None  # another node: global rank 0, on node 0, writes the record
        return _failure(base, child, code, timed_out, timeout_s, tmp)


def _cell_options(progress: bool, timeout_s: float | None, peak: tuple[float, str] | None) -> list[str]:
    """``bench.cell.main``'s options beyond its two files and the command."""
    argv = [] if progress else ["--no-progress"]
    if timeout_s:  # the cell stops early, and says why, once it cannot finish in time
        argv += ["--time-budget", f"{timeout_s:g}"]
    if peak is not None:  # MFU's denominator, measured once for this sweep's device and precision
        argv += ["--peak-tflops", repr(peak[0]), "--peak-source", peak[1]]
    return argv


def _child_env(cell: Cell, tmp: str) -> dict:
    """The cell process's environment: this checkout first on its path, its temporary files in
    ``tmp``, one GPU for a one-process GPU cell."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["TMPDIR"] = tmp
    env.update(single_process_devices(cell, env))
    return env


class _Child:
    """A cell's process while it runs: its memory watch, its log, and the relay of what it says."""

    def __init__(self, cell: Cell, argv: list[str], env: dict, memory_limit: int | None,
                 log_path: Path | None, progress: bool):
        from bench.cell.dist import die_with_parent

        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=die_with_parent)
        self.created = process_start_time(self.proc.pid)  # the kernel's figure, the one the cell's own clock starts from
        self.tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        self.watch = MemoryWatch(self.proc, memory_limit)
        self.log = None
        if log_path is not None:
            try:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                self.log = CellLog(log_path)
            except BaseException:
                self._kill()
                raise
            self.log.write(f"=== {cell.label} repeat {cell.repeat}, {utc_now()}: {shlex.join(argv)}\n".encode())
        self.reader = threading.Thread(target=relay, args=(self.proc.stdout, sys.stderr if progress else None,
                                                           self.tail, self.log, f"{cell.label}:"), daemon=True)
        self.reader.start()
        self.exited = None

    def _kill(self) -> None:
        kill_tree(self.proc)
        self.proc.wait()
        self.watch.stop()

    def wait(self, timeout_s: float | None) -> tuple[int, bool]:
        """The process's exit code, and whether it ran past ``timeout_s`` (then it was killed)."""
        try:
            code = self.proc.wait(timeout=timeout_s)
            self.exited = time.time()  # where the exit is seen, before the watch and the relay wind down
            return code, False
        except subprocess.TimeoutExpired:
            kill_tree(self.proc)
            return self.proc.wait(), True
        except BaseException:  # Ctrl-C, SIGTERM: take the child with us, record nothing for this cell
            self._kill()
            if self.log is not None:
                self.log.close()
            raise

    def finish(self) -> None:
        """After the exit: the watch stopped, the relay drained, the log closed (a log that cannot be
        written or closed costs the log, never the record)."""
        self.watch.stop()
        self.exited = self.exited or time.time()
        self.reader.join(timeout=5)
        if self.log is not None:
            self.log.close()
            if self.log.problem():
                print(f"bench: warning: {self.log.problem()}", file=sys.stderr)


def _its_record(cell: Cell, result_path: str, child: _Child) -> Record:
    """The record the cell wrote, with what it cannot time itself: its own writing and the process's exit."""
    with open(result_path, encoding="utf-8") as f:
        record = Record.from_dict(json.load(f))
    if record.wall_s and record.process_wall_s is not None and child.created is not None and cell.world_size == 1:
        record.wall_s["after_record_s"] = round(max(0.0, child.exited - child.created - record.process_wall_s), 6)
    return record


def _failed(base: dict, kind: str, reason: str, last_lines: list[str], **failure) -> Record:
    return Record(status="failed", reason=reason, finished_at=utc_now(),
                  failure={"kind": kind, "message": reason, "last_lines": last_lines, **failure}, **base)


def _failure(base: dict, child: _Child, code: int, timed_out: bool, timeout_s: float | None, tmp: str) -> Record:
    """The ``failed`` record of a cell that left none: why its process ended, and its last words (a DDP
    rank's own error, not torchrun's banner)."""
    watch, tail = child.watch, child.tail
    if timed_out:
        kind, reason = "timeout", f"timed out after {timeout_s:g} s (--cell-timeout)"
    elif code < 0:
        sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        kind = "killed"
        # Only the evidence says out of memory (the kernel's OOM killer below); a SIGKILL without it
        # may be a user's kill -9, a scheduler's, or a container's limit: said as what it was.
        reason = f"the cell's process was killed by {sig}" + (
            " (not by the kernel's OOM killer: no out-of-memory kill was logged for it)" if sig == "SIGKILL" else "")
        if sig == "SIGKILL" and watch.kernel_oom():
            kind = "out-of-memory"
            reason = (f"out of memory (peak {gib(watch.peak)}, limit {gib(watch.limit or 0)}): killed by "
                      "the kernel's OOM killer")
    else:
        kind, reason = "exit", f"the cell's process exited with code {code} without a record"
        if any(WORKER_SIGKILL.search(line) for line in tail) and watch.kernel_oom():
            # torchrun exits 1 and says "Signal 9 received by PID ..." of a worker the kernel killed
            reason = (f"out of memory (peak {gib(watch.peak)}, limit {gib(watch.limit or 0)}): a worker was "
                      "killed by the kernel's OOM killer")
            return _failed(base, "out-of-memory", reason, list(tail), rank_errors=rank_errors(tmp))
    last = list(tail)
    errors = rank_errors(tmp)  # a DDP rank's own error, not torchrun's banner
    said = [line for line in last if not BANNER.match(line)]
    if errors:
        reason += f": {errors[-1][:300]}"
    elif said:
        reason += f": {said[-1][:300]}"
    return _failed(base, kind, reason, last, rank_errors=errors)

