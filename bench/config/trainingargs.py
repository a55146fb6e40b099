"""``run --config FILE`` with the HF Trainer's names: a JSON file as ``TrainingArguments.to_json_string()``
writes it (or any recipe using its names beside the flags', snake or kebab case) drives a run.

Every key of ``TrainingArguments`` (transformers 5) is in exactly one of these tables:

- ``RENAMED``: the name of a flag under the Trainer's name (``learning_rate`` is ``--lr``), its value
  turned into the flag's (``num_train_epochs`` 3.0 is ``--epochs 3``; ``max_steps`` -1 and
  ``max_grad_norm`` 0 are "not set"; ``optim`` adamw_torch / adamw_torch_fused are ``--adamw``
  torch-default / fused; ``fp16``, ``bf16``, ``tf32`` together are ``--precision``; ``use_cpu`` true is
  ``--device cpu``; ``eval_strategy`` steps with ``eval_steps`` is ``--eval-every``);
- ``FIXED``: what would change training but bench has no flag for; accepted only at the value bench
  trains with (``adam_beta1`` 0.9, ``label_smoothing_factor`` 0, ``gradient_checkpointing`` false,
  ...), refused otherwise, naming the key: never silently ignored;
- ``IGNORED``: what does not change what is trained nor how it is timed: the Trainer's own logging,
  saving, in-loop evaluation, Hub pushes and integrations (bench turns them off inside the timed
  steps and measures and evaluates itself), the launcher's fields, and the Trainer's machinery that
  bench sets for every loop as ``--defaults`` says (``average_tokens_across_devices``,
  ``ddp_find_unused_parameters``, ``dataloader_pin_memory``, ``accelerator_config``: the README's
  table of the Trainer's defaults).

A key in none of them is refused as unknown.  One file setting one thing twice (``lr`` and
``learning_rate``; ``max-steps`` and ``max_steps``; ``precision`` and ``bf16``) is refused in one
line naming both keys.
"""

from __future__ import annotations

from bench.config import ConfigError

UNSET = object()  # a Trainer's key whose value means "not set" (max_steps -1): it sets no flag


def _epochs(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise ValueError(f"{v!r}: bench trains whole epochs")
    return int(v)


def _unset_at_or_below(limit):
    return lambda v: None if v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and v <= limit) else v


def _warmup(v):
    if isinstance(v, float) and 0 < v < 1:
        raise ValueError(f"{v!r} is a ratio of the steps; give whole warm-up steps")
    return v


OPTIMS = {"adamw_torch": "torch-default", "adamw_torch_fused": "fused"}
SCHEDULERS = ("linear", "constant", "cosine")


def _choice(table, what):
    def convert(v):
        if v not in table:
            raise ValueError(f"{v!r}: bench runs {what} {', '.join(table)}")
        return table[v] if isinstance(table, dict) else v
    return convert


