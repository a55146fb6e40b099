"""A cell's memory: its process tree's resident memory (PSS: shared pages counted once), watched while it runs, and the evidence that a
SIGKILL came from the kernel's OOM killer (the cgroup's count of OOM kills, the machine's free memory)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from bench.sweep.celllog import kill_tree


# A cell's memory: its process tree's PSS, sampled this often, may not pass this share of the
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
    """Samples a cell's process tree's memory (RSS, and PSS past the limit); past ``limit`` it kills
    the tree (``tripped``)."""

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
        """The tree's memory, each page counted once: the sum of the processes' PSS (a page shared by
        k processes counts 1/k in each), where the system gives it; RSS summed would count the pages
        a forked DataLoader worker shares with the cell once per process (three times with two
        workers), and trip the limit on memory that is not there.

        PSS is read only when the RSS sum passes the limit: PSS is never above RSS, so an RSS sum
        under the limit is a PSS sum under it too, and reading PSS walks every page table of the
        cell (about 15 ms of CPU for a 1 GiB cell on a 2-core EPYC, 7% of a core at five reads a
        second, taken from the cell being timed); RSS costs microseconds."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = sum(_rss_of(p) for p in family)
        if self.limit and total > self.limit:
            total = sum(_resident(p) for p in family)
        return total

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


def _rss_of(process) -> int:
    import psutil

    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def _resident(process) -> int:
    """One process's proportional set size (PSS), or its RSS where PSS cannot be read (not Linux)."""
    import psutil

    try:
        pss = getattr(process.memory_full_info(), "pss", None)
        if pss is not None:
            return pss
    except (psutil.Error, OSError):
        pass
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"
