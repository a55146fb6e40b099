"""Peak memory: the device's allocator peaks (CUDA ``max_memory_allocated`` / ``max_memory_reserved``,
reset when training starts) and the process's peak resident memory."""

from __future__ import annotations

import resource
import sys


def rss_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20  # KiB on Linux, bytes on macOS


class PeakMemory:
    MERGE = {"peak_rss_mib": max, "peak_alloc_mib": max, "peak_reserved_mib": max}  # the largest rank's
    PER_RANK = ("peak_rss_mib", "peak_alloc_mib", "peak_reserved_mib")

    def __init__(self, dev):
        self._dev = dev

    def start(self) -> None:
        self._dev.reset_peak_memory()

    def fields(self, steps: list[float], warmup: int) -> dict:
        return {"peak_rss_mib": rss_peak_mib(), **self._dev.peak_memory_mib()}
