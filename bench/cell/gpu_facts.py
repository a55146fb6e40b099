"""What a user of a GPU report expects to know about the GPU during a cell, read through NVML (the
optional extra ``nvidia-ml-py``, module ``pynvml``: ``pip install -e ".[gpu]"``).

- ``gpu_other_processes``: processes other than this cell's holding the GPU when the cell starts
  (pid and memory); with the GPU busy computing (utilization above ``GPU_BUSY_UTILIZATION_PCT``)
  the cell is marked busy, as it is for a busy CPU (``busy_why``).
- ``gpu_start`` / ``gpu_end``: SM clock, clock-throttle reasons, temperature, power draw and
  utilization when the cell starts and when its training ends;
- ``gpu_energy_j``: the GPU's energy counter (``nvmlDeviceGetTotalEnergyConsumption``) over the
  timed steps, and ``joules_per_sample``: that over the samples of those steps (under DDP every
  rank's GPU, over every rank's samples).

Not a CUDA cell, NVML not installed, or a query the GPU does not answer (a MIG instance has no
energy counter of its own): the fields are null and ``gpu_facts_why`` says why.  Nothing here
imports pynvml unless a CUDA cell asks.
"""

from __future__ import annotations

import os

GPU_BUSY_UTILIZATION_PCT = 10
# nvmlClocksEventReason* / nvmlClocksThrottleReason* bits.
THROTTLE_REASONS = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
                    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
                    0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting"}
NO_NVML = 'NVML not read: the optional package nvidia-ml-py is not installed (pip install -e ".[gpu]")'


def throttle_names(mask: int | None) -> list[str] | None:
    if mask is None:
        return None
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception:  # NVMLError_NotSupported, _NoPermission, a function this driver lacks
        return None


def _fn(nvml, *names):
    """The first of these NVML functions this pynvml has (they are renamed between releases:
    nvidia-ml-py 13 has nvmlDeviceGetComputeRunningProcesses and no nvmlDeviceGetComputeProcesses),
    or None; ``_try(None, ...)`` is None."""
    for name in names:
        fn = getattr(nvml, name, None)
        if fn is not None:
            return fn
    return None


def _own_pids() -> set[int]:
    """This process and its ancestors (the sweep that started it, torchrun)."""
    pids = {os.getpid()}
    try:
        import psutil

        pids |= {p.pid for p in psutil.Process().parents()}
    except Exception:
        pids.add(os.getppid())
    return pids


def _nvml():
    """(initialised pynvml, "") or (None, why not)."""
    try:
        import pynvml
    except ImportError:
        return None, NO_NVML
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return None, f"NVML not read: nvmlInit failed ({type(exc).__name__}: {str(exc)[:200]})"
    return pynvml, ""


def _handle(nvml, index: int):
    """The NVML handle of CUDA device ``index`` (NVML ignores CUDA_VISIBLE_DEVICES: matched by UUID,
    then PCI bus id)."""
    import torch

    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        for candidate in (str(uuid), f"GPU-{uuid}", f"MIG-{uuid}"):
            handle = _try(_fn(nvml, "nvmlDeviceGetHandleByUUID"), candidate)
            if handle is not None:
                return handle
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        pci = f"{getattr(props, 'pci_domain_id', 0):08x}:{bus:02x}:{getattr(props, 'pci_device_id', 0):02x}.0"
        handle = _try(_fn(nvml, "nvmlDeviceGetHandleByPciBusId"), pci)
        if handle is not None:
            return handle
    raise LookupError("no NVML device matches this CUDA device (by UUID or PCI bus id)")


