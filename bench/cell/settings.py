"""The settings actually in force, read from the live objects each loop trained with (optimizer,
scheduler, dataloader, scaler, model) and from a probe inside the model, never from the config.

This is what makes a hidden default visible: if the Trainer clipped gradients, used a fused
optimizer or ran without autocast, it shows here whatever the config said.
"""

from __future__ import annotations


class PrecisionProbe:
    """A forward hook on the model's last layer that records, during the first training forward,
    whether autocast was on and which dtype the layer computed in."""

    def __init__(self, model, device_type: str):
        import torch

        self.device_type = device_type
        self.seen: dict | None = None
        self._model = model
        # The output Linear: BERT's ``classifier`` is one; RoBERTa's and ELECTRA's ``classifier`` is a
        # head module (dense, dropout, out_proj) whose last Linear computes the logits.
        # Under LoRA, PEFT keeps the head's original frozen beside the copy that trains and runs:
        # the last Linear whose weight trains.
        head = getattr(model, "classifier", None)
        head = head if isinstance(head, torch.nn.Module) else model
        linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
        layer = ([m for m in linears if m.weight.requires_grad] or linears)[-1]
        self._handle = layer.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        import torch

        if self.seen is None and module.training:
            self.seen = {
                "autocast_enabled": bool(torch.is_autocast_enabled(self.device_type)),
                "autocast_dtype": str(torch.get_autocast_dtype(self.device_type)).replace("torch.", "")
                if torch.is_autocast_enabled(self.device_type) else None,
                "compute_dtype": str(output.dtype).replace("torch.", ""),
                "param_dtype": str(module.weight.dtype).replace("torch.", ""),
                # every trainable parameter's, not only the head's: a model loaded in its checkpoint's
                # fp16 would train fp16 weights under any label (precision_mismatch refuses it)
                "param_dtypes": trainable_dtypes(self._model),
                "train_mode": module.training,
            }

    def remove(self) -> None:
        self._handle.remove()


def _sampler_of(dataloader):
    """The sampler a (possibly Accelerate-prepared) DataLoader draws indices from."""
    for path in (("batch_sampler", "sampler"), ("batch_sampler", "batch_sampler", "sampler"), ("sampler",)):
        obj = dataloader
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and not type(obj).__name__.startswith(("SequentialSampler", "BatchSampler")):
            return obj
    return None


def _schedule(scheduler) -> dict:
    out = {"class": type(scheduler).__name__}
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas:
        fn = lambdas[0]
        keywords = getattr(fn, "keywords", {}) or {}
        out["lambda"] = getattr(getattr(fn, "func", fn), "__name__", str(fn))
        for key in ("num_warmup_steps", "num_training_steps", "num_cycles"):
            if key in keywords:
                out[key] = keywords[key]
    return out


def _decay_summary(optimizer) -> dict:
    out: dict = {}
    for g in optimizer.param_groups:
        key = str(float(g.get("weight_decay", 0.0)))
        out[key] = out.get(key, 0) + sum(p.numel() for p in g["params"])
    return dict(sorted(out.items()))


def _ddp_find_unused(wrapped) -> bool | None:
    """``find_unused_parameters`` of the DDP wrapper that trained, None when not under DDP.  When
    True, DDP walks the autograd graph after every forward to find parameters without gradients."""
    from torch.nn.parallel import DistributedDataParallel

    m = wrapped
    for _ in range(4):  # compile wrapper around DDP, or DDP around the model
        if isinstance(m, DistributedDataParallel):
            return bool(m.find_unused_parameters)
        m = getattr(m, "_orig_mod", None) or getattr(m, "module", None)
        if m is None:
            break
    return None


