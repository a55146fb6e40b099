"""Run configuration: one dataclass of hyperparameters shared by the five loops, and the cell
(loop x device x precision) that a sweep runs.

Nothing here imports torch, so ``python -m bench --help`` stays fast.  The defaults are the
tutorial's: AdamW at lr 5e-5, batch 8, 3 epochs, linear decay with no warm-up, no weight decay,
seed 42, and no gradient clipping (the Trainer's own default of 1.0 is *not* the tutorial's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field

from loops import LOOPS

LOOP_NAMES = tuple(LOOPS)  # every registered loop; loops.available() says which are installed
from bench.devices import DEVICES as _DEVICE_TABLE

DEVICES = tuple(_DEVICE_TABLE)
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
# How AdamW runs its update: what torch picks when nothing is said (for-loop on CPU, foreach on
# CUDA), or one implementation forced.  The Trainer's own default is "fused".
ADAMW_IMPLS = ("torch-default", "for-loop", "foreach", "fused")
SCHEDULERS = ("linear", "constant", "cosine")
ATTN_IMPLS = ("sdpa", "eager")
FINETUNES = ("full", "lora")  # every weight trained, or LoRA adapters (PEFT) with the classifier head
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
PRESETS = ("fast",)

MRPC_TRAIN_PAIRS = 3668
MRPC_VALIDATION_PAIRS = 408


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line for the user."""


