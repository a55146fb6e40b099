"""What a cell's process says, and how it is stopped: its log in OUT/logs/ (appended, never through
a link, a full disk costing the log and not the record), the relay that keeps everything in the log
and passes only the cell's own progress bar to the terminal, the last lines a failure's reason is
read from, the error lines each DDP rank left, and the SIGKILL of its whole process tree."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
from pathlib import Path

LOG_DIR = "logs"  # OUT/logs/<cell_id>.log: everything a cell's process printed
TAIL_LINES = 15  # the child's last lines kept for a failure's reason

# torchrun's own lines (its banners, its elastic agent's log lines) say nothing about the cell.
BANNER = re.compile(r"^\s*([*=\-]{5,}|[EWI]\d{4} .*torch/distributed/elastic|.*torch\.distributed\.elastic"
                     r"|Setting OMP_NUM_THREADS environment variable)")
WORKER_SIGKILL = re.compile(r"Signal 9 |SIGKILL")


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
    """The error lines each failed rank of a DDP cell left (``bench.cell.main`` writes them), rank by rank."""
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


def relay(stream, sink, tail: collections.deque, log=None, progress_prefix: str | None = None) -> None:
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
