"""The ``run`` subcommand's option groups that say what is trained and on what: the matrix, the model
and data, the hyperparameters, the fine-tuning (full, LoRA), the fast path, time to accuracy.  Each
function fills one argument group of the parser ``bench/cli.py`` builds; nothing here imports torch."""

from __future__ import annotations

from bench.config import (ADAMW_IMPLS, ATTN_IMPLS, DEVICES, FINETUNES, LOOP_NAMES, PRECISIONS, PRESETS, SCHEDULERS,
                          RunConfig)
from bench.config.argtypes import (choice_list, device_list, dropout_rate, fraction, int_in, module_names,
                                   non_negative_float, non_negative_int, positive_float, positive_int,
                                   positive_int_list, seed_list)


def run_matrix(m) -> None:
    """Which cells: loops x devices x precisions, repeats, processes and nodes."""
    m.add_argument("--loops", type=choice_list(LOOP_NAMES, "loop"), default="all",
                   help=f"all, or a comma list of: {', '.join(LOOP_NAMES)}")
    m.add_argument("--device", type=device_list(DEVICES), default="auto",
                   help=f"auto (the first of cuda, mps, cpu this machine has; the choice is recorded), all, or a comma "
                        f"list of: {', '.join(DEVICES)}")
    m.add_argument("--precision", type=choice_list(PRECISIONS, "precision"), default="fp32",
                   help=f"all, or a comma list of: {', '.join(PRECISIONS)}")
    m.add_argument("--repeats", type=positive_int, default=1, help="runs of each cell, each in a fresh process")
    m.add_argument("--nproc", type=positive_int, default=1,
                   help="processes per node: > 1 launches each cell with torchrun (DDP; nccl on GPUs, gloo on the CPU)")
    m.add_argument("--nnodes", type=positive_int, default=1, help="nodes (run the same command on each, with --node-rank)")
    m.add_argument("--node-rank", type=non_negative_int, default=0, help="this node's rank (multi-node)")
    m.add_argument("--master-addr", default="127.0.0.1", help="address of node 0 (multi-node)")
    m.add_argument("--master-port", type=positive_int, default=29500, help="port on node 0 (multi-node)")


def run_model_and_data(w, d: RunConfig) -> None:
    """The model and the MRPC pairs it trains and is evaluated on."""
    w.add_argument("--model", default=d.model,
                   help="a Hub id, a local model folder, or an alias: minilm-l6 (packaged, offline), tiny (random, tests)")
    w.add_argument("--no-weights", action="store_true", help="random weights from the model's config (throughput only)")
    w.add_argument("--glue-dir", default=None,
                   help="local copy of the Hub repo nyu-mll/glue (default: $BENCH_GLUE_DIR, else the Hub)")
    w.add_argument("--train-samples", type=positive_int, default=None, help="use the first N training pairs")
    w.add_argument("--eval-samples", type=positive_int, default=None, help="use the first N validation pairs")


