"""The tutorial's hand-written PyTorch loop: DataLoader, AdamW, a linear schedule, and
forward / backward / step / zero_grad in plain sight.

Changes from the tutorial, each needed to compare it fairly with the other two loops:
- ``torch.optim.AdamW`` (``transformers.AdamW`` is gone in transformers 5);
- batches come in the harness's shared order (``sampler=``) instead of ``shuffle=True``;
- mixed precision through ``torch.autocast`` and, for fp16, a ``GradScaler``;
- optional clipping / accumulation, off by default as in the tutorial, there so that a config that
  asks for them trains the same thing in every loop;
- the harness's meter is called once per optimizer step, and told where the batches come from and
  where the update begins (for its split of each step into data/forward/backward/optimizer/other);
- under torchrun (WORLD_SIZE > 1): the classic DDP recipe, ``init_process_group`` + ``DistributedDataParallel``
  + ``DistributedSampler``.
"""

import contextlib
import math
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim import AdamW
from torch.utils.data import DataLoader, DistributedSampler
from transformers import get_scheduler

from bench.cell.dist import backend, torch_device
from bench.loop_api import LoopResult, UnsupportedSetting
from bench.precision import precision_plan, set_tf32
from loops.common import ScaleWatch, accumulation_group, adamw_impl_kwargs, adamw_param_groups


def train(cell, data, model, meter):
    run = cell.run
    precision = precision_plan(cell.precision)
    # This rank's device: under DDP on GPUs, cuda:LOCAL_RANK (the harness made it the current one).
    device = torch.device(torch_device(cell.device))
    sampler = data.sampler
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:  # launched by torchrun: one process per device, gradients all-reduced by DDP
        if not dist.is_initialized():
            dist.init_process_group(backend(cell.device))  # nccl on GPUs, gloo on the CPU
        # Each rank takes its own shard of a shuffle seeded like the single-process one.
        if run.group_by_length:
            raise UnsupportedSetting("--group-by-length: the manual loop's DistributedSampler has no length grouping")
        sampler = DistributedSampler(data.train, shuffle=True, seed=run.seed)

    # Padding happens per batch in the collator (to the longest pair in the batch), which is why
    # the DataLoader gets the collator and not a fixed-length dataset.
    train_dataloader = DataLoader(data.train, sampler=sampler, batch_size=run.batch_size, collate_fn=data.collator,
                                  num_workers=run.num_workers, pin_memory=run.pin_memory)

    model.to(device)
    if distributed:
        # Every parameter gets a gradient in this model: no per-step search of the autograd graph.
        model = DistributedDataParallel(model, device_ids=None if device.index is None else [device.index],
                                        find_unused_parameters=False)
    trained = model.module if distributed else model
    wrapped = model
    if run.compile:
        # The compiled wrapper shares the parameters it trains.  Batch and sequence dims are dynamic:
        # every batch has its own length (and the epoch's last batch its own size), which would
        # otherwise recompile inside the timed steps.
        model = torch.compile(model, dynamic=True)
    optimizer = AdamW(adamw_param_groups(trained, run.weight_decay, run.weight_decay_exempt), lr=run.lr,
                      betas=(run.adam_beta1, run.adam_beta2), eps=run.adam_eps,
                      weight_decay=run.weight_decay, **adamw_impl_kwargs(run.adamw))

    # The schedule decays over the optimizer steps actually taken (--max-steps cuts it short).
    steps_per_epoch = math.ceil(len(train_dataloader) / run.grad_accum)
    num_training_steps = run.max_steps or run.epochs * steps_per_epoch
    num_epochs = math.ceil(num_training_steps / steps_per_epoch)
    lr_scheduler = get_scheduler(run.scheduler, optimizer=optimizer, num_warmup_steps=run.warmup_steps,
                                 num_training_steps=num_training_steps)

    # fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 and fp32 do not,
    # and a disabled scaler is a pass-through.
    set_tf32(precision.tf32)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.grad_scaler)
    autocast_dtype = precision.torch_dtype()
    scale = ScaleWatch(scaler)  # fp16 skips, at one read of the scale per step

    meter.watch(optimizer)
    model.train()
    meter.start()
    step = 0
    no_sync_micro_batches = 0  # under DDP: micro-batches whose backward skipped the all-reduce
    for epoch in range(num_epochs):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same one in every loop
        n_batches = len(train_dataloader)
        # Asynchronous host-to-device copies: from pinned memory (--pin-memory) they overlap compute.
        batches = ({k: v.to(device, non_blocking=True) for k, v in b.items()} for b in train_dataloader)
        # meter.batches: the wait for each batch, and its copy, is the step's `data` time.
        for i, batch in enumerate(meter.batches(batches)):
            # Average over the micro-batches of this step (the last group of an epoch may be short).
            group_size, last = accumulation_group(i, n_batches, run.grad_accum)
            # Under DDP, the micro-batches that only accumulate skip the gradient all-reduce (forward
            # and backward inside no_sync), as the other four loops do; the group's last one reduces
            # the sum of all of them.
            accumulate_only = distributed and not last
            with wrapped.no_sync() if accumulate_only else contextlib.nullcontext():
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    outputs = model(**batch)
                scaler.scale(outputs.loss / group_size).backward()
            no_sync_micro_batches += accumulate_only
            meter.observe(outputs.loss, batch)
            if not last:
                continue
            meter.enter("optimizer")  # unscale, clip, step, schedule, zero_grad
            if run.max_grad_norm:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                meter.observe_grad_norm(torch.nn.utils.clip_grad_norm_(trained.parameters(), run.max_grad_norm))
            scaler.step(optimizer)
            scaler.update()
            # An fp16 step skipped for inf/nan gradients must not advance the schedule either.
            if not scale.skipped():
                lr_scheduler.step()
            optimizer.zero_grad()
            meter.step()
            step += 1
            if step == num_training_steps:
                break
    meter.stop()

    extra = {"compiled": type(model).__name__ == "OptimizedModule"}
    if distributed:
        extra["ddp_no_sync_micro_batches"] = no_sync_micro_batches
    return LoopResult(model=trained, optimizer=optimizer, scheduler=lr_scheduler,
                      train_dataloader=train_dataloader, grad_scaler=scaler,
                      clip_max_norm=run.max_grad_norm, grad_accum=run.grad_accum, wrapped_model=wrapped,
                      h2d_non_blocking=True, extra=extra)
