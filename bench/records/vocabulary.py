"""The words a record is written in: its step phases, its wall-time parts and their report groups,
and the rule it calls a machine busy by.  The side that writes a record (the cell, the meter) and the
side that reads it (analysis, report) both take them from here, so the read side never imports the
write side for a word."""

from __future__ import annotations

# -- where a step's time goes (the meter's phase clock, ``bench/meter/phase_clock.py``) ----------------------
PHASES = ("data", "forward", "backward", "optimizer", "other")
PHASE_SUM_TOLERANCE = 0.02  # the five phases of a step add up to its time within this fraction


# -- is the machine quiet (``bench/cell/load.py``) --------------------------------------------------
OTHERS_MAX_FRACTION = 0.10
PROBE_MAX_CHANGE = 0.15
# The kernel counts CPU time in clock ticks (10 ms): the others' share is judged only over a window in which
# the threshold is at least this many ticks of all the cores, so that one stray tick moves it by 5%
# of the threshold at most.  1 s on 2 cores, 0.125 s on 16: a GPU's steps of 10-20 ms are judged
# after some tens of them, where a fixed second would leave most short GPU cells "not judged".
MIN_TICKS_AT_THRESHOLD = 20
TICK_S = 0.01
BUSY_RULE = (f"other processes used more than {OTHERS_MAX_FRACTION:.0%} of the cores during the timed steps "
             f"(judged once that share is {MIN_TICKS_AT_THRESHOLD} clock ticks or more: 1 s of timed steps on 2 "
             f"cores, less on more), or the GEMM probes before and after training differ by more than "
             f"{PROBE_MAX_CHANGE:.0%}")
# How each reason of the rule begins, so that a reader can tell them apart in ``machine_busy_why``
# (the analysis re-judges the first with a cell's siblings taken out: ``bench/analysis/siblings.py``).
OTHERS_WHY = "other processes used"
PROBE_WHY = "GEMM probe"
SHORT_WHY = "window too short to judge"


def min_window_s(cores: int | None) -> float:
    """The shortest timed window over which other processes' share of ``cores`` is judged."""
    return MIN_TICKS_AT_THRESHOLD * TICK_S / (max(1, cores or 1) * OTHERS_MAX_FRACTION)


def others_why(fraction: float, cores, what: str = "other processes") -> str:
    return f"{what} used {fraction:.0%} of the {cores} cores during the timed steps"


def probe_why(load: dict) -> str | None:
    """The GEMM probes before and after training, when they differ by more than PROBE_MAX_CHANGE."""
    before, after = load.get("gemm_gflops_before"), load.get("gemm_gflops_after")
    if before and after:
        change = abs(after - before) / max(before, after)
        if change > PROBE_MAX_CHANGE:
            return f"{PROBE_WHY} {before:.0f} GFLOP/s before training, {after:.0f} after ({change:.0%} apart)"
    return None


def busy_verdict(load: dict) -> tuple[bool | None, list[str]]:
    """(busy?, why) by ``BUSY_RULE`` from a record's ``machine_load`` (as a dict): True, False, or None
    when nothing says busy but the timed window was too short (or not measured) to judge other
    processes' share ("could not judge" is not "quiet")."""
    why = []
    frac = load.get("others_cpu_fraction")
    least = min_window_s(load.get("cores"))
    if frac is not None and frac > OTHERS_MAX_FRACTION and (load.get("timed_window_s") or 0) >= least:
        why.append(others_why(frac, load.get("cores")))
    probe = probe_why(load)
    if probe:
        why.append(probe)
    if why:
        return True, why
    window = load.get("timed_window_s")
    if frac is None or window is None or window < least:
        return None, [too_short_why(load)]
    return False, why


def too_short_why(load: dict) -> str:
    window, least = load.get("timed_window_s"), min_window_s(load.get("cores"))
    measured = f"{window:g} s of timed steps" if window is not None else "no timed steps measured"
    end = load.get("loadavg_1m_end")
    return (f"{SHORT_WHY}: {measured} (under {least:g} s); "
            f"1-minute load {'unknown' if end is None else f'{end:.1f}'} on {load.get('cores')} cores")



