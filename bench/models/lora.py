"""LoRA through PEFT (``--finetune lora``): the harness wraps the model it built and seeded, so
every loop receives the same adapters from the same draw, and reads the adapter's settings back
from the live model for the record.

What PEFT does by default, and so what ``--finetune lora`` trains without further flags:

- ``LoraConfig()``'s rank, alpha and dropout (8, 8, 0.0 in PEFT 0.13-0.21), read back, not assumed;
- the target modules from PEFT's own table for the architecture
  (``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``: ``query`` and ``value`` for BERT, RoBERTa
  and ELECTRA, ``query_proj`` and ``value_proj`` for DeBERTa-v2).  PEFT has no entry for DistilBERT or
  ModernBERT; there the harness names the same projections itself (``FALLBACK_TARGETS``) and the
  record says so (``adapter.targets_source``);
- for sequence classification (``task_type=SEQ_CLS``) the modules named ``classifier`` (or
  ``score``) are trained in full beside the adapters (``modules_to_save``).  Other parts of a head
  stay frozen: BERT's pooler, DistilBERT's ``pre_classifier``, DeBERTa-v2's and ModernBERT's pooling
  head.  That is PEFT's recipe, recorded as ``adapter.modules_to_save``, not changed here.
"""

from __future__ import annotations

from bench.config import ConfigError, RunConfig

# Architectures with no entry in PEFT's table: their attention's query and value projections, as
# PEFT picks for BERT (ModernBERT computes query, key and value in one projection, Wqkv).
FALLBACK_TARGETS = {"distilbert": ("q_lin", "v_lin"), "modernbert": ("Wqkv",)}


def default_targets(model_type: str) -> tuple[list[str] | None, str]:
    """(target modules, where they come from) for an architecture when ``--lora-targets`` is not
    given: None from PEFT's own table (PEFT fills them in), else the harness's fallback."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

    if model_type in PEFT_TARGETS:
        return None, "peft"
    if model_type in FALLBACK_TARGETS:
        return list(FALLBACK_TARGETS[model_type]), "bench"
    raise ConfigError(f"--finetune lora: PEFT has no default target modules for {model_type!r} and neither "
                      "has bench; name them with --lora-targets (e.g. the attention's query and value projections)")


def lora_config(run: RunConfig, model_type: str):
    """PEFT's ``LoraConfig`` for the run: the settings given, PEFT's defaults for the rest."""
    from peft import LoraConfig, TaskType

    given = {key: value for key, value in (("r", run.lora_r), ("lora_alpha", run.lora_alpha),
                                            ("lora_dropout", run.lora_dropout)) if value is not None}
    if run.lora_targets:
        targets, source = list(run.lora_targets), "--lora-targets"
    else:
        targets, source = default_targets(model_type)
    return LoraConfig(task_type=TaskType.SEQ_CLS, target_modules=targets, **given), source


def wrap(model, run: RunConfig):
    """(the PEFT model around ``model``, where its target modules came from).  The adapters' A
    matrices are drawn from torch's generator here, right after the head's initialisation, so the
    draw is the same in every loop of a seed."""
    from peft import get_peft_model

    config, source = lora_config(run, model.config.model_type)
    try:
        return get_peft_model(model, config), source
    except ValueError as exc:  # PEFT's words for a target that matches no module of the model
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--finetune lora on {run.model}: {first}") from None


def adapter_facts(model, source: str) -> dict:
    """The adapter as the live model holds it: PEFT's settings in force, the modules it adapted and
    those trained in full beside it (by their names in the model, not the config's lists: PEFT names
    ``classifier`` and ``score`` for every classifier, and a target may match nothing), and the
    parameters trained (PEFT's own count)."""
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    config = model.peft_config[model.active_adapter]
    trainable, total = model.get_nb_trainable_parameters()
    adapted = [name for name, m in model.named_modules() if isinstance(m, LoraLayer)]
    saved = [name for name, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)]
    return dict(method="lora", r=int(config.r), alpha=float(config.lora_alpha), dropout=float(config.lora_dropout),
                scaling=float(config.lora_alpha) / int(config.r),
                target_modules=sorted({name.rsplit(".", 1)[-1] for name in adapted}),
                targets_source=source, bias=str(config.bias),
                modules_to_save=sorted({name.rsplit(".", 1)[-1] for name in saved}),
                adapted_layers=len(adapted), trainable_params=int(trainable), total_params=int(total))
