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
                why = skip_reason(Cell(loop="manual", device=d, precision=p))
                if why:
                    raise ConfigError(f"--device {d} --precision {p}: {why}")


def completed_ids(out_dir: Path) -> set[str]:
    """Cells already ``ok`` or ``skipped`` in OUT (a failed cell is run again on resume)."""
    path = out_dir / RESULTS_FILE
    if not path.exists():
        return set()
    return {r.cell_id for r in read_records(path, allow_empty=True) if r.status in ("ok", "skipped")}


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
        try:  # another user's folder is theirs to clear, whatever its name says
            st = path.lstat()
        except OSError:
            continue
        if st.st_uid != os.getuid() or path.is_symlink():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


_WORKER_SIGKILL = re.compile(r"Signal 9 |SIGKILL")


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


class CellLog:
    """A cell's log, opened without following a link and appended to; a write or close that fails
    (a full disk) stops the log and is said once, never the cell or its record."""

    def __init__(self, path: Path):
        from bench.safeio import open_nofollow

        self.path, self.error = path, None
        self._fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def write(self, data: bytes) -> None:
        if self._fd is None or self.error:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            self.error = exc

    def flush(self) -> None:  # every write goes straight to the file
        pass

    def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
        except OSError as exc:
            self.error = self.error or exc

    def problem(self) -> str | None:
        """One line saying the log is incomplete, or None."""
        if self.error is None:
            return None
        from bench.safeio import NO_SPACE, free_space

        why = (f"no space left on the device ({free_space(self.path.parent)})" if self.error.errno in NO_SPACE
               else self.error.strerror or str(self.error))
        return f"{self.path}: the cell's log is incomplete: {why}"


# A cell's memory: its process tree's RSS, sampled this often, may not pass this share of the
# machine's memory (or of this cgroup's limit) unless --cell-memory-limit says otherwise.
MEMORY_POLL_S = 0.2
DEFAULT_MEMORY_SHARE = 0.75


def machine_memory_bytes() -> int:
    """The memory this sweep's cells can have: the machine's, or its cgroup's limit if lower."""
    import psutil

    total = psutil.virtual_memory().total
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            total = min(total, int(text))
    except OSError:
        pass
    return total


def default_memory_limit_bytes() -> int:
    return int(machine_memory_bytes() * DEFAULT_MEMORY_SHARE)


def _oom_kills() -> int | None:
    """The cgroup's count of kernel OOM kills so far (cgroup v2), or None where there is none."""
    try:
        for line in Path("/sys/fs/cgroup/memory.events").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class MemoryWatch:
    """Samples a cell's process tree RSS; past ``limit`` it kills the tree (``tripped``)."""

    def __init__(self, proc: subprocess.Popen, limit: int | None):
        import psutil

        self.proc, self.limit = proc, limit
        self.peak, self.tripped, self.low_memory = 0, False, False
        self.oom_kills_before = _oom_kills()
        self._stop = threading.Event()
        self._total = psutil.virtual_memory().total
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        rss = 0
        for p in family:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        return rss

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(MEMORY_POLL_S):
            rss = self._rss()
            self.peak = max(self.peak, rss)
            if psutil.virtual_memory().available < 0.05 * self._total:
                self.low_memory = True  # evidence, should the kernel kill it
            if self.limit and rss > self.limit:
                self.tripped = True
                kill_tree(self.proc)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def kernel_oom(self) -> bool:
        """Evidence that a SIGKILL came from the kernel's OOM killer."""
        after = _oom_kills()
        return self.low_memory or (after is not None and self.oom_kills_before is not None
                                   and after > self.oom_kills_before)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


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
                 log_path: Path | None = None, memory_limit: int | None = None,
                 peak: tuple[float, str] | None = None) -> Record | None:
    """Run one cell in its own process.  A crash, an out-of-memory kill or a timeout becomes a
    ``failed`` record carrying the child's last lines.  Everything the child prints goes to
    ``log_path`` (appended: a cell run again keeps its earlier attempts' log); only its progress
    bar reaches the terminal, and only when there is one (``progress``).  ``memory_limit``: bytes of
    RSS the cell's process tree may hold before it is stopped and recorded out of memory."""
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
        if peak is not None:  # MFU's denominator, measured once for this sweep's device and precision
            argv += ["--peak-tflops", repr(peak[0]), "--peak-source", peak[1]]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        env["TMPDIR"] = tmp
        env.update(single_process_devices(cell, env))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=die_with_parent)
        created = _create_time(proc.pid)
        tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        watch = MemoryWatch(proc, memory_limit)
        log = None
        if log_path is not None:
            try:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log = CellLog(log_path)
            except BaseException:
                kill_tree(proc)
                proc.wait()
                watch.stop()
                raise
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
            watch.stop()
            if log is not None:
                log.close()
            raise
        watch.stop()
        exited = time.time()
        reader.join(timeout=5)
        if log is not None:  # a log that cannot be written or closed costs the log, never the record
            log.close()
            if log.problem():
                print(f"bench: warning: {log.problem()}", file=sys.stderr)
        if watch.tripped:
            kind = "out-of-memory"
            reason = (f"out of memory (peak {_gib(watch.peak)}, limit {_gib(watch.limit)}, --cell-memory-limit): "
                      "the cell was stopped")
            return Record(status="failed", reason=reason, finished_at=_now(),
                          failure={"kind": kind, "message": reason, "last_lines": list(tail),
                                   "peak_rss_bytes": watch.peak, "limit_bytes": watch.limit}, **base)
        if not timed_out and code == 0 and os.path.exists(result_path):
            with open(result_path, encoding="utf-8") as f:
                record = Record.from_dict(json.load(f))
            if record.wall_s and record.process_wall_s is not None and created is not None and cell.world_size == 1:
                # What the record cannot time itself: its own writing and the process's exit.
                record.wall_s["after_record_s"] = round(max(0.0, exited - created - record.process_wall_s), 6)
            return record
        if not timed_out and code == 0 and rendezvous and rendezvous.get("node_rank", 0) > 0:
            return None  # another node: global rank 0, on node 0, writes the record
        if timed_out:
            kind, reason = "timeout", f"timed out after {timeout_s:g} s (--cell-timeout)"
        elif code < 0:
            sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            kind = "killed"
            reason = f"the cell's process was killed by {sig}" + (" (out of memory?)" if sig == "SIGKILL" else "")
            if sig == "SIGKILL" and watch.kernel_oom():
                kind = "out-of-memory"
                reason = (f"out of memory (peak {_gib(watch.peak)}, limit {_gib(watch.limit or 0)}): killed by "
                          "the kernel's OOM killer")
        else:
            kind, reason = "exit", f"the cell's process exited with code {code} without a record"
            if any(_WORKER_SIGKILL.search(line) for line in tail) and watch.kernel_oom():
                # torchrun exits 1 and says "Signal 9 received by PID ..." of a worker the kernel killed
                kind = "out-of-memory"
                reason = (f"out of memory (peak {_gib(watch.peak)}, limit {_gib(watch.limit or 0)}): a worker was "
                          "killed by the kernel's OOM killer")
                return Record(status="failed", reason=reason, finished_at=_now(),
                              failure={"kind": kind, "message": reason, "last_lines": list(tail),
                                       "rank_errors": rank_errors(tmp)}, **base)
        last = list(tail)
        errors = rank_errors(tmp)  # a DDP rank's own error, not torchrun's banner
        said = [line for line in last if not _BANNER.match(line)]
        if errors:
            reason += f": {errors[-1][:300]}"
        elif said:
            reason += f": {said[-1][:300]}"
        return Record(status="failed", reason=reason, finished_at=_now(),
                      failure={"kind": kind, "message": reason, "last_lines": last, "rank_errors": errors}, **base)


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