def run_hyperparameters(h, d: RunConfig) -> None:
    """The training hyperparameters, the tutorial's by default."""
    h.add_argument("--batch-size", type=positive_int_list, default=None,
                   help=f"per-process batch size, or a comma list to sweep (default {d.batch_size})")
    h.add_argument("--lr", type=positive_float, default=d.lr, help="AdamW learning rate, peak of the schedule")
    h.add_argument("--epochs", type=positive_int, default=d.epochs, help="passes over the training pairs")
    h.add_argument("--max-steps", type=positive_int, default=None, help="stop after N optimizer steps (the schedule ends there)")
    h.add_argument("--warmup-steps", type=non_negative_int, default=None,
                   help=f"learning-rate warm-up steps (default {d.warmup_steps})")
    h.add_argument("--scheduler", choices=SCHEDULERS, default=d.scheduler, help="learning-rate schedule over the steps")
    h.add_argument("--weight-decay", type=non_negative_float, default=None,
                   help=f"AdamW weight decay (default {d.weight_decay}; biases and LayerNorm weights exempt, as in the Trainer)")
    h.add_argument("--defaults", choices=("tutorial", "native"), default=d.defaults,
                   help="tutorial: every loop set to the tutorial's settings (compares the loops' machinery); "
                        "native: each loop with its library's own defaults where no flag says otherwise "
                        "(loops/native.py; `bench explain` then measures what each difference is worth)")
    h.add_argument("--max-grad-norm", type=positive_float, default=None,
                   help="clip gradients to this norm (default: no clipping, as in the tutorial; the Trainer's own default is 1.0)")
    h.add_argument("--adamw", choices=ADAMW_IMPLS, default=None,
                   help=f"AdamW update implementation (default {d.adamw}; the Trainer's own default is fused)")
    h.add_argument("--grad-accum", type=positive_int, default=d.grad_accum,
                   help="micro-batches per optimizer step (their losses averaged)")
    seeds = h.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int_in(0, 2**32 - 1), default=d.seed,
                       help="seed of the sample order, the classifier head and dropout")
    seeds.add_argument("--seeds", type=seed_list, default=None,
                       help="a comma list of seeds to sweep (e.g. 1,2,3): each seed is its own cell, with the same "
                            "head, order and dropout in every loop; the report then compares the loops' quality "
                            "across seeds (--repeats repeats one seed, for timing noise)")
    h.add_argument("--eval-batch-size", type=positive_int, default=d.eval_batch_size,
                   help="batch size of the validation pass")


def run_finetune(t) -> None:
    """Full fine-tuning, LoRA through PEFT, or both side by side."""
    t.add_argument("--finetune", type=choice_list(FINETUNES, "fine-tuning"), default="full",
                   help="full (every weight), lora (LoRA adapters through PEFT, the classifier head trained in full), "
                        "or full,lora side by side (needs the lora extra: pip install -e \".[lora]\")")
    t.add_argument("--lora-r", type=positive_int, default=None, help="LoRA rank (default: PEFT's, 8)")
    t.add_argument("--lora-alpha", type=positive_float, default=None, help="LoRA scaling alpha (default: PEFT's, 8)")
    t.add_argument("--lora-dropout", type=dropout_rate, default=None, help="dropout on the LoRA path (default: PEFT's, 0)")
    t.add_argument("--lora-targets", type=module_names, default=None, metavar="NAMES",
                   help="comma list of module names to adapt (default: PEFT's list for the architecture, e.g. "
                        "query,value for BERT; docs/models.md for those PEFT has none for)")
    t.add_argument("--lora-lr", type=positive_float, default=None,
                   help="learning rate of the LoRA cells (default: --lr); LoRA usually wants ~10x full fine-tuning's")


def run_fast_path(f, d: RunConfig) -> None:
    """The fast-path options, each recorded in the cell's config."""
    f.add_argument("--preset", type=choice_list(("tutorial",) + PRESETS, "preset"), default=None,
                   help=f"{', '.join(('tutorial',) + PRESETS)}, or a comma list of them to run side by side. fast: "
                        "the fastest measured combination of the options below for each device (flags given win); "
                        "tutorial: none of them (default)")
    f.add_argument("--group-by-length", action="store_true", default=None, help="batches of pairs of similar length")
    f.add_argument("--pad-to-multiple-of", type=positive_int, default=None, help="round each batch's length up")
    f.add_argument("--compile", action="store_true", default=None, help="torch.compile, through each loop's own switch")
    f.add_argument("--attn", choices=ATTN_IMPLS, default=None, help=f"attention kernel (default {d.attn})")
    f.add_argument("--num-workers", type=non_negative_int, default=None, help="DataLoader workers (default 0)")
    f.add_argument("--pin-memory", action="store_true", default=None, help="pinned host memory for batches")


def run_time_to_accuracy(t) -> None:
    """Evaluation during training, and the F1 whose first reaching is timed."""
    t.add_argument("--eval-every", type=positive_int, default=None,
                   help="evaluate every K optimizer steps (excluded from throughput, included in time-to-accuracy)")
    t.add_argument("--target-f1", type=fraction, default=None, help="record the wall time until validation F1 first reaches this")
