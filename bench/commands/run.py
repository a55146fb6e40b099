"""``bench run``: the command line's options to a plan of cells, the sweep over them, its summary,
its report and its exit status."""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
from pathlib import Path

from bench.config import ConfigError, RunConfig


FAST_PATH_FLAGS = ("group_by_length", "pad_to_multiple_of", "compile", "attn", "num_workers", "pin_memory", "adamw")
# Hyperparameters with no fast-path role that a loop's native defaults may set (loops/native.py).
NATIVE_HYPERPARAMETERS = ("max_grad_norm", "weight_decay", "warmup_steps")


def _run_configs(args) -> tuple[list[RunConfig], set[str]]:
    """One run config per batch size; the fast-path fields the user set explicitly."""
    from bench.data import resolve_glue_dir

    fast = {k: getattr(args, k) for k in FAST_PATH_FLAGS if getattr(args, k) is not None}
    # What the user set by flag: a preset leaves these alone, and they win over a loop's native
    # defaults (--defaults native).  Only the fast-path ones are passed through ``fast``; the
    # hyperparameters are passed by name below.
    explicit = set(fast) | {k for k in ("batch_size", *NATIVE_HYPERPARAMETERS) if getattr(args, k) is not None}
    d = RunConfig()
    runs = []
    for batch_size in args.batch_size or [RunConfig.batch_size]:  # validated with the plan
        base = RunConfig(
            model=args.model, no_weights=args.no_weights, glue_dir=resolve_glue_dir(args.glue_dir),
            train_samples=args.train_samples, eval_samples=args.eval_samples,
            lr=args.lr, batch_size=batch_size, epochs=args.epochs, max_steps=args.max_steps,
            scheduler=args.scheduler,
            warmup_steps=d.warmup_steps if args.warmup_steps is None else args.warmup_steps,
            weight_decay=d.weight_decay if args.weight_decay is None else args.weight_decay, defaults=args.defaults,
            max_grad_norm=args.max_grad_norm, grad_accum=args.grad_accum, seed=args.seed,
            eval_batch_size=args.eval_batch_size, timing_warmup=args.timing_warmup, parity=args.parity, phases=args.phases,
            eval_every=args.eval_every, target_f1=args.target_f1, peak_tflops=args.peak_tflops, **fast)
        runs += finetune_variants(base, args)
    return runs, explicit


def finetune_variants(base: RunConfig, args) -> list[RunConfig]:
    """The run config once per ``--finetune`` choice: a LoRA cell with the LoRA flags (and
    ``--lora-lr``), a full one without them.  LoRA flags with no LoRA cell are refused."""
    import dataclasses

    from bench.config import LORA_FIELDS

    choices = args.finetune[0] if isinstance(args.finetune, tuple) else args.finetune
    lora = {name: getattr(args, name) for name in LORA_FIELDS}
    if lora["lora_targets"] is not None:
        lora["lora_targets"] = tuple(lora["lora_targets"])
    given = [f"--{name.replace('_', '-')}" for name in (*LORA_FIELDS, "lora_lr") if getattr(args, name) is not None]
    if given and "lora" not in choices:
        raise ConfigError(f"{', '.join(given)} without a LoRA cell: add --finetune lora (or full,lora)")
    if "lora" in choices:
        import importlib.util

        if importlib.util.find_spec("peft") is None:
            raise ConfigError('--finetune lora needs the package peft: pip install -e ".[lora]"')
    out = []
    for finetune in choices:
        if finetune == "lora":
            out.append(dataclasses.replace(base, finetune="lora", lr=args.lora_lr or base.lr, **lora))
        else:
            out.append(dataclasses.replace(base, finetune="full"))
    return out


