"""The two things the manual and Accelerate loops must build exactly as the Trainer does, or the
comparison would compare different training: AdamW's parameter groups and its implementation."""

from __future__ import annotations

from bench.loop_api import UnsupportedSetting


def adamw_param_groups(model, weight_decay: float):
    """With weight decay, the Trainer exempts biases and LayerNorm weights; do the same.  Without
    it (the tutorial), one group of all parameters, as ``AdamW(model.parameters())``."""
    if weight_decay == 0:
        return model.parameters()
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
