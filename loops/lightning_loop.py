"""The tutorial's fine-tuning as a ``LightningModule`` run by ``lightning.pytorch.Trainer``: the
training step and the optimizer/schedule in the module, everything else in the Trainer.

The Lightning Trainer's own defaults that the tutorial's loop does not share, each set here
explicitly (and read back into the record):

- a progress bar, a model summary, checkpoints every epoch and a logger writing ``lightning_logs/``
  (all off: the harness measures and reports);
- 2 sanity-check validation steps before training (0: the harness evaluates, after training);
- under DDP it swaps the DataLoader's sampler for a distributed one (``use_distributed_sampler``:
  kept, each rank gets a shard of the shared order);
- gradient clipping is off by default (``gradient_clip_val=None``), as in the tutorial;
- its precision names: ``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``;
- it keeps each submodule's train/eval mode as it finds it (Lightning >= 2.2), and
  ``from_pretrained`` returns a model in eval mode: without ``model.train()`` it would fine-tune a
  pretrained model with dropout off (faster, and not what the other loops train).

Two corrections, so that it trains what the other loops train: the loss of an epoch's short last
accumulation group is averaged over the micro-batches it has (Lightning divides by
``accumulate_grad_batches`` whatever the group's size), and an fp16 step the loss scaler skipped
does not advance the schedule (Lightning steps it after every optimizer step).
"""

import logging
import os
import tempfile

import lightning.pytorch as pl
import torch
from torch.optim import AdamW
from torch.utils.data import DataLoader
from transformers import get_scheduler

from bench.loop_api import LoopResult
from bench.precision import precision_plan, set_tf32
from loops import native
from loops.common import ScaleWatch, accumulation_group, adamw_impl_kwargs, adamw_param_groups, unscales_in_step