class GpuWatch:
    """NVML facts of the cell's GPU at its start, over its timed steps and at the end of training."""

    def __init__(self, device: str):
        self.why = ""
        self._nvml = self._h = None
        self.start_facts = self.end_facts = self.others = None
        self._e0 = self._e1 = None
        from bench.devices import device as device_kind

        if device_kind(device).torch_type != "cuda":
            self.why = "not a CUDA cell: no GPU facts"
            return
        self._nvml, self.why = _nvml()
        if self._nvml is None:
            return
        try:
            import torch

            self._h = _handle(self._nvml, torch.cuda.current_device())
        except Exception as exc:
            self._nvml, self.why = None, f"NVML not read: {type(exc).__name__}: {str(exc)[:200]}"

    def _snapshot(self) -> dict:
        nvml, h = self._nvml, self._h
        reasons = (getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
                   or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
        power_mw = _try(_fn(nvml, "nvmlDeviceGetPowerUsage"), h)
        util = _try(_fn(nvml, "nvmlDeviceGetUtilizationRates"), h)
        return {"sm_clock_mhz": _try(_fn(nvml, "nvmlDeviceGetClockInfo"), h, getattr(nvml, "NVML_CLOCK_SM", 1)),
                "throttle_reasons": throttle_names(_try(reasons, h) if reasons else None),
                "temperature_c": _try(_fn(nvml, "nvmlDeviceGetTemperature"), h, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)),
                "power_w": None if power_mw is None else power_mw / 1000,
                "utilization_pct": None if util is None else util.gpu}

    def _energy_j(self):
        mj = _try(_fn(self._nvml, "nvmlDeviceGetTotalEnergyConsumption"), self._h)
        return None if mj is None else mj / 1000

    # -- called by the cell ----------------------------------------------------------------------
    def _off(self, exc: BaseException) -> None:
        """NVML answered in a way this code does not know: its facts are missing, the cell goes on."""
        self._nvml, self.why = None, f"NVML not read: {type(exc).__name__}: {str(exc)[:200]}"

    def start(self) -> None:
        """Before anything else of the cell touches the GPU."""
        if self._nvml is None:
            return
        try:
            self._start()
        except Exception as exc:  # noqa: BLE001 - a fact the harness could not read never fails a cell
            self._off(exc)

    def _start(self) -> None:
        self.start_facts = self._snapshot()
        procs = _try(_fn(self._nvml, "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeProcesses"),
                     self._h)
        if procs is not None:
            mine = _own_pids()
            self.others = [{"pid": p.pid, "used_mib": None if not isinstance(getattr(p, "usedGpuMemory", None), int)
                            else round(p.usedGpuMemory / 2**20)} for p in procs if p.pid not in mine]

    def timed_start(self) -> None:
        try:
            if self._nvml is not None:
                self._e0 = self._energy_j()
        except Exception as exc:  # noqa: BLE001
            self._off(exc)

    def timed_end(self) -> None:
        try:
            if self._nvml is not None:
                self._e1 = self._energy_j()
                self.end_facts = self._snapshot()
        except Exception as exc:  # noqa: BLE001
            self._off(exc)

    def energy_j(self) -> float | None:
        """Joules the GPU used over the timed steps (None where it has no counter)."""
        if self._e0 is None or self._e1 is None:
            return None
        return self._e1 - self._e0

    def busy_why(self) -> str | None:
        """Other processes computing on the GPU when the cell started, in words, or None."""
        util = (self.start_facts or {}).get("utilization_pct")
        if self.others and util is not None and util > GPU_BUSY_UTILIZATION_PCT:
            pids = ", ".join(str(p["pid"]) for p in self.others[:5])
            return (f"{len(self.others)} other process(es) on the GPU when the cell started (pid {pids}), "
                    f"the GPU {util}% utilized")
        return None

    def fields(self, energy_j: float | None, timed_samples: int | None) -> dict:
        """The record's GPU fields; ``energy_j``: every rank's, summed."""
        why = self.why
        if not why and energy_j is None:
            why = "the GPU's energy counter did not answer (a MIG instance has none of its own)"
        return {"gpu_start": self.start_facts, "gpu_end": self.end_facts, "gpu_other_processes": self.others,
                "gpu_energy_j": energy_j,
                "joules_per_sample": energy_j / timed_samples if energy_j is not None and timed_samples else None,
                "gpu_facts_why": why}
