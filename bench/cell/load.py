"""Is the machine busy?  What other processes took while a cell was being timed.

A throughput figure is only as good as the machine was quiet.  Each record carries ``machine_load``:

- ``loadavg_1m_start`` / ``loadavg_1m_end``: the 1-minute load average when the cell started and ended;
- ``others_cpu_cores``: CPU time the *other* processes of the machine used during the timed steps,
  in cores (the whole machine's busy CPU time through ``psutil.cpu_times()``, which is
  ``/proc/stat``'s busy ticks on Linux and the kernel's counters on macOS, less the cell's own CPU
  time from ``getrusage``, over the wall time of the timed steps; under DDP every rank's own time
  is the cell's);
- ``others_cpu_fraction``: the same over the machine's cores;
- ``gemm_gflops_before`` / ``gemm_gflops_after``: a short fp32 GEMM probe just before and just after
  training (what the device could do then);
- ``timed_start_unix_s`` / ``timed_end_unix_s``: when the timed window began and ended (epoch seconds),
  and ``own_cpu_cores``: the cell's own CPU time over it, in cores (every rank on this host): what
  the analysis needs to find the cells that ran beside it and to take their share out of the
  others' (``bench/analysis/siblings.py``);

and ``machine_busy`` is true by this rule (``BUSY_RULE``): other processes took more than 10% of the
cores during the timed steps, or the two probes differ by more than 15%.  It is None ("could not
judge"), not false, when the probes agree but the timed steps were too short (under 1 s) or not
measured to judge the other processes' share.
"""

from __future__ import annotations

import os
import resource
import time

# The rule and its words are the records' (the analysis judges by them too); named here as well.
from bench.records.vocabulary import OTHERS_MAX_FRACTION, busy_verdict, min_window_s  # noqa: F401

PROBE_SIZE = 256  # the CPU's; each device's size is in bench/devices.py


# The CPU-time fields that count as work: idle, iowait and a hypervisor's steal are not others' work;
# guest time is already inside user on Linux.  irq and softirq exist on Linux only.
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")


def busy_cpu_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all CPUs), through psutil: on Linux the
    same ticks of /proc/stat as before psutil, over the clock-tick rate; on macOS and the BSDs the
    kernel's own counters."""
    import psutil

    try:
        times = psutil.cpu_times()
    except (OSError, RuntimeError, NotImplementedError):
        return None
    return sum(getattr(times, name, 0.0) for name in BUSY_FIELDS)


def _own_cpu_s() -> float:
    """CPU seconds this process has used (its threads included; its worker processes once they end)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def loadavg_1m() -> float | None:
    """The 1-minute load average (psutil: the kernel's where there is one, emulated on Windows)."""
    import psutil

    try:
        return psutil.getloadavg()[0]
    except (OSError, RuntimeError, AttributeError):
        return None


def gemm_probe_gflops(device: str = "cpu") -> float | None:
    """Best fp32 GEMM rate over a fraction of a second: small, so it costs little, and best-of, so one
    preempted call does not decide it.  Sized per device (``bench/devices.py``): on a GPU a 256^3
    product with a sync after it times the launch, not the device, so it is larger and several
    products share one sync.  Always IEEE fp32 (TF32 off for the probe, restored after): in a tf32
    cell the probe after training would otherwise run with TF32 on and the one before with it off."""
    from bench.devices import device as device_kind
    from bench.precision import fp32_matmul

    kind = device_kind(device)
    with fp32_matmul():
        gflops = _timed_gemm(device, kind, kind.synchronize)
    kind.release_cached_memory()  # the probe's blocks would count in the cell's peak_reserved_mib
    return gflops


def _timed_gemm(device: str, kind, sync) -> float:
    """GFLOP/s of the best of the timings of ``kind.probe_products`` n^3 products (one ``sync``
    each) that fit in ``kind.probe_seconds``, after ``kind.probe_warmup_s`` of untimed products: a
    GPU idles at a fraction of its clock (an H200 at 345 MHz against 1980 under load), and its first
    products would time the clock's ramp, not the device."""
    import torch

    n, products = kind.probe_size, kind.probe_products
    dev = torch.device(kind.torch_type)
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    a @ b
    sync()
    warm_until = time.perf_counter() + kind.probe_warmup_s
    while time.perf_counter() < warm_until:
        for _ in range(products):
            a @ b
        sync()
    best, deadline = float("inf"), time.perf_counter() + kind.probe_seconds
    while True:
        t0 = time.perf_counter()
        for _ in range(products):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - t0) / products)
        if time.perf_counter() >= deadline:
            break
    return 2 * n**3 / best / 1e9


