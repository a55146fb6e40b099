"""One cell's record, once its loop has run (``bench/cell/steps.py``): a stopped cell's, with the steps
timed up to the stop; else the settings read back from the live objects, the evaluation, and under
DDP every rank's measurements gathered to rank 0 and merged field by field, each by the rule the
field declares (``MERGE`` tables, ``bench/cell/ranks.py``)."""

from __future__ import annotations

import os

from bench.cell import dist
from bench.cell.steps import CellRun, dynamo_counts, process_wall_s
from bench.cell.envinfo import environment
from bench.cell.evaluation import evaluate_model
from bench.cell.load import busy_verdict
from bench.meter import Diverged
from bench.cell.ranks import Over, merge
from bench.records import Record
from bench.cell.settings import optimizer_state_bytes, precision_mismatch, read_settings
from bench.cell.wallclock import utc_now

# MFU's denominator is one device's peak (the slowest rank's measurement, or the datasheet's): MFU
# multiplies it by the world size, so cells of any world size share one peak in a report.
PEAK_MERGE = {"device_peak_tflops": Over("peak_tflops", min)}


def stopped_record(r: CellRun, stopped) -> Record:
    """Diverged, or could not finish in time: the steps up to there are the record's evidence."""
    load = r.watch.finish([r.window])
    busy, why = _with_gpu_busy(busy_verdict(load), r.gpu)
    kind = "diverged" if isinstance(stopped, Diverged) else "would-time-out"
    r.clock.lap("harness_s")
    env = environment(r.cell.device)
    r.clock.lap("env_s")
    r.extra.update(r.gpu.fields(r.gpu.energy_j(), _timed_samples(r.summary)))
    record = Record(status="failed", reason=stopped.reason(), model=r.info, **r.extra,
                    failure={"kind": kind, "message": stopped.reason(), "last_lines": []},
                    data_source=r.data.source, data_fingerprint=r.data.fingerprint, machine_load=load,
                    machine_busy=busy, machine_busy_why=why, env=env, finished_at=utc_now(), **r.fields, **r.base)
    return with_wall(record, r.clock, r.process_started)


def read_back(r: CellRun, result) -> dict:
    """The settings in force, read back from the live objects, and the evaluation's scores."""
    cell, run = r.cell, r.cell.run
    settings = read_settings(result, r.meter, r.probe, r.data.collator, r.info)
    settings["device"] = cell.device
    # What was in force, not what was asked: --batch-size 100000 on 64 pairs trains batches of 64.
    settings["batch_size_in_force"], settings["grad_accum_in_force"] = run.in_force(cell.world_size)
    if run.compile:  # graphs compiled in all, and compilations that happened inside the timed steps
        counts = dynamo_counts()
        settings["compile_graphs"] = counts["graphs"]
        settings["compile_frames_in_timed_steps"] = counts["frames"] - r.compiles_at.get("frames", counts["frames"])
    if run.parity:  # what the device needed for deterministic kernels, as it was in force
        from bench.devices import device

        settings.update({f"env_{k}": os.environ.get(k) for k, _ in device(cell.device).deterministic_env})
    r.settings = settings
    r.extra["optimizer_state_bytes"] = optimizer_state_bytes(result.optimizer)
    r.clock.lap("settings_s")
    scores = evaluate_model(result.model, r.data, cell.device, r.precision.torch_dtype(), run.eval_batch_size)
    r.clock.lap("eval_s")
    if scores is not None:
        r.clock.move("eval_s", "eval_intervals_s", scores.pop("eval_intervals_s", 0.0))
    return scores


def gather_ranks(r: CellRun) -> list[dict] | None:
    """Every rank's own measurements, on rank 0 (None elsewhere); with several ranks, the record's
    fields merged from them by each field's rule, and the machine's load and GPU facts over all."""
    peak_tflops, peak_source = r.peak
    ranks = dist.gather_to_rank0({"rank": dist.rank(), **r.meter.rank_fields(r.summary), "peak_tflops": peak_tflops,
                                  "load_window": r.window, "gpu_energy_j": r.gpu.energy_j()}, r.cell.device)
    if ranks is None:
        return None  # only rank 0 writes
    r.load = r.watch.finish([rank.pop("load_window") for rank in ranks])
    r.busy = _with_gpu_busy(busy_verdict(r.load), r.gpu)
    energies = [rank.pop("gpu_energy_j") for rank in ranks]
    r.extra.update(r.gpu.fields(sum(energies) if None not in energies else None, sum(rank["samples"] for rank in ranks)))
    r.fields.update(device_peak_tflops=peak_tflops, device_peak_source=peak_source,
                    device_peak_override=bool(r.cell.run.peak_tflops))
    if len(ranks) > 1:
        r.fields.update(merge(ranks, r.meter.merge_rules(), PEAK_MERGE))
        r.fields["device_peak_source"] += f", per device ({len(ranks)} ranks)"
    return ranks


def finished_record(r: CellRun, ranks: list[dict], scores: dict) -> Record:
    """The record of a cell that trained to the end: ``ok``, or ``failed`` when a check says so."""
    cell = r.cell
    problems = []
    mismatch = precision_mismatch(r.precision, r.settings)
    if mismatch:
        problems.append(mismatch)
    expected = cell.run.total_steps(cell.world_size)
    if r.summary["steps"] != expected:
        problems.append(f"took {r.summary['steps']} optimizer steps, expected {expected}")
    r.extra["process_wall_s"] = process_wall_s(r.process_started)  # after evaluation and the gather
    r.clock.lap("harness_s")
    env = environment(cell.device)
    r.clock.lap("env_s")
    busy, why = r.busy
    record = Record(status="failed" if problems else "ok", reason="; ".join(problems), **r.extra,
                    failure={"kind": "check", "message": "; ".join(problems), "last_lines": []} if problems else {},
                    settings=r.settings, model=r.info, data_source=r.data.source,
                    data_fingerprint=r.data.fingerprint,
                    world_size=len(ranks), per_rank=ranks if len(ranks) > 1 else [],
                    machine_load=r.load, machine_busy=busy, machine_busy_why=why,
                    env=env, finished_at=utc_now(), **r.fields, **scores, **r.base)
    return with_wall(record, r.clock, r.process_started)


def with_wall(record: Record, clock, process_started: float | None) -> Record:
    """The record with where its wall time went, and ``process_wall_s`` taken last, just before the
    record is serialised (its writing is the sweep's ``after_record_s``)."""
    clock.lap("harness_s")
    record.wall_s = clock.as_dict()
    if process_started is not None:
        record.process_wall_s = process_wall_s(process_started)
    return record


def _with_gpu_busy(verdict: tuple[bool, list[str]], gpu) -> tuple[bool, list[str]]:
    """The machine's busy verdict, with other processes computing on the cell's GPU counted in."""
    busy, why = verdict
    gpu_why = gpu.busy_why()
    return (True, why + [gpu_why]) if gpu_why else (busy, why)


def _timed_samples(summary: dict) -> int:
    return sum(summary["step_samples"][summary["timing_warmup_steps"]:])
