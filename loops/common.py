"""What the loops must do exactly alike, or the comparison would compare different training: AdamW's
parameter groups and its implementation (built as the Trainer builds them), how a short last
accumulation group is weighed, and how an fp16 step that the loss scaler skipped is recognised (so
that no loop advances its schedule on one)."""

from __future__ import annotations

from bench.loop_api import UnsupportedSetting


def adamw_param_groups(model, weight_decay: float, exempt: bool = True):
    """With weight decay, the Trainer exempts biases and LayerNorm weights; do the same (``exempt``).
    Without it (the tutorial), or with ``exempt`` off (accelerate's example: decay on every
    parameter), one group of all the trained parameters, as ``AdamW(model.parameters(), weight_decay=...)``."""
    if weight_decay == 0 or not exempt:
        # The parameters that train (all of them in full fine-tuning; under LoRA the adapters and the
        # head), as the Trainer passes only those to its optimizer.
        return [p for p in model.parameters() if p.requires_grad]
    from torch import nn
    from transformers.trainer_pt_utils import get_parameter_names

    # The same rule as Trainer.get_decay_parameter_names (transformers 5).
    no_decay_patterns = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    decay = set(get_parameter_names(model, [nn.LayerNorm], no_decay_patterns))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]


def adamw_impl_kwargs(impl: str) -> dict:
    """torch.optim.AdamW keyword for the chosen update implementation."""
    if impl == "torch-default":
        return {}  # torch decides: for-loop on the CPU, foreach on CUDA
    if impl == "for-loop":
        return {"foreach": False}
    if impl == "foreach":
        return {"foreach": True}
    if impl == "fused":
        return {"fused": True}
    raise UnsupportedSetting(f"unknown AdamW implementation {impl!r}")


def accumulation_group(i: int, n_batches: int, accum: int) -> tuple[int, bool]:
    """(size of the accumulation group micro-batch ``i`` of an epoch belongs to, is it the group's
    last).  An epoch's last group is short when ``accum`` does not divide its batches; every loop
    averages the loss over the micro-batches the group has, so a short group weighs as much as a full one."""
    start = (i // accum) * accum
    size = min(accum, n_batches - start)
    return size, i + 1 == start + size


def unscales_in_step(optimizer) -> bool:
    """Does this optimizer unscale fp16 gradients inside its own step (a fused AdamW)?  Then
    ``GradScaler.step`` hands it the scale, unless ``unscale_`` was called first; Lightning's amp
    plugins read the same attribute (``_optimizer_handles_unscaling``) to skip their ``unscale_``."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


class ScaleWatch:
    """Did the fp16 loss scaler skip the optimizer step just taken?  ``GradScaler.update`` lowers the
    scale on every step whose gradients held inf/nan, so a lower scale after the step is a skip.
    Read from the scale, not from whether ``optimizer.step`` was called: a fused AdamW is always
    called and skips inside its kernel, which Accelerate's ``step_was_skipped`` (and the Trainer
    through it) cannot see.

    One host read of the scale per optimizer step, only under fp16: the scale changes only in
    ``GradScaler.update``, so the scale read after one step's update is the next step's scale before
    it; before the first update the scale is the scaler's initial one, known without a read.  Each
    read is a device sync that costs fp16 the CPU/GPU overlap bf16 keeps."""

    def __init__(self, scaler):
        self.scaler = scaler
        self._scale = None  # the scale the last step ran at, as last known (None: not yet)
        self.reads = 0

    def active(self) -> bool:
        return self.scaler is not None and self.scaler.is_enabled()

    def skipped(self) -> bool:
        """Call once per optimizer step, after ``scaler.update()``: was that step skipped?"""
        if not self.active():
            return False
        before = self._scale
        if before is None:
            initial = getattr(self.scaler, "_init_scale", None)  # the scale until the first update()
            before = float(initial) if initial is not None else None
        self.reads += 1
        self._scale = self.scaler.get_scale()
        return before is not None and self._scale < before
