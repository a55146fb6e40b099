"""Command line: ``python -m bench run | report | compare | explain | env | inspect``.

This module only builds the parser (one builder per subcommand, and per option group of ``run``)
and hands the parsed arguments to the subcommand's function (``bench/commands/``).  Parsing
imports nothing heavy, so ``--help`` and bad input answer at once.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from bench.sweep import executors
from bench.config import flags
from bench.config.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from bench import __version__
from bench.config import LOOP_NAMES, ConfigError, RunConfig
from bench.trackers import REPORT_TO_HELP, tracker_list
from bench.commands.run import plan_from_args  # noqa: F401  (the command line up to its plan; tests use it here)


class _Parser(argparse.ArgumentParser):
    """Bad input is one line: what was wrong, and where help is.  No prefix abbreviations (every
    subcommand's parser is one of these): ``--max-st 10`` is refused, so a flag added later never
    changes what an old command means."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **dict(kwargs, allow_abbrev=False))

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when its help already says it, nor when there is none
    (a default of 0 is a default, and is shown)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser(prog: str = "python -m bench") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Fine-tune BERT on GLUE MRPC with five loops (a manual PyTorch loop, an Accelerate loop, the "
                    "HF Trainer, Lightning Fabric and the Lightning Trainer), measured the same way; records to "
                    "JSONL, reports to Markdown.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,report,compare,explain,env,inspect,export}")
    for add in (_add_run, _add_report, _add_compare, _add_explain, _add_env, _add_inspect, _add_export):
        add(sub)
    return parser


def _add_run(sub) -> None:
    d = RunConfig()
    run = sub.add_parser("run", help="train and measure a matrix of cells (loop x device x precision)",
                         formatter_class=_DefaultsOnce)
    flags.run_matrix(run.add_argument_group("matrix"))
    flags.run_model_and_data(run.add_argument_group("model and data"), d)
    flags.run_hyperparameters(run.add_argument_group("hyperparameters (defaults: the tutorial's)"), d)
    flags.run_finetune(run.add_argument_group("what is trained (full fine-tuning, LoRA)"))
    flags.run_fast_path(run.add_argument_group(
        "fast path (each recorded in the cell config; default: the tutorial's settings)"), d)
    flags.run_time_to_accuracy(run.add_argument_group("time to accuracy"))
    _run_measurement(run.add_argument_group("measurement and control"), d)
    _run_recipes(run.add_argument_group("recipes"))


def _run_measurement(x, d: RunConfig) -> None:
    """How cells are timed, where their records go, and what stops a cell."""
    x.add_argument("--timing-warmup", type=non_negative_int, default=d.timing_warmup,
                   help="first optimizer steps left out of the timing (not the learning-rate warm-up)")
    x.add_argument("--parity", action="store_true",
                   help="deterministic kernels, so the loops' step losses can be compared step by step (dropout stays on: every loop starts from the same RNG state)")
    x.add_argument("--no-phases", dest="phases", action="store_false",
                   help="do not split steps into data/forward/backward/optimizer/other (the split costs "
                        "well under 1%% of a step and is on by default; always off under --compile)")
    x.add_argument("--peak-tflops", type=positive_float, default=None, metavar="X",
                   help="one device's peak TFLOP/s for MFU, instead of the datasheet's or a measured GEMM (recorded as an override)")
    x.add_argument("--out", default=None, help="output folder (default: runs/<timestamp>/)")
    x.add_argument("--report-to", type=tracker_list, default="none", metavar="TRACKERS", help=REPORT_TO_HELP)
    x.add_argument("--resume", metavar="OUT", default=None, help="continue the sweep in OUT, skipping cells already ok or skipped")
    x.add_argument("--cell-timeout", type=positive_float, default=None, help="seconds before a cell is killed and marked failed")
    x.add_argument("--cell-memory-limit", metavar="GIB", type=positive_float, default=None,
                   help="GiB of memory (RSS of the cell's whole process tree) a cell may hold before it is stopped "
                        "and recorded as failed: out of memory (default: 75%% of this machine's memory; not "
                        "watched under --in-process)")
    x.add_argument("--no-progress", action="store_true", help="no progress bars (none anyway when stderr is not a terminal)")
    x.add_argument("--in-process", action="store_true", help="run cells in this process (faster start, no isolation: for debugging)")
    executors.add_flags(x)  # --executor and the Ray options, beside the executor they drive


def _run_recipes(c) -> None:
    """A whole run as one TOML or JSON file."""
    c.add_argument("--config", metavar="FILE", default=None, action="append",
                   help="read options from a TOML or JSON file: its keys are this command's flags without the "
                        "dashes (max-grad-norm = 1.0, loops = [\"manual\", \"trainer\"]); flags given on the "
                        "command line win")
    c.add_argument("--print-config", action="store_true",
                   help="print the resolved options as such a TOML file and exit without running")


def _add_report(sub) -> None:
    """``bench report OUT``."""
    rep = sub.add_parser("report", help="render a Markdown report (with plots) from a results folder or file")
    rep.add_argument("results", help="OUT folder of a run, or its results.jsonl")
    rep.add_argument("-o", "--output", default=None, help="Markdown file to write (default: OUT/report.md)")
    rep.add_argument("--csv", metavar="FILE", default=None,
                     help="also write the flat per-cell table (one row per cell: medians over its repeats) as CSV")
    rep.add_argument("--report-to", type=tracker_list, default="none", metavar="TRACKERS",
                     help="log the report, and every record no run of these trackers holds yet, to them (as run's --report-to)")


def _add_compare(sub) -> None:
    """``bench compare A B``."""
    cmp_ = sub.add_parser("compare", help="two result folders cell by cell: ratios B/A and a noise-aware verdict",
                          description="Match the cells of two runs (same loop, device, precision, processes and "
                                      "training settings) and print B/A ratios of samples/s, step time, peak memory, "
                                      "startup and F1. Library versions and the machine may differ; a training "
                                      "setting may only if named with --differ.")
    cmp_.add_argument("a", metavar="A", help="the reference run (folder or results.jsonl)")
    cmp_.add_argument("b", metavar="B", help="the run compared against it")
    cmp_.add_argument("--differ", metavar="FIELDS", default=None,
                      help="comma list of run settings that differ on purpose (e.g. num_workers); cells that differ "
                           "in any other setting are refused")
    cmp_.add_argument("--fail-above", metavar="PCT", type=non_negative_float, default=None,
                      help="exit 1 if some cell's samples/s in B is more than PCT%% below A's (a CI gate)")
    cmp_.add_argument("-o", "--output", default=None, help="write the Markdown here instead of to stdout")


def _add_explain(sub) -> None:
    """``bench explain OUT --from A --to B``."""
    exp = sub.add_parser("explain", help="why two loops run with their own defaults differ: each difference flipped alone",
                         description="For the two loops' cells in OUT (made with `run --defaults native`), run A with "
                                     "each differing setting set to B's value, and each loop without its library's "
                                     "own machinery, in paired repeats; the flip cells are added to OUT and the report "
                                     "gets a 'Why do they differ?' section.")
    exp.add_argument("out", metavar="OUT", help="results folder holding both loops' cells")
    exp.add_argument("--from", dest="from_loop", required=True, choices=LOOP_NAMES, help="loop A (e.g. manual)")
    exp.add_argument("--to", dest="to_loop", required=True, choices=LOOP_NAMES, help="loop B (e.g. trainer)")
    exp.add_argument("--repeats", type=positive_int, default=None,
                     help="runs of each flip cell (default: as many as OUT holds of loop A's cell)")
    exp.add_argument("--cell-timeout", type=positive_float, default=None, help="seconds before a cell is killed")
    exp.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_env(sub) -> None:
    """``bench env``."""
    env = sub.add_parser("env", help="versions, CPU model and flags, cores, memory, GPUs, load: paste it beside a figure")
    env.add_argument("--json", action="store_true",
                     help="one JSON object: torch.utils.collect_env's fields (driver, CUDA, cuDNN, NCCL where present) "
                          "and bench's own (CPU family/model and vector capability, loops installed, the environment "
                          "variables that change results)")


def _add_inspect(sub) -> None:
    """``bench inspect``."""
    ins = sub.add_parser("inspect", help="what the model and tokenizer look like: the tutorial's opening, made useful")
    ins.add_argument("--model", default="minilm-l6", help="Hub id, local folder, or alias (default: minilm-l6)")
    ins.add_argument("--sentence1", default="This is the first sentence.", help="first sentence of the pair to encode")
    ins.add_argument("--sentence2", default="This is the second one.", help="second sentence of the pair to encode")


def _add_export(sub) -> None:
    """``bench export OUT``."""
    exp = sub.add_parser("export", help="the records as one table (bench.load's columns) in a CSV, Parquet or JSON-lines file")
    exp.add_argument("results", metavar="OUT", help="OUT folder of a run, or its results.jsonl")
    exp.add_argument("--format", choices=("csv", "parquet", "jsonl"), required=True, help="the file's format")
    exp.add_argument("-o", "--output", default=None, help="file to write (default: OUT/records.FORMAT)")
    exp.add_argument("--superseded", action="store_true", help="every record, also those a later run of their cell replaced")


class Terminated(BaseException):
    """SIGTERM, handled like Ctrl-C: the running cell is stopped and its temporary folder removed."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    # Installed as the console script `bench`, it names itself so; `python -m bench` otherwise.
    parser = build_parser("bench" if Path(sys.argv[0]).name == "bench" else "python -m bench")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.command == "run":
            from bench.commands.run import run_command

            return run_command(parser, argv, args)
        import importlib  # every other subcommand NAME is bench/commands/NAME.py's cmd_NAME(args)

        return getattr(importlib.import_module(f"bench.commands.{args.command}"), f"cmd_{args.command}")(args)
    except ConfigError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in ("run", "explain"):
            print("bench: interrupted; what was recorded stays recorded (resume with --resume OUT)", file=sys.stderr)
        else:  # nothing of these is half-written: files are renamed into place whole
            print(f"bench: interrupted; {args.command} wrote nothing over what was there", file=sys.stderr)
        return 130
    except Terminated:
        print("bench: terminated (SIGTERM); what was recorded stays recorded (resume with --resume OUT)",
              file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    parser.error(f"unknown command {args.command}")
    return 2
