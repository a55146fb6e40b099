"""The tutorial's third way: ``TrainingArguments`` + ``Trainer``.

Every ``TrainingArguments`` default that the tutorial's manual loop does not share is set here,
explicitly, from the run config, so that the loops train the same thing:

- ``max_grad_norm`` (default 1.0: the Trainer clips, the tutorial does not);
- ``optim`` (default ``adamw_torch_fused``: the tutorial uses plain ``AdamW``);
- ``dataloader_pin_memory`` (default True: the tutorial's DataLoader does not pin);
- ``average_tokens_across_devices`` (default True: BERT's ``forward`` takes ``**kwargs``, so under DDP
  the Trainer multiplies its mean loss by the number of processes, in place, doubling the gradient
  that clipping sees on 2 processes; the other loops backpropagate the plain mean);
- reporting, in-loop evaluation, checkpoints and logging off: the harness measures and evaluates.

Per-step work the Trainer still does, recorded and shown in the report: the total gradient norm
(even with clipping off); under ``--defaults native`` also a nan/inf check of each loss for its logs
(``logging_nan_inf_filter``, a device sync per micro-batch on GPUs; off under ``--defaults tutorial``,
where logging is off and the harness's meter checks divergence).

Additions to the stock Trainer, in a small subclass: batches come from the harness's shared
sampler, each batch's loss goes to the meter, and the meter is told where the batches are fetched
and where the update begins (its split of each step); a callback times the steps.
"""

import tempfile

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from bench.loop_api import LoopResult, UnsupportedSetting
from loops import native
from bench.precision import precision_plan, set_tf32
from loops.common import ScaleWatch

_OPTIM = {"torch-default": "adamw_torch", "fused": "adamw_torch_fused"}


class MeterCallback(TrainerCallback):
    """Times the Trainer's optimizer steps with the harness's meter, as the other loops do."""

    def __init__(self, meter):
        self.meter = meter

    def on_train_begin(self, args, state, control, optimizer=None, train_dataloader=None, **kwargs):
        self.train_dataloader = train_dataloader  # kept so the harness can read its sampler
        self.meter.watch(optimizer)
        self.meter.start()

    def on_step_end(self, args, state, control, **kwargs):
        self.meter.step()

    def on_train_end(self, args, state, control, **kwargs):
        self.meter.stop()


class ScalerSkipCallback(TrainerCallback):
    """Makes the Trainer hold its schedule on an fp16 step the loss scaler skipped inside a fused
    AdamW: the Trainer asks Accelerate whether the step was skipped, and Accelerate only knows when
    ``optimizer.step`` was not called, which a fused optimizer always is."""

    def __init__(self, scaler):
        self.scale = ScaleWatch(scaler)  # one read of the scale per step

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self.scale.skipped() and hasattr(optimizer, "_is_overflow"):
            optimizer._is_overflow = True  # what AcceleratedOptimizer.step_was_skipped reports


class SharedOrderTrainer(Trainer):
    def __init__(self, *args, sampler, meter, **kwargs):
        super().__init__(*args, **kwargs)
        self._shared_sampler, self._meter = sampler, meter

    def _get_train_sampler(self, train_dataset=None):
        return self._shared_sampler  # the same batches, in the same order, as the other loops

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            self._meter.observe(outputs.loss, inputs)
        return (loss, outputs) if return_outputs else loss

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # All the micro-batches of one optimizer step, fetched up front: the step's `data` time.
        self._meter.enter("data")
        try:
            return super().get_batch_samples(epoch_iterator, num_batches, device)
        finally:
            self._meter.enter("other")

    def _clip_grad_norm(self, model):
        self._meter.enter("optimizer")  # the update begins: clip, step, schedule, zero_grad
        return super()._clip_grad_norm(model)

    def _get_grad_norm(self, model, grad_norm=None):
        # The norm the Trainer computes every step anyway: the meter checks it for nan/inf.
        self._meter.enter("optimizer")  # without clipping, the update begins here
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        self._meter.observe_grad_norm(grad_norm)
        return grad_norm


def training_arguments(cell, output_dir):
    run = cell.run
    precision = precision_plan(cell.precision)
    if not run.weight_decay_exempt:
        raise UnsupportedSetting("the Trainer always exempts biases and LayerNorm weights from weight decay")
    # The Trainer's own machinery: off under --defaults tutorial, its defaults under native (loops/native.py).
    machinery = native.machinery("trainer", run)
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=run.batch_size,
        learning_rate=run.lr,
        num_train_epochs=run.epochs,
        max_steps=run.max_steps or -1,
        lr_scheduler_type=run.scheduler,
        warmup_steps=run.warmup_steps,
        weight_decay=run.weight_decay,
        adam_beta1=run.adam_beta1,
        adam_beta2=run.adam_beta2,
        adam_epsilon=run.adam_eps,
        max_grad_norm=run.max_grad_norm or 0.0,  # 0 turns the Trainer's default clipping (1.0) off
        optim=_OPTIM.get(run.adamw, "adamw_torch"),
        gradient_accumulation_steps=run.grad_accum,
        seed=run.seed,
        bf16=precision.autocast_dtype == "bfloat16",
        fp16=precision.autocast_dtype == "float16",
        tf32=None,  # the harness sets TF32 itself, through torch's one API (see train below)
        # default None: True for a model without gradient checkpointing
        ddp_find_unused_parameters=machinery["ddp_find_unused_parameters"],
        accelerator_config={"non_blocking": machinery["non_blocking"]},  # asynchronous copies of pinned batches
        use_cpu=cell.kind.host,
        dataloader_pin_memory=run.pin_memory,
        average_tokens_across_devices=machinery["average_tokens_across_devices"],
        dataloader_num_workers=run.num_workers,
        torch_compile=run.compile,
        report_to="none",
        eval_strategy="no",
        save_strategy=machinery["save_strategy"],
        logging_strategy=machinery["logging_strategy"],
        logging_nan_inf_filter=machinery["logging_nan_inf_filter"],  # default True: a sync per micro-batch on GPUs
        disable_tqdm=machinery["disable_tqdm"],  # the harness draws one progress bar for every loop
    )
    return one_gpu_per_process(args)