# Trainer's key -> (bench's flag key, value conversion: None leaves the flag unset).
RENAMED = {
    "output_dir": ("out", None), "learning_rate": ("lr", None), "per_device_train_batch_size": ("batch-size", None),
    "num_train_epochs": ("epochs", _epochs), "max_steps": ("max-steps", _unset_at_or_below(0)),
    "warmup_steps": ("warmup-steps", _warmup), "weight_decay": ("weight-decay", None),
    "gradient_accumulation_steps": ("grad-accum", None), "max_grad_norm": ("max-grad-norm", _unset_at_or_below(0)),
    "seed": ("seed", None), "per_device_eval_batch_size": ("eval-batch-size", None),
    "lr_scheduler_type": ("scheduler", _choice(SCHEDULERS, "the schedules")),
    "optim": ("adamw", _choice(OPTIMS, "the optimizers")),
    "torch_compile": ("compile", lambda v: v or None), "dataloader_num_workers": ("num-workers", None),
    "group_by_length": ("group-by-length", lambda v: v or None), "report_to": ("report-to", lambda v: v or "none"),
    "use_cpu": ("device", lambda v: "cpu" if v else None),
    "train_sampling_strategy": ("group-by-length", _choice({"random": None, "group_by_length": True}, "the samplers")),
}
PRECISION_KEYS = ("fp16", "bf16", "tf32")  # together: --precision
EVAL_KEYS = ("eval_strategy", "eval_steps", "evaluation_strategy")  # together: --eval-every
# What would change training and bench cannot set: accepted at bench's value (also what null means).
FIXED = {
    "lr_scheduler_kwargs": ({}, None), "optim_args": (None, ""), "optim_target_modules": (None,),
    "adam_beta1": (0.9,), "adam_beta2": (0.999,), "adam_epsilon": (1e-8,), "label_smoothing_factor": (0.0,),
    "bf16_full_eval": (False,), "fp16_full_eval": (False,), "activation_checkpointing": (False,),
    "activation_checkpointing_kwargs": (None, {}), "gradient_checkpointing": (False,),
    "gradient_checkpointing_kwargs": (None, {}), "torch_compile_backend": (None,), "torch_compile_mode": (None,),
    "use_liger_kernel": (False,), "liger_kernel_config": (None,), "use_cache": (False,), "neftune_noise_alpha": (None,),
    "torch_empty_cache_steps": (None,), "auto_find_batch_size": (False,), "full_determinism": (False,),
    "data_seed": (None,), "parallelism_config": (None,), "dataloader_drop_last": (False,),
    "dataloader_persistent_workers": (False,), "dataloader_prefetch_factor": (None,),
    "dataloader_multiprocessing_context": (None,), "dataloader_in_order": (True,), "label_names": (None,),
    "ddp_bucket_cap_mb": (None,), "ddp_broadcast_buffers": (None,), "ddp_static_graph": (None,),
    "ddp_backend": (None,), "fsdp": (None, "", []), "fsdp_config": (None, {}), "deepspeed": (None,),
    "debug": ([], ""), "load_best_model_at_end": (False,), "resume_from_checkpoint": (None,),
    "warmup_ratio": (0.0, None),
}
IGNORED = frozenset({
    # the Trainer's logging, reporting and progress (bench measures and reports itself)
    "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
    "include_num_input_tokens_seen", "log_level", "log_level_replica", "disable_tqdm", "run_name", "project",
    "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "skip_memory_metrics", "logging_dir",
    # its in-loop evaluation (bench evaluates after training, and every --eval-every steps)
    "eval_delay", "eval_do_concat_batches", "prediction_loss_only", "eval_on_start", "eval_use_gather_object", "eval_accumulation_steps",
    "include_for_metrics", "batch_eval_metrics", "metric_for_best_model", "greater_is_better",
    # checkpoints and the Hub
    "save_only_model", "save_strategy", "save_steps", "save_on_each_node", "save_total_limit", "enable_jit_checkpoint",
    "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push",
    "hub_revision", "ignore_data_skip", "restore_callback_states_from_checkpoint", "overwrite_output_dir",
    # the data columns the Trainer drops or reads (bench tokenizes and collates itself)
    "remove_unused_columns", "length_column_name",
    # the Trainer's machinery, set for every loop by --defaults (tutorial or native)
    "average_tokens_across_devices", "ddp_find_unused_parameters", "dataloader_pin_memory", "accelerator_config",
    # the launcher's and the example scripts' fields
    "ddp_timeout", "local_rank", "do_train", "do_eval", "do_predict",
})


def kebab(key: str) -> str:
    return key.replace("_", "-")


KNOWN = {kebab(k) for k in (*RENAMED, *PRECISION_KEYS, *EVAL_KEYS, *FIXED, *IGNORED)}


def _precision(given: dict) -> str:
    on = [k for k in PRECISION_KEYS if given.get(k)]
    if len(on) > 1:
        raise ConfigError(f"sets {' and '.join(on)} together: give one precision")
    return on[0] if on else "fp32"


def _eval_every(given: dict):
    strategy = given.get("eval_strategy", given.get("evaluation_strategy")) or "no"
    if strategy == "no":
        return None
    if strategy != "steps" or not isinstance(given.get("eval_steps"), int) or isinstance(given.get("eval_steps"), bool):
        raise ConfigError(f"eval_strategy {strategy!r} with eval_steps {given.get('eval_steps')!r}: bench evaluates "
                          "every K steps (eval_strategy \"steps\" and a whole eval_steps)")
    return given["eval_steps"]


def translate(data: dict, flags: set[str]) -> list[tuple[str, str, object]]:
    """The file's keys as (source key, flag key, value); a key bench ignores gives nothing, one it
    cannot honour is a ConfigError naming it.  ``flags``: the flag keys a file may set."""
    out, grouped = [], {"precision": {}, "eval-every": {}}
    for raw, value in data.items():
        key = kebab(raw)
        snake = raw.replace("-", "_")
        if key in flags and snake not in RENAMED:
            out.append((raw, key, value))
        elif snake in RENAMED:
            flag, convert = RENAMED[snake]
            try:
                value = convert(value) if convert else value
            except ValueError as exc:
                raise ConfigError(f"{raw} = {exc}") from None
            out.append((raw, flag, UNSET if value is None else value))
        elif snake in PRECISION_KEYS:
            grouped["precision"][snake] = value
        elif snake in EVAL_KEYS:
            grouped["eval-every"][snake] = value
        elif snake in FIXED:
            if value not in FIXED[snake] or (isinstance(value, bool) != isinstance(FIXED[snake][0], bool)):
                raise ConfigError(f"{raw} = {value!r}: would change training and bench has no flag for it (it trains "
                                  f"with {FIXED[snake][0]!r}); remove the key or set it so")
        elif snake not in IGNORED:
            raise KeyError(raw)
    if grouped["precision"]:
        out.append(("/".join(grouped["precision"]), "precision", _precision(grouped["precision"])))
    if grouped["eval-every"]:
        every = _eval_every(grouped["eval-every"])
        out.append(("/".join(grouped["eval-every"]), "eval-every", UNSET if every is None else every))
    return out
