"""The nested groups of a record: each a dataclass, on disk the JSON object of its set fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bench.config import ConfigError


class ResultsFileError(ConfigError):
    """results.jsonl cannot be trusted as it is; the message names the file and line."""


class _Group:
    """A nested group of a record: built from its JSON object (unknown keys refused, so nothing is
    silently dropped), written back as the object of its set fields."""

    @classmethod
    def coerce(cls, value):
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            if not value:
                return None
            unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise ResultsFileError(f"not a bench record: {cls.__name__} has no field(s) {', '.join(unknown)}")
            return cls(**value)
        raise ResultsFileError(f"not a bench record: {cls.__name__} is {value!r}, not an object")

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class Setup(_Group):
    """Seconds before the first step: each part, and total_s of imports, the device's context, model,
    data and the loop's own setup; the harness's GEMM peak probe apart (not in the total)."""
    imports_s: float | None = None
    device_init_s: float | None = None
    model_s: float | None = None
    data_s: float | None = None
    loop_setup_s: float | None = None
    total_s: float | None = None
    harness_peak_probe_s: float | None = None


@dataclass
class MachineLoad(_Group):
    """Was the machine quiet (bench/cell/load.py)?  Other processes' CPU over the timed steps, load
    averages, a GEMM probe before and after training; when the timed steps ran (epoch seconds) and
    the cell's own CPU over them (schema 5; absent before)."""
    cores: int | None = None
    loadavg_1m_start: float | None = None
    loadavg_1m_end: float | None = None
    gemm_gflops_before: float | None = None
    gemm_gflops_after: float | None = None
    others_cpu_cores: float | None = None
    others_cpu_fraction: float | None = None
    timed_window_s: float | None = None
    timed_start_unix_s: float | None = None
    timed_end_unix_s: float | None = None
    own_cpu_cores: float | None = None


@dataclass
class Failure(_Group):
    """Why a cell failed: its kind (config, exception, diverged, would-time-out, timeout, killed, exit,
    check, disk-full, out-of-memory), the message, the process's last lines, each DDP rank's own error
    lines, and for out-of-memory the peak and the limit."""
    kind: str = ""
    message: str = ""
    last_lines: list = field(default_factory=list)
    rank_errors: list | None = None
    peak_rss_bytes: int | None = None  # out-of-memory: the cell's peak and the --cell-memory-limit it passed
    limit_bytes: int | None = None


@dataclass
class Baseline(_Group):
    """The majority class of the validation labels and what predicting it for every pair scores."""
    label: int = 0
    accuracy: float = 0.0
    f1: float = 0.0


@dataclass
class Adapter(_Group):
    """A LoRA adapter as the live PEFT model held it (``bench/models/lora.py``): its settings in force,
    where its target modules came from (``peft``'s table for the architecture, ``bench``'s fallback,
    or ``--lora-targets``), how many modules it adapted (``adapted_layers``: PEFT's LoRA layers, one
    per adapted linear module, so two a transformer layer for query and value), what trained in full
    beside it, and PEFT's own count of the parameters (trainable; total, the frozen base and the
    head's kept original included)."""
    method: str = "lora"
    r: int = 0
    alpha: float = 0.0
    dropout: float = 0.0
    scaling: float = 0.0  # alpha / r, what multiplies the adapter's output
    target_modules: list = field(default_factory=list)
    targets_source: str = ""
    bias: str = ""
    modules_to_save: list = field(default_factory=list)
    adapted_layers: int = 0
    trainable_params: int = 0
    total_params: int = 0

    def __post_init__(self):
        # The report formats these as numbers and names: a record holding anything else is not a
        # bench record (refused as it is read, never half-shown).
        numbers = ("r", "alpha", "dropout", "scaling", "adapted_layers", "trainable_params", "total_params")
        lists = ("target_modules", "modules_to_save")
        bad = [n for n in numbers if isinstance(getattr(self, n), bool) or not isinstance(getattr(self, n), (int, float))]
        bad += [n for n in lists if not isinstance(getattr(self, n), list)
                or not all(isinstance(v, str) for v in getattr(self, n))]
        bad += [n for n in ("method", "targets_source", "bias") if not isinstance(getattr(self, n), str)]
        if bad:
            raise ResultsFileError(f"not a bench record: model.adapter's {', '.join(bad)} of the wrong type")


@dataclass
class Model(_Group):
    """The model a cell trained: as asked, where its weights and tokenizer came from, its size
    (built by bench.models when it loads the model)."""
    name: str = ""  # as asked (--model)
    weights: str = ""  # "pretrained:<source>" or "random-init:<config source>"
    tokenizer: str = ""
    n_params: int = 0
    n_params_non_embedding: int = 0  # what the 6 N flops-per-token rule counts
    num_layers: int = 0
    hidden_size: int = 0
    attn_implementation: str = ""
    dropout: str = ""
    # [a, b, c]: training FLOPs of one sequence of padded length L are a L + b L^2 + c, counted by
    # FlopCounterMode on this architecture at three lengths (empty in older records: 6 N L rule)
    train_flops_per_sequence_coeffs: list = field(default_factory=list)
    # What was trained: "full" (every weight) or "lora" (the adapter below and the classifier head);
    # the parameters that received gradients (None in records before it).
    finetune: str = ""
    n_params_trainable: int | None = None
    adapter: Adapter | None = None

    def __post_init__(self):
        self.adapter = Adapter.coerce(self.adapter)


@dataclass
class Predictions(_Group):
    """Per validation pair, parallel lists sorted by index: the predicted and the reference label and
    the positive-class probability (6 digits)."""
    index: list = field(default_factory=list)
    predicted: list = field(default_factory=list)
    reference: list = field(default_factory=list)
    prob_positive: list = field(default_factory=list)


@dataclass
class EvalPoint(_Group):
    """One evaluation during training (--eval-every): after which step, wall seconds from the first step."""
    step: int = 0
    wall_s: float = 0.0
    eval_f1: float = 0.0
    eval_accuracy: float = 0.0


# A group inside a group: its fields are columns of their own in a table of records (model.adapter.r).
NESTED = {("model", "adapter"): Adapter}

# Each nested field and its type; eval_curve is a list of them.
GROUPS = {"setup_s": Setup, "machine_load": MachineLoad, "failure": Failure, "eval_majority_baseline": Baseline,
           "model": Model, "eval_predictions": Predictions}