@dataclass(frozen=True)
class RunConfig:
    # What is trained, on what.
    model: str = "bert-base-uncased"
    no_weights: bool = False
    glue_dir: str | None = None
    train_samples: int | None = None  # first N training pairs; None = all 3668
    eval_samples: int | None = None  # first N validation pairs; None = all 408
    # The tutorial's hyperparameters.
    lr: float = 5e-5
    batch_size: int = 8
    epochs: int = 3
    max_steps: int | None = None  # optimizer steps; overrides epochs, and the schedule ends there
    scheduler: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float | None = None  # None: no clipping, as in the tutorial
    weight_decay_exempt: bool = True  # biases and LayerNorm weights without weight decay, as the Trainer does
    adamw: str = "torch-default"
    grad_accum: int = 1
    seed: int = 42
    eval_batch_size: int = 32
    # Fast-path options (all off: the tutorial's settings).
    group_by_length: bool = False  # batches of similar length from the shared sampler: less padding
    pad_to_multiple_of: int | None = None  # pad each batch's length up to a multiple (tensor-core shapes)
    compile: bool = False  # torch.compile, through each loop's own mechanism
    attn: str = "sdpa"  # attention kernel: PyTorch SDPA (transformers' default) or the eager matmuls
    num_workers: int = 0  # DataLoader worker processes
    pin_memory: bool = False  # page-locked host batches (CUDA)
    preset: str | None = None  # name of the preset that set the options above, if any
    # Time-to-accuracy: evaluate every K steps (time excluded from throughput), stop the clock at F1 >= target.
    eval_every: int | None = None
    target_f1: float | None = None
    # Measurement and control.
    timing_warmup: int = 5  # first optimizer steps left out of the timing (not the LR warm-up)
    parity: bool = False  # deterministic kernels, for step-wise loss parity between the loops
    phases: bool = True  # split each step into data/forward/backward/optimizer/other (bench/meter/phase_clock.py)
    peak_tflops: float | None = None  # MFU's peak, one device's, given by the user (else measured or a datasheet's)
    # What is trained: every weight ("full"), or LoRA adapters through PEFT ("lora") beside the
    # classifier head (PEFT's modules_to_save for sequence classification).  A LoRA setting left None
    # is PEFT's own default for the architecture, read back from the live model into the record.
    finetune: str = "full"
    lora_r: int | None = None
    lora_alpha: float | None = None
    lora_dropout: float | None = None
    lora_targets: tuple | None = None  # module names; None: PEFT's list for the architecture (bench.models.lora)
    # Whose defaults: "tutorial" (every loop set to the tutorial's settings) or "native" (each loop's
    # library's own, loops/native.py); loop_options: single machinery entries of loops/native.py
    # overridden, as (name, value) pairs; flip: what `bench explain` changed in this cell, in words.
    defaults: str = "tutorial"
    loop_options: tuple = ()
    flip: str = ""

    def validate(self) -> None:
        for name in ("lr", "weight_decay", "adam_beta1", "adam_beta2", "adam_eps", "max_grad_norm", "target_f1",
                     "peak_tflops"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be in [0, 2**32 - 1] (numpy's and torch's seed range), got {self.seed}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.adam_eps <= 0:
            raise ConfigError(f"--adam-eps must be > 0, got {self.adam_eps}")
        for name in ("batch_size", "epochs", "grad_accum", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {self.max_steps}")
        for name in ("warmup_steps", "timing_warmup", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("train_samples", "eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ConfigError(f"--peak-tflops must be > 0, got {self.peak_tflops}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(f"--max-grad-norm must be > 0 (leave it out for no clipping), got {self.max_grad_norm}")
        if self.defaults not in ("tutorial", "native"):
            raise ConfigError(f"--defaults must be tutorial or native, got {self.defaults!r}")
        if self.adamw not in ADAMW_IMPLS:
            raise ConfigError(f"--adamw must be one of {', '.join(ADAMW_IMPLS)}, got {self.adamw!r}")
        if self.attn not in ATTN_IMPLS:
            raise ConfigError(f"--attn must be one of {', '.join(ATTN_IMPLS)}, got {self.attn!r}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ConfigError(f"--pad-to-multiple-of must be >= 1, got {self.pad_to_multiple_of}")
        if self.num_workers < 0:
            raise ConfigError(f"--num-workers must be >= 0, got {self.num_workers}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ConfigError(f"--eval-every must be >= 1, got {self.eval_every}")
        if self.target_f1 is not None and not 0 < self.target_f1 <= 1:
            raise ConfigError(f"--target-f1 must be in (0, 1], got {self.target_f1}")
        if self.target_f1 is not None and self.eval_every is None:
            raise ConfigError("--target-f1 needs --eval-every K (how often to evaluate)")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        self._validate_finetune()
        total = self.total_steps()
        if self.timing_warmup >= total:
            raise ConfigError(
                f"--timing-warmup {self.timing_warmup} leaves no timed step out of {total} optimizer steps; "
                f"lower it or train longer"
            )

    def _validate_finetune(self) -> None:
        if self.finetune not in FINETUNES:
            raise ConfigError(f"--finetune must be one of {', '.join(FINETUNES)}, got {self.finetune!r}")
        if self.finetune == "full":
            given = [f"--{name.replace('_', '-')}" for name in LORA_FIELDS if getattr(self, name) is not None]
            if given:
                raise ConfigError(f"{', '.join(given)} set for full fine-tuning: LoRA settings need --finetune lora")
            return
        if self.lora_r is not None and (not isinstance(self.lora_r, int) or self.lora_r < 1):
            raise ConfigError(f"--lora-r must be an integer >= 1, got {self.lora_r}")
        if self.lora_alpha is not None and not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ConfigError(f"--lora-alpha must be a finite number > 0, got {self.lora_alpha}")
        if self.lora_dropout is not None and not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_targets is not None:
            bad = [t for t in self.lora_targets if not isinstance(t, str) or not t or not _MODULE_NAME.fullmatch(t)]
            if not self.lora_targets or bad:
                raise ConfigError(f"--lora-targets must be module names such as query,value, got "
                                  f"{','.join(map(str, self.lora_targets)) or 'nothing'}")

    def n_train(self) -> int:
        return min(self.train_samples or MRPC_TRAIN_PAIRS, MRPC_TRAIN_PAIRS)

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Optimizer steps per epoch in each process: the batches are split across the world."""
        batches = math.ceil(self.n_train() / (self.batch_size * world_size))
        return math.ceil(batches / self.grad_accum)

    def in_force(self, world_size: int = 1) -> tuple[int, int]:
        """(micro-batch size, micro-batches per optimizer step) as they can be with this many training
        pairs: a batch larger than a process's share of the pairs holds only that share, and an
        accumulation longer than an epoch's micro-batches is cut at the epoch's end."""
        per_rank = math.ceil(self.n_train() / world_size)
        batch = min(self.batch_size, per_rank)
        return batch, min(self.grad_accum, math.ceil(self.n_train() / (self.batch_size * world_size)))

    def total_steps(self, world_size: int = 1) -> int:
        """Optimizer steps the run will take; the LR schedule decays over exactly these."""
        return self.max_steps if self.max_steps else self.epochs * self.steps_per_epoch(world_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_config_from_dict(d: dict) -> RunConfig:
    """A run config read back from JSON (its (name, value) pairs come back as lists)."""
    d = dict(d)
    d["loop_options"] = tuple(tuple(pair) for pair in d.get("loop_options") or ())
    if d.get("lora_targets") is not None:
        d["lora_targets"] = tuple(d["lora_targets"])
    return RunConfig(**d)


_ADDED_LATER = {"finetune": "full", **{name: None for name in LORA_FIELDS}}


def config_id(cell: dict) -> str:
    """The key of a cell's configuration: ``Cell.to_dict()``, or a record's ``config``."""
    d = dict(cell)
    # Fields added after records existed leave the id as it was while at their defaults, so a
    # folder written before them resumes instead of running every cell again.
    d["run"] = {k: v for k, v in d["run"].items() if not (k in _ADDED_LATER and v == _ADDED_LATER[k])}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One point of the matrix: a loop on a device at a precision, with the shared run config."""

    loop: str
    device: str
    precision: str
    run: RunConfig = field(default_factory=RunConfig)
    repeat: int = 0
    nproc: int = 1  # processes per node (torchrun); > 1 is DDP
    nnodes: int = 1

    def to_dict(self) -> dict:
        return {"loop": self.loop, "device": self.device, "precision": self.precision,
                "repeat": self.repeat, "nproc": self.nproc, "nnodes": self.nnodes, "run": self.run.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        return cls(loop=d["loop"], device=d["device"], precision=d["precision"], repeat=d.get("repeat", 0),
                   nproc=d.get("nproc", 1), nnodes=d.get("nnodes", 1), run=run_config_from_dict(d["run"]))

    @property
    def kind(self):
        """The device's entry in ``bench.devices.DEVICES``: what the loops need to know of the device
        (``torch_type``, ``host``, ``async_copies``) without naming it."""
        return _DEVICE_TABLE[self.device.split(":")[0]]

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    @property
    def cell_id(self) -> str:
        """Stable key of the cell's full configuration (used to resume a sweep)."""
        return config_id(self.to_dict())

    @property
    def label(self) -> str:
        flip = f" [{self.run.flip.split(':', 1)[-1]} flipped]" if self.run.flip else ""
        seed = f" seed {self.run.seed}" if self.run.seed != RunConfig.seed else ""  # a --seeds sweep's cells apart
        recipe = f" {self.run.finetune}" if self.run.finetune != RunConfig.finetune else ""  # LoRA beside full
        return (f"{self.loop}/{self.device}/{self.precision}" + (f"x{self.world_size}" if self.world_size > 1 else "")
                + (f"#{self.repeat}" if self.repeat else "") + seed + recipe + flip)