def one_gpu_per_process(args):
    """A single-process cell trains on one GPU, as every other loop does.  Not distributed, the
    Trainer sets ``n_gpu = torch.cuda.device_count()`` and wraps the model in ``nn.DataParallel``
    on a host with several GPUs: 8 x n_gpu pairs a step and a loss per replica.  The sweep pins a
    cell's process to one GPU (``bench.sweep.driver.single_process_devices``); this holds in-process too."""
    if args.n_gpu > 1:
        args._n_gpu = 1  # what TrainingArguments itself sets under DDP and for model parallelism
    return args


def train(cell, data, model, meter):
    run = cell.run
    # "for-loop" and "foreach" have no `optim` name: pass the class and its arguments through the
    # Trainer's own hook, which still builds the parameter groups as usual.
    optimizer_cls_and_kwargs = None
    if run.adamw in ("for-loop", "foreach"):
        optimizer_cls_and_kwargs = (torch.optim.AdamW, {
            "lr": run.lr, "betas": (run.adam_beta1, run.adam_beta2), "eps": run.adam_eps,
            "foreach": run.adamw == "foreach"})
    callback = MeterCallback(meter)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as output_dir:
        trainer = SharedOrderTrainer(
            model=model,
            args=training_arguments(cell, output_dir),
            train_dataset=data.train,
            data_collator=data.collator,
            processing_class=data.tokenizer,
            callbacks=[callback],
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            sampler=data.sampler,
            meter=meter,
        )
        # With tqdm off the Trainer prints its own end-of-run speed figures, which include warm-up
        # and are not the harness's measure; the record is the one place numbers come from.
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(ScalerSkipCallback(trainer.accelerator.scaler))
        # BERT's forward takes **kwargs, so the Trainer believes the model divides its loss by the
        # number of labels in the whole accumulated batch (num_items_in_batch) and skips its own
        # division by the accumulation steps; BERT's loss is a plain per-batch mean, so with
        # --grad-accum N every gradient would be N times the mean (and the Trainer's clipping N
        # times tighter).  Telling it the truth makes it average the micro-batches of each step,
        # the short last group of an epoch included, as the other loops do.
        if native.machinery("trainer", run)["model_accepts_loss_kwargs"] is False:
            trainer.model_accepts_loss_kwargs = False
        # The Accelerator the Trainer built turns TF32 on for a compiled fp32 model on CUDA, and
        # TrainingArguments(torch_compile=True) does too: the precision asked for is set again.
        set_tf32(precision_plan(cell.precision).tf32)
        if run.compile:  # as in the other loops: batch and sequence dims dynamic, no recompiles
            trainer.accelerator.state.dynamo_plugin.dynamic = True
        trainer.train()
    return read_back(trainer, callback.train_dataloader)


def read_back(trainer, train_dataloader):
    """The live objects and the settings the Trainer ran with, read from it after training (not
    from what was asked), for the harness's record."""
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # unwrap AcceleratedOptimizer
    scheduler = getattr(trainer.lr_scheduler, "scheduler", trainer.lr_scheduler)
    args = trainer.args
    extra_work = []
    if callable(getattr(trainer, "_get_grad_norm", None)):  # transformers 5, for its logs
        extra_work.append("computes the total gradient norm every step, clipping on or off")
    if args.logging_nan_inf_filter:
        extra_work.append("checks every loss for nan/inf (`logging_nan_inf_filter`; a device sync per micro-batch on GPUs)")
    return LoopResult(model=trainer.model, optimizer=optimizer, scheduler=scheduler,
                      train_dataloader=train_dataloader, grad_scaler=trainer.accelerator.scaler,
                      wrapped_model=trainer.model_wrapped,
                      h2d_non_blocking=bool(getattr(train_dataloader, "_non_blocking", False)),
                      clip_max_norm=args.max_grad_norm if args.max_grad_norm > 0 else None,
                      grad_accum=args.gradient_accumulation_steps, extra_work=extra_work,
                      extra={"trainer_optim": str(args.optim.value if hasattr(args.optim, "value") else args.optim),
                             "trainer_logging_nan_inf_filter": args.logging_nan_inf_filter,
                             "trainer_grad_norm_each_step": bool(extra_work and "gradient norm" in extra_work[0]),
                             "trainer_average_tokens_across_devices": args.average_tokens_across_devices,
                             "trainer_model_accepts_loss_kwargs": trainer.model_accepts_loss_kwargs,
                             # Where the labels are found: from the model's forward, the base model's
                             # under a PeftModel (the Trainer unwraps it to look).
                             "trainer_label_names": list(trainer.label_names),
                             "trainer_logging_strategy": str(getattr(args.logging_strategy, "value", args.logging_strategy)),
                             "trainer_save_strategy": str(getattr(args.save_strategy, "value", args.save_strategy)),
                             "trainer_disable_tqdm": args.disable_tqdm,
                             "compiled": bool(args.torch_compile),
                             "accelerate_mixed_precision": trainer.accelerator.mixed_precision})