class LoadWatch:
    """Measures what other processes did while this cell's steps were timed."""

    def __init__(self, device: str):
        self.device = device
        self.cores = os.cpu_count() or 1
        self.load: dict = {"loadavg_1m_start": loadavg_1m(), "cores": self.cores}
        self._begin = None

    def probe(self, when: str) -> None:
        self.load[f"gemm_gflops_{when}"] = gemm_probe_gflops(self.device)

    def timed_start(self) -> None:
        """Called by the meter when the timing warm-up ends."""
        self._begin = (time.perf_counter(), busy_cpu_s(), _own_cpu_s(), time.time())

    def timed_end(self) -> dict:
        """This process's share of the window: wall seconds, machine busy seconds, own CPU seconds."""
        if self._begin is None:
            return {}
        t0, b0, c0, unix0 = self._begin
        b1 = busy_cpu_s()
        return {"wall_s": time.perf_counter() - t0, "own_cpu_s": _own_cpu_s() - c0,
                "machine_busy_s": b1 - b0 if b0 is not None and b1 is not None else None,
                "host": os.uname().nodename if hasattr(os, "uname") else "",
                "start_unix_s": unix0, "end_unix_s": time.time()}

    def finish(self, windows: list[dict]) -> dict:
        """``machine_load`` from the window of each rank (rank 0's first): other processes' CPU time is
        the machine's busy time less what every rank on this host used itself."""
        load = dict(self.load)
        load["loadavg_1m_end"] = loadavg_1m()
        mine = windows[0] if windows else {}
        busy = mine.get("machine_busy_s")
        if mine.get("start_unix_s") is not None:  # when, on the wall clock: the cells beside it are found by it
            load["timed_start_unix_s"] = round(mine["start_unix_s"], 3)
            load["timed_end_unix_s"] = round(mine["end_unix_s"], 3)
        if mine.get("wall_s"):
            own = sum(w.get("own_cpu_s", 0.0) for w in windows if w.get("host") == mine.get("host"))
            load["own_cpu_cores"] = round(own / mine["wall_s"], 3)
            if busy is not None:
                others = max(0.0, busy - own) / mine["wall_s"]
                load["others_cpu_cores"] = round(others, 3)
                load["others_cpu_fraction"] = round(others / self.cores, 3)
                load["timed_window_s"] = round(mine["wall_s"], 3)
        return load


# The start-of-run warning also reads the 1-minute load: a window of half a second can miss work
# that comes and goes, the load average of the last minute does not.
LOAD_WARN_PER_CORE = 0.5


def busy_now(seconds: float = 0.5) -> str | None:
    """Before a sweep: a line saying the machine is already busy, or None.  The same measure as a
    cell's, over a short idle window of the sweep's own."""
    watch = LoadWatch("cpu")
    watch.timed_start()
    time.sleep(seconds)
    load = watch.finish([watch.timed_end()])
    if (load.get("others_cpu_fraction") or 0) > OTHERS_MAX_FRACTION:
        return (f"the machine is already busy: other processes are using {load['others_cpu_cores']:.1f} of "
                f"{load['cores']} cores (1-minute load {load['loadavg_1m_end']:.1f}); cells measured now will be "
                "marked busy")
    load_1m, cores = load.get("loadavg_1m_end"), load.get("cores") or 1
    if load_1m is not None and load_1m > LOAD_WARN_PER_CORE * cores:
        return (f"the machine has been busy: 1-minute load {load_1m:.1f} on {cores} cores; cells measured now may "
                "be slowed, and are marked busy where their own window shows it")
    return None