def _create_time(pid: int) -> float | None:
    """Epoch seconds a process began (the kernel's figure, the one the cell's own clock starts from)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def peak_to_hand(record: Record) -> tuple[float, str] | None:
    """The peak a cell measured, to hand to the sweep's later cells of its device and precision, with
    where it came from; None when it measured none (or was handed one itself)."""
    source = record.device_peak_source.split(", per device")[0]
    if record.status != "ok" or not record.device_peak_tflops or not source.startswith("measured") \
            or HANDED in source:
        return None  # a datasheet figure costs nothing to look up again
    return record.device_peak_tflops, f"{source}{HANDED}{record.cell_id}, measured once per sweep"


HANDED = ", handed from cell "


def training_share_line(records: list[Record], wall_s: float) -> str:
    """The sweep's last line: how much of its wall clock was timed training steps."""
    timed = sum(r.timed_s or 0.0 for r in records)
    share = timed / wall_s if wall_s > 0 else 0.0
    return f"timed steps {timed:.0f} s of {wall_s:.0f} s ({share:.0%})"


def run_sweep(cells: list[Cell], out_dir: Path, cell_timeout: float | None = None, resume: bool = False,
              progress: bool = True, command: str = "", isolate: bool = True,
              rendezvous: dict | None = None, write: bool = True,
              memory_limit: int | None = None) -> list[Record]:
    """Run every cell not already recorded; append each record as it ends.  Returns the records
    made by this call.  ``write=False``: a node other than 0, whose ranks train and record nothing.
    ``memory_limit``: bytes a cell's process tree may hold (default: ``DEFAULT_MEMORY_SHARE`` of
    the machine's memory)."""
    from bench.cell import run_cell, skipped_record

    remove_stale_cell_dirs()
    if memory_limit is None:
        memory_limit = default_memory_limit_bytes()
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
    # MFU's peak per (device, precision): measured by the first cell that runs there, handed to the rest.
    peaks: dict[tuple[str, str], tuple[float, str]] = {}
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
                                  log_path=out_dir / LOG_DIR / f"{cell.cell_id}.log" if write else None,
                                  memory_limit=memory_limit, peak=peaks.get((cell.device, cell.precision)))
            if record is None:
                print(f"{head}: done on this node; node 0 records it", file=sys.stderr)
                continue
        elif record is None:
            record = run_cell(cell, progress=progress, command=command, peak=peaks.get((cell.device, cell.precision)))
        if (cell.device, cell.precision) not in peaks and peak_to_hand(record):
            peaks[(cell.device, cell.precision)] = peak_to_hand(record)
        if write:
            append_or_record_failure(out_dir, record)
        made.append(record)
        line = _cell_line(record, time.monotonic() - t0, ran_s, len(cells) - i)
        log = out_dir / LOG_DIR / f"{cell.cell_id}.log"
        if record.status == "failed" and log.exists():
            line += f"; its output: {log}"
        print(f"{head}: {line}", file=sys.stderr)
    return made
