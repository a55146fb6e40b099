"""The tutorial's loop written for Lightning Fabric: the same steps as the manual loop, with device
placement, mixed precision, loss scaling and DDP handed to ``Fabric``, as in Fabric's own
"convert your PyTorch code" guide: ``Fabric(...)``, ``fabric.setup(model, optimizer)``,
``fabric.setup_dataloaders(...)``, ``fabric.backward(loss)``.

What Fabric decides unless told, and is told here: its precision names (``"32-true"``,
``"bf16-mixed"``, ``"16-mixed"``); under DDP it swaps the DataLoader's sampler for a distributed
wrapper of it (kept: each rank gets a shard of the shared order).
"""

import math
import os

import torch
from lightning.fabric import Fabric
from torch.optim import AdamW
from torch.utils.data import DataLoader
from transformers import get_scheduler

from bench.loop_api import LoopResult
from bench.precision import precision_plan, set_tf32
from loops.common import ScaleWatch, accumulation_group, adamw_impl_kwargs, adamw_param_groups, unscales_in_step

FABRIC_PRECISION = {"fp32": "32-true", "tf32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


def clip_gradients(fabric, model, optimizer, scaler, max_norm):
    """``fabric.clip_gradients``, with the two cases it gets wrong for this harness.  It raises on a
    non-finite norm by default (``error_if_nonfinite=True``): under fp16 that is the overflow step the
    scaler exists to skip, and anywhere else it is divergence, which the meter records from the norm
    returned.  And it refuses to clip for an optimizer that unscales inside its own step (a fused
    AdamW under fp16): the loop unscales through the scaler itself, as the manual loop does, and
    ``GradScaler.step`` then hands the fused kernel gradients marked as unscaled."""
    inner = getattr(optimizer, "optimizer", optimizer)
    if scaler is not None and scaler.is_enabled() and unscales_in_step(inner):
        scaler.unscale_(inner)
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, error_if_nonfinite=False)
    return fabric.clip_gradients(model, optimizer, max_norm=max_norm, error_if_nonfinite=False)


def train(cell, data, model, meter):
    run = cell.run
    precision = precision_plan(cell.precision)
    # Under torchrun Fabric reads the ranks from the environment; it must be told the same shape.
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    fabric = Fabric(accelerator=cell.kind.torch_type, devices=local, num_nodes=world // local,
                    strategy="ddp" if world > 1 else "auto", precision=FABRIC_PRECISION[cell.precision])
    fabric.launch()
    set_tf32(precision.tf32)  # Fabric has no TF32 switch: torch's process-wide one

    train_dataloader = DataLoader(data.train, sampler=data.sampler, batch_size=run.batch_size,
                                  collate_fn=data.collator, num_workers=run.num_workers, pin_memory=run.pin_memory)
    optimizer = AdamW(adamw_param_groups(model, run.weight_decay, run.weight_decay_exempt), lr=run.lr,
                      betas=(run.adam_beta1, run.adam_beta2), eps=run.adam_eps,
                      weight_decay=run.weight_decay, **adamw_impl_kwargs(run.adamw))
    # setup() moves the model, wraps it for DDP and mixed precision; the DataLoader's batches are
    # moved to the device as they come.
    trained = model
    if run.compile:  # before setup, as Fabric asks; dynamic dims: every batch has its own length
        model = torch.compile(model, dynamic=True)
    model, optimizer = fabric.setup(model, optimizer)
    train_dataloader = fabric.setup_dataloaders(train_dataloader)

    steps_per_epoch = math.ceil(len(train_dataloader) / run.grad_accum)
    num_training_steps = run.max_steps or run.epochs * steps_per_epoch
    num_epochs = math.ceil(num_training_steps / steps_per_epoch)
    lr_scheduler = get_scheduler(run.scheduler, optimizer=optimizer.optimizer, num_warmup_steps=run.warmup_steps,
                                 num_training_steps=num_training_steps)
    scaler = getattr(fabric._precision, "scaler", None)  # the fp16 loss scaler, if the precision has one
    scale = ScaleWatch(scaler)  # fp16 skips, at one read of the scale per step

    meter.watch(optimizer)
    model.train()
    meter.start()
    step = 0
    for epoch in range(num_epochs):
        # Fabric's DataLoader calls the sampler's set_epoch itself, once per pass.
        n_batches = len(train_dataloader)
        # meter.batches: the wait for each batch (Fabric's loader also copies it to the device).
        for i, batch in enumerate(meter.batches(train_dataloader)):
            group_size, last = accumulation_group(i, n_batches, run.grad_accum)
            # No gradient all-reduce on the micro-batches that only accumulate.
            with fabric.no_backward_sync(model, enabled=not last):
                outputs = model(**batch)
                fabric.backward(outputs.loss / group_size)
            meter.observe(outputs.loss, batch)
            if not last:
                continue
            meter.enter("optimizer")  # unscale, clip, step, schedule, zero_grad
            if run.max_grad_norm:
                meter.observe_grad_norm(clip_gradients(fabric, model, optimizer, scaler, run.max_grad_norm))
            optimizer.step()
            if not scale.skipped():  # an fp16 step the scaler skipped holds the schedule
                lr_scheduler.step()
            optimizer.zero_grad()
            meter.step()
            step += 1
            if step == num_training_steps:
                break
        if step == num_training_steps:
            break
    meter.stop()

    return LoopResult(model=trained, optimizer=optimizer.optimizer, scheduler=lr_scheduler,
                      train_dataloader=train_dataloader, grad_scaler=scaler, clip_max_norm=run.max_grad_norm,
                      grad_accum=run.grad_accum, wrapped_model=model._forward_module,
                      # Fabric copies batches with non_blocking on accelerators, not from CPU to CPU.
                      h2d_non_blocking=cell.kind.async_copies,
                      extra={"fabric_precision": FABRIC_PRECISION[cell.precision],
                             "fabric_strategy": type(fabric.strategy).__name__,
                             "compiled": bool(run.compile)})
