"""Run one cell (loop x device x precision) and turn it into a Record.

``run_cell`` runs in the calling process (the tests use it directly); ``python -m bench.cell
CELL.json RESULT.json`` is how a sweep runs each cell in a fresh process of its own.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import sys
import traceback

from bench.config import Cell, ConfigError

# The registry of loops: names to modules, imported only when a cell of that loop runs.
LOOPS = {
    "manual": "loops.manual_loop",
    "accelerate": "loops.accelerate_loop",
    "trainer": "loops.trainer_loop",
}


def resolve_loop(name: str):
    if name not in LOOPS:
        raise ConfigError(f"unknown loop {name!r}; choose from {', '.join(LOOPS)}")
    return importlib.import_module(LOOPS[name]).train


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def skip_reason(cell: Cell) -> str | None:
    """Why this cell cannot run on this machine, or None."""
    from bench.precision import device_unavailable, precision_unsupported

    return device_unavailable(cell.device) or precision_unsupported(cell.device, cell.precision)


def _reset_process_state(cell: Cell) -> None:
    """Process-wide switches a previous cell in the same process may have left behind."""
    import torch

    from bench.precision import set_tf32

    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    except ImportError:
        pass
    set_tf32(False)
    if cell.run.parity:
        # Same kernels, same reduction order, every run: what step-wise parity needs.
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(False)


def run_cell(cell: Cell, progress: bool = True, command: str = "") -> "Record":
    from bench.records import Record

    base = dict(loop=cell.loop, device=cell.device, precision=cell.precision, cell_id=cell.cell_id,
                repeat=cell.repeat, config=cell.to_dict(), command=command, started_at=_now())
    reason = skip_reason(cell)
    if reason:
        return Record(status="skipped", reason=reason, finished_at=_now(), **base)
    try:
        return _run(cell, base, progress)
    except ConfigError as exc:
        return Record(status="failed", reason=str(exc), finished_at=_now(), **base)
    except Exception as exc:  # the cell failed, the sweep goes on
        tail = traceback.format_exc().strip().splitlines()[-12:]
        return Record(status="failed", reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                      finished_at=_now(), env={"traceback_tail": tail}, **base)


def _run(cell: Cell, base: dict, progress: bool):
    import dataclasses

    from bench.data import prepare
    from bench.envinfo import environment
    from bench.evaluation import evaluate_model
    from bench.meter import StepMeter
    from bench.models import load_model
    from bench.precision import plan
    from bench.records import Record
    from bench.settings import PrecisionProbe, precision_mismatch, read_settings

    run = cell.run
    run.validate()
    train = resolve_loop(cell.loop)
    _reset_process_state(cell)
    from bench.peak import device_peak

    # MFU's denominator, measured (CPU, unknown GPU) before training, while the device is idle.
    peak_tflops, peak_source = device_peak(cell.device, cell.precision)
    model, tokenizer, info = load_model(run)
    data = prepare(run, tokenizer)
    expected_steps = run.max_steps or run.epochs * run.steps_per_epoch()
    meter = StepMeter(cell.device, run.timing_warmup, expected_steps, progress=progress, description=cell.label)
    probe = PrecisionProbe(model, cell.device)
    # Every loop starts from the same RNG state, so dropout draws the same masks in all three (the
    # Trainer reseeds in its constructor with the same seed; the others draw from here on).
    from transformers import set_seed

    set_seed(run.seed)
    result = train(cell, data, model, meter)
    probe.remove()

    settings = read_settings(result, meter, probe, data.collator, info)
    settings["device"] = cell.device
    summary = meter.summary()
    precision = plan(cell.precision)
    problems = []
    mismatch = precision_mismatch(precision, settings)
    if mismatch:
        problems.append(mismatch)
    if summary["steps"] != expected_steps:
        problems.append(f"took {summary['steps']} optimizer steps, expected {expected_steps}")
    scores = evaluate_model(result.model, data, cell.device, precision.torch_dtype(), run.eval_batch_size)
    fields = {k: v for k, v in summary.items() if k in {f.name for f in dataclasses.fields(Record)}}
    return Record(status="failed" if problems else "ok", reason="; ".join(problems),
                  settings=settings, model=dataclasses.asdict(info), data_source=data.source,
                  device_peak_tflops=peak_tflops, device_peak_source=peak_source,
                  env=environment(cell.device), finished_at=_now(), **fields, **scores, **base)


def main(argv: list[str]) -> int:
    """``python -m bench.cell CELL.json RESULT.json [--no-progress] [--command CMD]``"""
    cell_path, result_path = argv[0], argv[1]
    progress = "--no-progress" not in argv
    command = argv[argv.index("--command") + 1] if "--command" in argv else ""
    with open(cell_path, encoding="utf-8") as f:
        cell = Cell.from_dict(json.load(f))
    record = run_cell(cell, progress=progress, command=command)
    with open(result_path, "w", encoding="utf-8") as f:
        f.write(record.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
