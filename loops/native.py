"""Out of the box: what each loop's library does when its user says nothing (``--defaults native``).

Under ``--defaults tutorial`` (the default) the harness sets every loop to the tutorial's settings,
which is what comparing the loops' machinery needs.  Under ``--defaults native`` each loop runs as
its library (or the script it stands for) sets things up, and ``bench explain`` measures what each
difference is worth.  Two kinds of difference, each declared here with where it comes from:

- ``SETTINGS``: run-config fields any loop can express (clipping, the AdamW implementation, weight
  decay, warm-up, padding, pinned memory).  ``bench explain`` flips them in either loop.
- ``MACHINERY``: the library's own per-run or per-step work, as (native value, the value under
  ``--defaults tutorial``).  Only that loop can express it, so ``bench explain`` flips it back in
  that loop; the other loop has no such knob.  A cell may override single entries through the run
  config's ``loop_options`` (that is how ``bench explain`` flips them).

What stays the user's in both modes: the hyperparameters a user always chooses (``--lr``,
``--batch-size``, ``--epochs``/``--max-steps``, ``--seed``, the precision) and the shared batch order
(``HELD``: every loop draws the same batches, so that losses can be compared step by step).

Nothing here imports torch: the plan reads it.
"""

from __future__ import annotations

DEFAULTS_MODES = ("tutorial", "native")


def _mixed(device: str, precision: str) -> bool:
    return precision in ("bf16", "fp16")


# Each value: a constant, or a function of (device, precision).
SETTINGS: dict[str, dict] = {
    # The tutorial's loop, as the tutorial writes it: its settings are the harness's defaults.
    "manual": {},
    # Fabric sets no training defaults: the loop is the user's code, written as the tutorial's.
    "fabric": {},
    # accelerate examples/nlp_example.py (main @ 16cb6eb, 2026-07): torch's AdamW(model.parameters(), lr)
    # -- weight decay 0.01 (torch's default) on every parameter, biases and LayerNorm included --,
    # get_linear_schedule_with_warmup(num_warmup_steps=100), and pad_to_multiple_of=8 under mixed
    # precision (tensor-core shapes).  Its lr 2e-5 and batch 16 are the script's choices: the user's here.
    "accelerate": {
        "weight_decay": 0.01,
        "weight_decay_exempt": False,
        "warmup_steps": 100,
        "pad_to_multiple_of": lambda device, precision: 8 if _mixed(device, precision) else None,
    },
    # TrainingArguments' defaults (transformers 5): max_grad_norm=1.0, optim="adamw_torch_fused",
    # dataloader_pin_memory=True (which the Trainer turns off without CUDA).
    "trainer": {
        "max_grad_norm": 1.0,
        "adamw": "fused",
        "pin_memory": lambda device, precision: _kind(device).torch_type == "cuda",
    },
    # lightning.pytorch.Trainer: gradient_clip_val=None, the optimizer is the user's: none differ.
    "lightning": {},
}

MACHINERY: dict[str, dict[str, tuple]] = {
    "manual": {},
    "fabric": {},
    "accelerate": {
        # DataLoaderConfiguration(non_blocking=False) by default; the harness asks for asynchronous copies.
        "non_blocking": (False, True),
    },
    "trainer": {
        # Logs every 500 steps and saves a checkpoint every 500 steps (to output_dir), draws its own
        # tqdm bar; the harness measures and evaluates itself and turns them off.
        "logging_strategy": ("steps", "no"),
        "save_strategy": ("steps", "no"),
        "disable_tqdm": (False, True),
        # Under DDP: loss scaled by the token count across devices; unused-parameter search on.
        "average_tokens_across_devices": (True, False),
        "ddp_find_unused_parameters": (None, False),
        "non_blocking": (False, True),
        # The Trainer infers from BERT's **kwargs that the model divides by num_items_in_batch (it
        # does not): under --grad-accum N the gradient is N times the mean.  No effect at N = 1.
        "model_accepts_loss_kwargs": ("inferred", False),
        # Tests every micro-batch's loss for nan/inf for its logs (an `if` on a device tensor: a sync
        # per micro-batch on a GPU, even with logging off); the harness's meter checks divergence itself.
        "logging_nan_inf_filter": (True, False),
    },
    "lightning": {
        # A progress bar, a model summary, a checkpoint every epoch and a logger writing to
        # default_root_dir; and the model's train/eval mode left as from_pretrained returns it
        # (eval: dropout off) where the tutorial's loop calls model.train().
        "enable_progress_bar": (True, False),
        "enable_model_summary": (True, False),
        "enable_checkpointing": (True, False),
        "logger": (True, False),
        "model_train": (False, True),
    },
}

# Machinery that changes the gradients, not only the time a step takes: where it is not at the
# harness's setting, the loop trains something other than the tutorial's loop (``--parity`` then
# reports "settings differ" instead of asserting agreement).
TRAINING_MACHINERY = {"model_train", "model_accepts_loss_kwargs", "average_tokens_across_devices"}


# Machinery that cannot change anything in some cells, and why: `bench explain` lists it, unflipped.
def inert(loop: str, key: str, device: str, world_size: int, grad_accum: int) -> str | None:
    """Why flipping this machinery entry could change nothing in such a cell, or None."""
    if key in ("average_tokens_across_devices", "ddp_find_unused_parameters") and world_size == 1:
        return "acts only under DDP; this cell runs one process"
    if key == "non_blocking" and _kind(device).host:
        return "acts only on host-to-device copies; the CPU has none"
    if key == "model_accepts_loss_kwargs" and grad_accum == 1:
        return "acts only under gradient accumulation; this cell takes one micro-batch a step"
    return None


HELD = {
    "batch order": ((), "every loop draws the harness's shared order (the Trainer's own RandomSampler and "
                        "the example's shuffle=True would each draw another), so step losses can be compared"),
    "drop_last": (("accelerate",), "accelerate's example drops the epoch's last short batch (drop_last=True); "
                                   "bench keeps every pair, so all loops take the same optimizer steps"),
}


def held(loops: tuple[str, ...]) -> dict[str, str]:
    """What bench holds fixed between these loops: the entries of HELD for all loops or for one of them."""
    return {k: why for k, (only, why) in HELD.items() if not only or set(only) & set(loops)}


def settings_for(loop: str, device: str, precision: str) -> dict:
    """The run-config fields ``--defaults native`` sets for this loop on this device and precision."""
    out = {}
    for key, value in SETTINGS.get(loop, {}).items():
        out[key] = value(device, precision) if callable(value) else value
    return out


def machinery(loop: str, run) -> dict:
    """The library machinery a loop runs with: native or the harness's, single entries overridden
    by the run config's ``loop_options``."""
    table = MACHINERY.get(loop, {})
    native = getattr(run, "defaults", "tutorial") == "native"
    out = {key: (values[0] if native else values[1]) for key, values in table.items()}
    for key, value in getattr(run, "loop_options", ()) or ():
        if key not in table:
            raise KeyError(f"{loop} has no machinery option {key!r} (it has: {', '.join(table) or 'none'})")
        out[key] = value
    return out


def _kind(device: str):
    """A device's entry (``bench/devices.py``), by a record's or a cell's device string."""
    from bench.devices import device as device_kind

    return device_kind(device)