def plan_from_args(args) -> tuple[list[RunConfig], list]:
    """The command line's path up to the validated plan, touching neither data, model nor OUT: one
    run config per batch size, and every cell of the matrix (each run config validated)."""
    from bench.cell.main import skip_reason
    from bench.sweep.plan import plan_cells
    from bench.sweep.driver import refuse_explicit

    runs, explicit = _run_configs(args)
    if args.node_rank >= args.nnodes:
        raise ConfigError(f"--node-rank {args.node_rank} must be below --nnodes {args.nnodes}")
    loops = _installed_loops(*args.loops)
    from bench.trackers import missing

    if missing(args.report_to):  # a tracker's extra not installed: said before OUT is made
        raise ConfigError(missing(args.report_to))
    devices, devices_explicit, chosen = devices_of(args)
    precisions, precisions_explicit = args.precision
    try:
        refuse_explicit(devices, precisions, devices_explicit, precisions_explicit, skip_reason, nproc=args.nproc)
    except ConfigError as exc:
        raise ConfigError(f"{chosen}; {exc}" if chosen else str(exc)) from None
    presets = [None if name == "tutorial" else name for name in args.preset[0]] if args.preset else [None]
    cells = plan_cells(loops, devices, precisions, runs, presets, repeats=args.repeats, nproc=args.nproc,
                       nnodes=args.nnodes, explicit=explicit, seeds=args.seeds)
    return runs, cells


def devices_of(args) -> tuple[list[str], bool, str]:
    """The devices of the matrix, whether they were named, and what ``--device auto`` chose ("" when
    the devices were named or ``all``): auto picks one device as if it had been named."""
    devices, explicit = args.device
    if devices != ["auto"]:
        return devices, explicit, ""
    from bench.devices import auto_device

    device, said = auto_device()
    return [device], True, said


def cmd_run(args) -> int:
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ConfigError("give either --out or --resume OUT, not two different folders")
    if args.executor == "ray":
        _check_ray(args)
    elif args.ray_address or args.cpus_per_cell:
        raise ConfigError("--ray-address and --cpus-per-cell go with --executor ray")
    runs, cells = plan_from_args(args)
    out = Path(args.resume or args.out or Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    if args.resume and not out.is_dir():
        raise ConfigError(f"--resume {out}: no such folder")
    if args.node_rank > 0:
        # Another node: its ranks train, node 0 holds the lock and writes every record.
        return _sweep(args, runs, cells, out, records=None)
    from bench.sweep.outdir import OutLock, check_writable, recorded, remove_if_untouched

    # The plan above refused what cannot run (--nproc past the cores among it) before OUT is made.
    created = not out.exists()
    check_writable(out)
    lock = OutLock(out).acquire()
    try:
        return _sweep(args, runs, cells, out, records=recorded(out))
    except ConfigError:
        lock.release()
        if created:  # a refused run leaves no empty OUT behind
            remove_if_untouched(out)
        raise
    finally:
        lock.release()


def _check_ray(args) -> None:
    """Ray asked for but not installed, or with cells that need a process of their own anyway:
    one line before any work.  (An address that does not answer is refused as Ray starts.)"""
    from bench.sweep.executors import import_ray

    if args.in_process or args.nnodes > 1:
        raise ConfigError("--executor ray runs each cell in its own task: not with --in-process or --nnodes")
    import_ray()
    if args.ray_address:  # a cluster that does not answer: refused now, not after the data is read
        from bench.sweep.executors import start_ray

        start_ray(args.ray_address)


def _installed_loops(names: list[str], explicit: bool) -> list[str]:
    """The loops asked for that can run here: by name, a missing extra package is an error; through
    ``all``, a loop whose package is missing is left out, and the run says so."""
    import loops as registry

    missing = {name: registry.missing_package(name) for name in names}
    missing = {name: pkg for name, pkg in missing.items() if pkg}
    if missing and explicit:
        name, pkg = next(iter(missing.items()))
        raise ConfigError(f"--loops {name}: needs the package {pkg!r}, not installed here (pip install -e \".[{pkg}]\")")
    if missing:
        print(f"bench: --loops all: leaving out {', '.join(missing)} (needs {', '.join(sorted(set(missing.values())))}, "
              f"not installed: pip install -e \".[{'],['.join(sorted(set(missing.values())))}]\")", file=sys.stderr)
    return [name for name in names if name not in missing]


def _sweep(args, runs: list[RunConfig], cells: list, out: Path, records: list | None) -> int:
    """Check the plan's cells against OUT, run them, summarise.  ``records``: OUT's records (None on
    a node other than 0, which writes nothing)."""
    from bench.cell.load import busy_now
    from bench.sweep.outdir import other_machines
    from bench.sweep.preflight import Preflight, run_checks
    from bench.records import read_records
    from bench.records import latest_per_cell
    from bench.records.portable import cell_key
    from bench.report.summary import summary_table
    from bench.sweep.driver import run_sweep, training_share_line

    from bench.trackers.drive import log_pending, log_report, open_trackers, say

    run = runs[0]
    # Fail fast, in one line, on what no cell could get past (bench/sweep/preflight.py), then the trackers.
    run_checks(Preflight(runs=runs, cells=cells, out=out, records=records, resume=bool(args.resume)))
    trackers = open_trackers(args.report_to, out) if records is not None else None
    chosen = devices_of(args)[2]
    if records is not None:
        elsewhere = other_machines(out, records)
        if elsewhere:
            print(f"bench: warning: {elsewhere}", file=sys.stderr)
    rendezvous = None if args.nnodes == 1 else {"node_rank": args.node_rank, "master_addr": args.master_addr,
                                                 "master_port": args.master_port}
    command = shlex.join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]])
    busy = busy_now()
    if busy:
        print(f"bench: warning: {busy}", file=sys.stderr)
    print(f"{len(cells)} cells -> {out}/" + (f" ({chosen})" if chosen else ""), file=sys.stderr)
    made = run_sweep(cells, out, cell_timeout=args.cell_timeout, resume=bool(args.resume),
              # Progress bars only on a terminal: piped or logged output gets no \r frames.
              progress=not args.no_progress and sys.stderr.isatty(), command=command, isolate=not args.in_process, rendezvous=rendezvous,
              write=records is not None,
              memory_limit=None if args.cell_memory_limit is None else int(args.cell_memory_limit * 2**30),
              device_choice=chosen, executor=args.executor, ray_address=args.ray_address,
              cpus_per_cell=args.cpus_per_cell, cells_at_once=args.cells_at_once, after_record=lambda record: "".join(f"; {w}" for w in log_pending(trackers)))
    if records is None:
        return 0  # node 0 holds the records and the report
    records = read_records(out)
    print(summary_table(records))
    from bench.report import render

    try:
        render(records, out / "report.md")  # written whatever the cells' outcome
    except OSError as exc:  # every record is written already; only the report is missing
        raise ConfigError(f"{exc.filename or out / 'report.md'}: the report cannot be written "
                          f"({exc.strerror or exc}); the records are whole: run `bench report {out}` later") from None
    print(f"report: {out / 'report.md'}", file=sys.stderr)
    say(log_pending(trackers) + log_report(trackers, out / "report.md"))
    print(f"bench: {training_share_line(made, _process_age_s())}", file=sys.stderr)
    wanted = {cell_key(c.to_dict()) for c in cells}
    latest = [r for r in latest_per_cell(records) if r.cell_key in wanted]
    bad = [r for r in latest if r.status == "failed"]
    missing = wanted - {r.cell_key for r in latest}
    if run.parity and not parity_holds(latest):
        return 1
    return 1 if bad or missing else 0


