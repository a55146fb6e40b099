"""The tutorial's loop rewritten for Accelerate: the same steps, with device placement, mixed
precision, loss scaling and gradient accumulation handed to the ``Accelerator``.

As in accelerate's ``examples/nlp_example.py``: build everything on the CPU, ``prepare`` it, then
``accelerator.backward(loss)`` instead of ``loss.backward()``.  Precision is the Accelerator's
``mixed_precision``, not a hand-written autocast.
"""

import math

import torch
from accelerate import Accelerator
from torch.optim import AdamW
from torch.utils.data import DataLoader
from transformers import get_scheduler

from bench.loop_api import LoopResult
from bench.precision import plan, set_tf32
from loops.common import adamw_impl_kwargs, adamw_param_groups


def train(cell, data, model, meter):
    run = cell.run
    precision = plan(cell.precision)
    # The scheduler steps once per optimizer step, on every process: the schedule is counted in
    # optimizer steps, as in the other loops (by default Accelerate would step it once per process).
    accelerator = Accelerator(cpu=cell.device == "cpu", mixed_precision=precision.accelerate_mixed_precision,
                              gradient_accumulation_steps=run.grad_accum, step_scheduler_with_optimizer=False,
                              dynamo_backend="inductor" if run.compile else "no")
    # Accelerate has no TF32 switch of its own; it is torch's process-wide flag.
    set_tf32(precision.tf32)

    train_dataloader = DataLoader(data.train, sampler=data.sampler, batch_size=run.batch_size,
                                  collate_fn=data.collator, num_workers=run.num_workers, pin_memory=run.pin_memory)
    optimizer = AdamW(adamw_param_groups(model, run.weight_decay), lr=run.lr,
                      betas=(run.adam_beta1, run.adam_beta2), eps=run.adam_eps,
                      weight_decay=run.weight_decay, **adamw_impl_kwargs(run.adamw))

    # prepare() moves the model and batches to the device, wraps forward in autocast, adds the
    # fp16 grad scaler, shards the batches across processes, and wraps the model in DDP.
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)

    # Steps are counted on the prepared (per-process) DataLoader.
    steps_per_epoch = math.ceil(len(train_dataloader) / run.grad_accum)
    num_training_steps = run.max_steps or run.epochs * steps_per_epoch
    num_epochs = math.ceil(num_training_steps / steps_per_epoch)
    lr_scheduler = get_scheduler(run.scheduler, optimizer=optimizer.optimizer, num_warmup_steps=run.warmup_steps,
                                 num_training_steps=num_training_steps)
    # Prepared too, so that a step skipped by the fp16 scaler does not advance the schedule.
    lr_scheduler = accelerator.prepare(lr_scheduler)

    meter.watch(optimizer)
    model.train()
    meter.start()
    step = 0
    for epoch in range(num_epochs):
        # The prepared DataLoader calls the sampler's set_epoch itself, once per pass.
        for batch in train_dataloader:
            with accelerator.accumulate(model):
                outputs = model(**batch)
                accelerator.backward(outputs.loss)
                meter.observe(outputs.loss, batch)
                if accelerator.sync_gradients and run.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), run.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                meter.step()
                step += 1
                if step == num_training_steps:
                    break
    meter.stop()

    return LoopResult(model=accelerator.unwrap_model(model), optimizer=optimizer.optimizer,
                      scheduler=lr_scheduler.scheduler, train_dataloader=train_dataloader,
                      grad_scaler=accelerator.scaler, clip_max_norm=run.max_grad_norm,
                      grad_accum=run.grad_accum,
                      extra={"accelerate_mixed_precision": accelerator.mixed_precision,
                             "accelerate_native_amp": bool(accelerator.native_amp),
                             "compiled": accelerator.state.dynamo_plugin.backend.value.lower() != "no"})
