"""MFU: model FLOPs per second over the peak of the devices that ran them, one peak per device and
precision for all cells of a report."""

from __future__ import annotations

import statistics

from bench.analysis.cells import CellStats
from bench.analysis.machines import same_machine
from bench.records.vocabulary import HANDED, train_flops_per_sequence
from bench.records import Record


def device_peak_of(r: Record) -> float | None:
    """One device's peak (TFLOP/s) from a record; records before schema 2 stored DDP cells' peak
    summed over the ranks.  A peak measured on the spot below what the cell itself measured on the
    same device in the same dtype (its fp32 load probes, ``probe_floor``) was measured in a busy
    spell and is no peak: the probe's figure stands in for it (MFU at most, never five times, what
    the device did)."""
    peak = r.device_peak_tflops
    if peak and "summed over" in (r.device_peak_source or ""):
        peak /= r.world_size or 1
    floor = probe_floor(r)
    return max(peak, floor) if peak and floor else peak


def probe_floor(r: Record) -> float | None:
    """The best of the cell's own fp32 GEMM load probes (TFLOP/s), where they bound its peak from
    below: an fp32 cell whose peak was measured on the spot (a datasheet figure is not raised)."""
    load = r.machine_load
    if r.precision != "fp32" or load is None or not (r.device_peak_source or "").startswith("measured"):
        return None
    probes = [g for g in (load.gemm_gflops_before, load.gemm_gflops_after) if g]
    return max(probes) / 1000 if probes else None


def mfu(r: Record, peak_tflops: float | None = None) -> float | None:
    """Model FLOPs per second over the timed steps, divided by the peak of every device that ran
    them (one device's peak times the world size).  Under DDP the step lists are rank 0's: the FLOPs
    are rank 0's times the world size (the ranks' batches differ, their number and size do not)."""
    m = r.model
    peak = (peak_tflops or device_peak_of(r) or 0) * (r.world_size or 1)
    samples, padded = r.step_samples or [], r.step_padded_tokens or []
    w = r.timing_warmup_steps or 0
    if not (peak and samples and padded and r.timed_s and m and m.n_params_non_embedding):
        return None
    flops = 0.0
    for n, tokens in zip(samples[w:], padded[w:]):
        length = tokens / n  # every sequence of a batch is padded to the same length
        coeffs = m.train_flops_per_sequence_coeffs  # empty in records before it
        if coeffs and len(coeffs) == 3:  # counted on the architecture itself
            flops += n * (coeffs[0] * length + coeffs[1] * length**2 + coeffs[2])
        else:
            flops += n * train_flops_per_sequence(m.n_params_non_embedding, m.num_layers, m.hidden_size, length)
    return flops * (r.world_size or 1) / r.timed_s / (peak * 1e12)


def cell_mfu(c: CellStats, peak_tflops: float | None = None) -> float | None:
    """The median over the cell's ok repeats of their MFU (over ``peak_tflops``, else each one's own)."""
    v = [x for x in (mfu(r, peak_tflops) for r in c.ok) if x is not None]
    return statistics.median(v) if v else None


def shared_peaks(cells: list[CellStats]) -> dict[str, tuple[float, str]]:
    """One peak per precision for all cells of a device: a datasheet figure as recorded, or the
    best of the GEMM measurements the cells made on the spot (one measurement swings with the
    load of a shared machine; the best is the closest to what the device can do)."""
    out: dict[str, tuple[float, str]] = {}
    for precision in dict.fromkeys(c.precision for c in cells):
        recs = [r for c in cells if c.precision == precision for r in c.ok if device_peak_of(r)]
        if not recs or not same_machine(recs):
            continue  # none, or measured on several machines: each run's MFU over its own peak
        best = max(recs, key=device_peak_of)
        source = (best.device_peak_source or "").split(", summed over")[0]
        if probe_floor(best) and probe_floor(best) > (best.device_peak_tflops or 0):
            source = f"the cell's own fp32 load probe, faster than the GEMM peak measured ({source})"
        if source.startswith("measured"):
            measured = [r for r in recs if HANDED not in (r.device_peak_source or "")]
            source = f"best of {len(measured)} on-the-spot measurements, {source}"
        out[precision] = (device_peak_of(best), source + " (per device)")
    return out