def read_settings(result, meter, probe: PrecisionProbe, collator, model_info) -> dict:
    import torch

    from bench.precision import tf32_state

    opt = result.optimizer
    group0 = opt.param_groups[0]
    lrs = [x for x in meter.lrs if x is not None]
    sampler = _sampler_of(result.train_dataloader) if result.train_dataloader is not None else None
    scaler = result.grad_scaler
    scaler_on = bool(scaler is not None and scaler.is_enabled())
    settings = {
        "optimizer": type(opt).__name__,
        "optimizer_impl": "fused" if group0.get("fused") else "foreach" if group0.get("foreach") else
        "torch-default" if group0.get("foreach") is None else "for-loop",
        "lr": group0.get("initial_lr", group0["lr"]),
        "betas": list(group0.get("betas", ())),
        "eps": group0.get("eps"),
        # What is trained: how many parameters get which weight decay.  How they are grouped is
        # the loop's own machinery (the Trainer always makes a decay and a no-decay group).
        "weight_decay_params": _decay_summary(opt),
        "param_groups": [
            {"weight_decay": g.get("weight_decay", 0.0), "n_tensors": len(g["params"]),
             "n_params": sum(p.numel() for p in g["params"])} for g in opt.param_groups],
        "scheduler": _schedule(result.scheduler),
        "lr_first_step": lrs[0] if lrs else None,
        "lr_middle_step": lrs[len(lrs) // 2] if lrs else None,
        "lr_last_step": lrs[-1] if lrs else None,
        "grad_clip_max_norm": result.clip_max_norm,
        "grad_accum_steps": result.grad_accum,
        "sampler": sampler.describe() if hasattr(sampler, "describe") else type(sampler).__name__ if sampler else None,
        "dataloader_num_workers": getattr(result.train_dataloader, "num_workers", None),
        "dataloader_pin_memory": getattr(result.train_dataloader, "pin_memory", None),
        "h2d_non_blocking": result.h2d_non_blocking,
        "ddp_find_unused_parameters": _ddp_find_unused(result.wrapped_model),
        "collator": type(collator).__name__,
        "padding": str(getattr(collator, "padding", "")),
        "pad_to_multiple_of": getattr(collator, "pad_to_multiple_of", None),
        "dropout": model_info.dropout,
        "model_train_mode": probe.seen["train_mode"] if probe.seen else None,
        "autocast_dtype": probe.seen["autocast_dtype"] if probe.seen else None,
        "compute_dtype": probe.seen["compute_dtype"] if probe.seen else None,
        "param_dtype": probe.seen["param_dtype"] if probe.seen else None,
        "param_dtypes": probe.seen["param_dtypes"] if probe.seen else None,
        "grad_scaler": scaler_on,
        "grad_scaler_final_scale": float(scaler.get_scale()) if scaler_on else None,
        "attn_implementation": model_info.attn_implementation,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        **tf32_state(),
    }
    settings.update(result.extra)
    # What the report needs to know about this loop, from the loop itself: which keys are its own
    # machinery (shown, never flagged as a difference) and what it does each step beyond manual.
    settings["loop_specific_keys"] = sorted(result.extra)
    settings["extra_work_per_step"] = list(result.extra_work)
    return settings


def optimizer_state_bytes(optimizer) -> int:
    """Bytes the optimizer keeps beside the weights: every tensor of its state (AdamW's two moments
    per trained parameter and its step counts), read from the live optimizer after training."""
    import torch

    return sum(value.numel() * value.element_size() for state in optimizer.state.values()
               for value in state.values() if isinstance(value, torch.Tensor))


def precision_mismatch(precision_plan, settings: dict) -> str | None:
    """Why the precision in force is not the one asked for, or None.  Checked after every run."""
    want = precision_plan.autocast_dtype
    got = settings.get("autocast_dtype")
    if want != got:
        return (f"asked {precision_plan.precision} but the model ran with autocast "
                f"{got or 'off'} (compute dtype {settings.get('compute_dtype')})")
    wrong = param_dtype_mismatch(precision_plan.precision, settings.get("param_dtypes"))
    if wrong:
        return wrong
    if precision_plan.grad_scaler != settings.get("grad_scaler"):
        return f"asked {precision_plan.precision} but the grad scaler was {'on' if settings.get('grad_scaler') else 'off'}"
    if precision_plan.tf32 != settings.get("cuda_matmul_tf32", False):  # off unless asked, on every device
        return f"asked {precision_plan.precision} but TF32 matmuls were {'on' if settings.get('cuda_matmul_tf32') else 'off'}"
    return None


def trainable_dtypes(model) -> list[str]:
    return sorted({str(p.dtype).replace("torch.", "") for p in model.parameters() if p.requires_grad})


def param_dtype_mismatch(precision: str, dtypes: list[str] | None) -> str | None:
    """Why parameters of these dtypes cannot train under ``precision``, or None: every precision here
    keeps float32 weights (autocast computes in half precision from them; the fp16 loss scaler
    refuses fp16 gradients).  Checked on the model before training and on the settings after."""
    if dtypes is None or dtypes == ["float32"]:
        return None
    return (f"asked {precision} but the model's trainable parameters are {', '.join(dtypes)} "
            "(every precision here keeps float32 weights; load the model in float32)")