LIGHTNING_PRECISION = {"fp32": "32-true", "tf32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


class MRPCModule(pl.LightningModule):
    """What a Lightning user writes: the training step and the optimizer with its schedule, plus the
    two corrections (the clip and the schedule hooks) that make it train what the other loops train."""

    def __init__(self, model, run, meter):
        super().__init__()
        self.model, self.run, self.meter = model, run, meter
        self._scale = None  # the fp16 skip watch, made once the Trainer has made its scaler

    def training_step(self, batch, batch_idx):
        outputs = self.model(**batch)
        self.meter.observe(outputs.loss, batch)
        accum, n_batches = self.run.grad_accum, self.trainer.num_training_batches
        group_size, _ = accumulation_group(batch_idx, n_batches, accum)
        return outputs.loss * (accum / group_size) if group_size < accum else outputs.loss

    def configure_optimizers(self):
        run = self.run
        optimizer = AdamW(adamw_param_groups(self.model, run.weight_decay, run.weight_decay_exempt), lr=run.lr,
                          betas=(run.adam_beta1, run.adam_beta2), eps=run.adam_eps,
                          weight_decay=run.weight_decay, **adamw_impl_kwargs(run.adamw))
        # Lightning counts the optimizer steps it will take (epochs or max_steps, accumulation, ranks).
        scheduler = get_scheduler(run.scheduler, optimizer=optimizer, num_warmup_steps=run.warmup_steps,
                                  num_training_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # What Lightning does by default, keeping the norm for the meter's divergence check.  Lightning
        # unscales the gradients before this hook except for an optimizer that unscales inside its own
        # step (a fused AdamW): those are unscaled here, or the clip would act on gradients 65536 times
        # too large (and record scaled norms).  GradScaler.step then hands the fused kernel the
        # gradients as unscaled, with the inf/nan found here.
        if gradient_clip_val:
            scaler = grad_scaler(self.trainer)
            raw = getattr(optimizer, "_optimizer", optimizer)  # under a LightningOptimizer, the torch one
            if scaler is not None and scaler.is_enabled() and unscales_in_step(raw):
                scaler.unscale_(raw)
            self.meter.observe_grad_norm(torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val))

    def lr_scheduler_step(self, scheduler, metric):
        # Lightning steps the schedule after every optimizer step (interval "step"), right after the
        # scaler's update; an fp16 step the scaler skipped holds it, as in the other loops.
        if self._scale is None:
            self._scale = ScaleWatch(grad_scaler(self.trainer))
        if not self._scale.skipped():
            scheduler.step()


class MeterCallback(pl.Callback):
    """Times the Lightning Trainer's optimizer steps with the harness's meter, from outside the module,
    as the Trainer loop's ``TrainerCallback`` does; and marks the two phase boundaries no hook on the
    model sees: where a batch is fetched and where the update begins."""

    def __init__(self, meter, grad_accum):
        self.meter, self.grad_accum = meter, grad_accum
        self.steps, self.batch_idx, self.wrapped = 0, 0, None

    def on_train_start(self, trainer, pl_module):
        self.wrapped = trainer.strategy.model  # DDP around the module while fitting (unwrapped after)
        self.meter.watch(trainer.optimizers[0])
        self.meter.start()
        self.meter.enter("data")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # Lightning gives no handle on its fetch alone: from one batch's end to the next one's start
        # (its fetcher, the copy to the device, its loop's bookkeeping) is the step's `data` time.
        self.batch_idx = batch_idx
        self.meter.enter("other")

    def on_after_backward(self, trainer, pl_module):
        # The update begins when the backward of a group's last micro-batch is over: under fp16
        # Lightning unscales next, before on_before_optimizer_step, and the unscale is the update's.
        _, last = accumulation_group(self.batch_idx, trainer.num_training_batches, self.grad_accum)
        if last:
            self.meter.enter("optimizer")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # After the optimizer and the scheduler: one meter step per optimizer step taken.
        if trainer.global_step > self.steps:
            self.steps = trainer.global_step
            self.meter.step()
        self.meter.enter("data")

    def on_train_end(self, trainer, pl_module):
        self.meter.stop()


def grad_scaler(trainer):
    """The fp16 loss scaler Lightning's precision plugin made (None under the other precisions)."""
    return getattr(trainer.precision_plugin, "scaler", None)


def train(cell, data, model, meter):
    run = cell.run
    machinery = native.machinery("lightning", run)  # off under --defaults tutorial (loops/native.py)
    # Its start-up banners ("GPU available", tips) say nothing about the run: warnings only.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # under torchrun Lightning reads the ranks itself
    world = int(os.environ.get("WORLD_SIZE", "1"))
    timer = MeterCallback(meter, run.grad_accum)  # the harness's hooks, attached from outside
    trainer = pl.Trainer(
        accelerator=cell.kind.torch_type, devices=local, num_nodes=world // local,
        strategy="ddp" if world > 1 else "auto",
        precision=LIGHTNING_PRECISION[cell.precision],
        max_epochs=run.epochs if not run.max_steps else -1, max_steps=run.max_steps or -1,
        accumulate_grad_batches=run.grad_accum,
        gradient_clip_val=run.max_grad_norm,  # None: no clipping, as in the tutorial
        use_distributed_sampler=True,
        enable_progress_bar=machinery["enable_progress_bar"], enable_model_summary=machinery["enable_model_summary"],
        enable_checkpointing=machinery["enable_checkpointing"], logger=machinery["logger"],
        default_root_dir=tempfile.gettempdir(),  # logs and checkpoints, if on, go to the cell's own folder
        num_sanity_val_steps=0, limit_val_batches=0,
        deterministic=None,  # left to the harness (--parity sets deterministic kernels for every loop)
        callbacks=[timer],
    )
    set_tf32(precision_plan(cell.precision).tf32)  # Lightning has no TF32 switch: torch's process-wide one
    if machinery["model_train"]:
        model.train()  # as the tutorial's loop does: dropout on (Lightning would keep from_pretrained's eval mode)
    module = MRPCModule(torch.compile(model, dynamic=True) if run.compile else model, run, meter)
    train_dataloader = DataLoader(data.train, sampler=data.sampler, batch_size=run.batch_size,
                                  collate_fn=data.collator, num_workers=run.num_workers, pin_memory=run.pin_memory)
    try:
        trainer.fit(module, train_dataloaders=train_dataloader)
    except SystemExit:
        # Lightning turns Ctrl-C into sys.exit(1) after its teardown: it was an interrupt.
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise

    scheduler = trainer.lr_scheduler_configs[0].scheduler
    return LoopResult(model=model, optimizer=trainer.optimizers[0], scheduler=scheduler,
                      train_dataloader=trainer.train_dataloader, grad_scaler=grad_scaler(trainer),
                      clip_max_norm=trainer.gradient_clip_val, grad_accum=trainer.accumulate_grad_batches,
                      wrapped_model=timer.wrapped,
                      # Lightning copies batches with non_blocking on accelerators, not from CPU to CPU.
                      h2d_non_blocking=cell.kind.async_copies,
                      extra={"lightning_precision": trainer.precision,
                             "lightning_use_distributed_sampler": trainer._accelerator_connector.use_distributed_sampler,
                             "lightning_checkpointing": trainer.checkpoint_callback is not None,
                             "lightning_logger": trainer.logger is not None,
                             "lightning_num_sanity_val_steps": trainer.num_sanity_val_steps,
                             "compiled": bool(run.compile)})