# -- where a cell's wall time goes (``bench/cell/wallclock.py``) ---------------------------------------
# In the order they happen; (key, what it is).
WALL_PARTS = (
    ("interpreter_s", "process start to the cell's first line: the interpreter and bench.cell.main's own imports"),
    ("imports_s", "the libraries: torch, transformers, the loop's library, the harness's modules"),
    ("device_init_s", "the device's context: CUDA's driver context and cuBLAS handle, made before the model "
                      "(0 on the CPU); a user's script pays it too, at its first CUDA call"),
    ("peak_probe_s", "the GEMM peak probe for MFU (0 when the sweep hands the cell its device's figure)"),
    ("model_s", "model and tokenizer"),
    ("data_s", "MRPC loaded, tokenized, the shared sampler"),
    ("load_probes_s", "the machine-load GEMM probes before and after training"),
    ("loop_setup_s", "the loop's own setup up to its first step (Accelerator, Trainer, prepare, ...)"),
    ("warmup_steps_s", "the timing warm-up steps"),
    ("timed_steps_s", "the timed steps"),
    ("eval_during_training_s", "evaluations inside training (--eval-every)"),
    ("after_steps_s", "after the last step until the loop returns (its teardown, the meter's stop)"),
    ("settings_s", "the settings read back from the live objects"),
    ("eval_s", "the evaluation after training: forward passes and the metric"),
    ("eval_intervals_s", "the bootstrap intervals and the majority baseline"),
    ("env_s", "the environment: versions, CPU flags, git sha"),
    ("harness_s", "the harness's own bookkeeping: process state, meter, summary, gather, the record"),
)
AFTER_RECORD = ("after_record_s", "after process_wall_s: the record serialised and written, the process's exit "
                                  "(measured by the sweep)")
WALL_SUM_TOLERANCE = 0.02

# The report's columns: a few parts each.
WALL_GROUPS = (
    ("start", ("interpreter_s", "imports_s", "device_init_s")),
    ("model + data", ("model_s", "data_s")),
    ("probes", ("peak_probe_s", "load_probes_s")),
    ("loop setup", ("loop_setup_s",)),
    ("warm-up", ("warmup_steps_s",)),
    ("timed steps", ("timed_steps_s",)),
    ("evaluation", ("eval_during_training_s", "eval_s", "eval_intervals_s")),
    ("harness", ("after_steps_s", "settings_s", "env_s", "harness_s")),
)


WALL_PART_NAMES = {name for name, _ in WALL_PARTS}


def named_s(wall: dict) -> float:
    """Seconds the parts name, ``after_record_s`` apart."""
    return sum(v for k, v in wall.items() if k in WALL_PART_NAMES and v is not None)


def fixed_cost_s(record) -> float | None:
    """What a cell costs beyond its training and evaluation: ``process_wall_s`` less the warm-up and
    timed steps and the evaluations (the figure the fixed-cost benchmark gates)."""
    wall, total = record.wall_s or {}, record.process_wall_s
    if not wall or total is None:
        return None
    work = sum(wall.get(k, 0.0) for k in ("warmup_steps_s", "timed_steps_s", "eval_during_training_s", "eval_s"))
    return total - work


# -- MFU's numerator and denominator as a record states them (``bench/analysis/mfu.py``) ----------
# How a record says its peak was measured once per sweep by another cell and handed on (bench/sweep/driver.py).
HANDED = ", handed from cell "


def train_flops_per_sequence(n_params_non_embedding: int, num_layers: int, hidden: int, length: int) -> float:
    """Model FLOPs to train on one sequence of ``length`` tokens: 6 N L for the weight matmuls
    (forward 2, backward 4) plus 12 layers h L^2 for attention scores and values."""
    return 6.0 * n_params_non_embedding * length + 12.0 * num_layers * hidden * length**2