def _process_age_s() -> float:
    """Seconds since this process began (its imports included): the sweep's wall clock."""
    import time

    import psutil

    return time.time() - psutil.Process().create_time()


def parity_holds(records: list) -> bool:
    """Print each loop's largest step-wise relative loss difference against the manual loop; False
    when two loops that train the same thing disagree.  Loops whose settings differ (their native
    defaults) are not expected to agree: said, with the difference, and no failure."""
    from bench.analysis import cells_of, parity_lines

    ok, lines = parity_lines(cells_of(records))
    for line in lines:
        print(line)
    return ok


def run_command(parser, argv: list[str], args) -> int:
    """``bench run``, with a recipe file's options read first (the command line's win) and
    ``--print-config`` answered without running."""
    from bench.config import recipe

    if args.config and len(args.config) > 1:  # argparse would keep the last and drop the others unsaid
        raise ConfigError(f"--config given {len(args.config)} times ({', '.join(args.config)}); give one file "
                          f"(merge them: its options, then the command line's flags, are what runs)")
    if args.config:  # the file's options first, so that the command line's win
        args = parser.parse_args(recipe.with_config(argv, args.config[0], recipe.run_parser(parser)))
    if args.print_config:
        print(recipe.to_toml(args, recipe.run_parser(parser)), end="")
        return 0
    return cmd_run(args)
