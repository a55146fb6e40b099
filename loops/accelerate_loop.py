"""The tutorial's loop rewritten for Accelerate: the same steps, with device placement, mixed
precision, loss scaling and gradient accumulation handed to the ``Accelerator``.

As in accelerate's ``examples/nlp_example.py``: build everything on the CPU, ``prepare`` it, then
``accelerator.backward(loss)`` instead of ``loss.backward()``.  Precision is the Accelerator's
``mixed_precision``, not a hand-written autocast.
"""

import math

from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import DistributedDataParallelKwargs, TorchDynamoPlugin
from torch.optim import AdamW
from torch.utils.data import DataLoader
from transformers import get_scheduler

from bench.loop_api import LoopResult
from bench.precision import precision_plan, set_tf32
from loops import native
from loops.common import ScaleWatch, accumulation_group, adamw_impl_kwargs, adamw_param_groups


def train(cell, data, model, meter):
    run = cell.run
    precision = precision_plan(cell.precision)
    machinery = native.machinery("accelerate", run)  # the library's own knobs (loops/native.py)
    # Batch and sequence dims dynamic under --compile: every batch has its own length, and the
    # epoch's last batch its own size; static shapes would recompile inside the timed steps.
    # non_blocking: host-to-device copies overlap compute when the batches are pinned.
    accelerator = Accelerator(cpu=cell.kind.host, mixed_precision=precision.accelerate_mixed_precision,
                              gradient_accumulation_steps=run.grad_accum,
                              dataloader_config=DataLoaderConfiguration(non_blocking=machinery["non_blocking"]),
                              dynamo_plugin=TorchDynamoPlugin(backend="inductor" if run.compile else "no",
                                                              dynamic=True if run.compile else None),
                              # Every parameter gets a gradient in this model: no per-step graph search.
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
    # Accelerate has no TF32 switch of its own; it is torch's process-wide flag.
    set_tf32(precision.tf32)

    train_dataloader = DataLoader(data.train, sampler=data.sampler, batch_size=run.batch_size,
                                  collate_fn=data.collator, num_workers=run.num_workers, pin_memory=run.pin_memory)
    optimizer = AdamW(adamw_param_groups(model, run.weight_decay, run.weight_decay_exempt), lr=run.lr,
                      betas=(run.adam_beta1, run.adam_beta2), eps=run.adam_eps,
                      weight_decay=run.weight_decay, **adamw_impl_kwargs(run.adamw))

    # prepare() moves the model and batches to the device, wraps forward in autocast, adds the
    # fp16 grad scaler, shards the batches across processes, and wraps the model in DDP.
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)

    # Steps are counted on the prepared (per-process) DataLoader.
    steps_per_epoch = math.ceil(len(train_dataloader) / run.grad_accum)
    num_training_steps = run.max_steps or run.epochs * steps_per_epoch
    num_epochs = math.ceil(num_training_steps / steps_per_epoch)
    # Not prepared: a prepared scheduler steps once per process per optimizer step (the schedule
    # would run world-size times too fast, since the steps above are already counted per process),
    # and it cannot see an fp16 skip made inside a fused AdamW.  Stepped by hand, below, once per
    # optimizer step that was taken.
    lr_scheduler = get_scheduler(run.scheduler, optimizer=optimizer.optimizer, num_warmup_steps=run.warmup_steps,
                                 num_training_steps=num_training_steps)

    scale = ScaleWatch(accelerator.scaler)  # fp16 skips, at one read of the scale per step
    meter.watch(optimizer)
    model.train()
    meter.start()
    step = 0
    for epoch in range(num_epochs):
        # The prepared DataLoader calls the sampler's set_epoch itself, once per pass.
        n_batches = len(train_dataloader)
        # meter.batches: the wait for each batch (the prepared loader also copies it to the device).
        for i, batch in enumerate(meter.batches(train_dataloader)):
            with accelerator.accumulate(model):
                outputs = model(**batch)
                # backward() divides by gradient_accumulation_steps, also in an epoch's last group
                # when it is shorter; like the other loops, average over the micro-batches it has.
                group_size, _ = accumulation_group(i, n_batches, run.grad_accum)
                accelerator.backward(outputs.loss * (run.grad_accum / group_size) if group_size < run.grad_accum
                                     else outputs.loss)
                meter.observe(outputs.loss, batch)
                if accelerator.sync_gradients:
                    meter.enter("optimizer")  # unscale, clip, step, schedule, zero_grad
                if accelerator.sync_gradients and run.max_grad_norm:
                    meter.observe_grad_norm(accelerator.clip_grad_norm_(model.parameters(), run.max_grad_norm))
                optimizer.step()  # a no-op on the micro-batches that only accumulate
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                if not scale.skipped():
                    lr_scheduler.step()
                meter.step()
                step += 1
                if step == num_training_steps:
                    break
    meter.stop()

    # Evaluated without the compile wrapper, as the other loops are.
    return LoopResult(model=accelerator.unwrap_model(model, keep_torch_compile=False), optimizer=optimizer.optimizer,
                      scheduler=lr_scheduler, train_dataloader=train_dataloader, wrapped_model=model,
                      h2d_non_blocking=bool(getattr(train_dataloader, "_non_blocking", False)),
                      grad_scaler=accelerator.scaler, clip_max_norm=run.max_grad_norm,
                      grad_accum=run.grad_accum,
                      extra={"accelerate_mixed_precision": accelerator.mixed_precision,
                             "accelerate_native_amp": bool(accelerator.native_amp),
                             "compiled": accelerator.state.dynamo_plugin.backend.value.lower() != "no"})
