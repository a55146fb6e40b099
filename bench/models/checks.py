"""A model checked before any cell (``bench/sweep/preflight.py``): what no cell could load or train is
refused once, in one line: a folder that is not a model's, a config that does not read, an
architecture the harness does not fine-tune, a classifier head of another size than MRPC's two
labels, a truncated weights file, a tokenizer that is not the model's, padding past the positions."""

from __future__ import annotations

from pathlib import Path

from bench.config import ConfigError, RunConfig
from bench.models import (TINY_BERT, _KNOWN_BERT_CONFIGS, _first_line, check_architecture, check_vocabulary, is_tiny,
                          tiny_config,
                          load_tokenizer, packaged_model_path)


def check_model(run: RunConfig) -> None:
    """Fail fast, in one line, on a model that no cell could load (before a sweep starts)."""
    name = run.model
    if run.pad_to_multiple_of:
        check_padding(run)
    if is_tiny(name):
        return
    source = packaged_model_path() if name == "minilm-l6" else name
    if Path(source).is_dir():
        if not (Path(source) / "config.json").exists():
            raise ConfigError(f"--model {name}: {source} has no config.json, not a model folder")
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(source)
        except Exception as exc:
            raise ConfigError(f"--model {name}: its config.json cannot be read: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from None
        check_architecture(name, config)
        if not run.no_weights:
            check_head(name, config)
            check_weights_readable(name, Path(source))
        try:
            tokenizer = load_tokenizer(source)
        except Exception as exc:
            raise ConfigError(f"--model {name}: its tokenizer cannot be loaded from {source}: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from None
        check_vocabulary(name, tokenizer, config.vocab_size)
        return
    if name.startswith((".", "/", "~")):
        raise ConfigError(f"--model {name}: no such folder")
    if run.no_weights and name in _KNOWN_BERT_CONFIGS:
        return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as exc:
        raise ConfigError(
            f"could not load model {name!r} from the Hub: {type(exc).__name__}: {_first_line(exc)}; offline, use "
            f"--model minilm-l6, a local model folder, or --model {name} --no-weights") from exc
    check_architecture(name, config)
    if not run.no_weights:
        check_head(name, config)


def check_head(name: str, config) -> None:
    """MRPC has two labels: a checkpoint whose classifier has another number of them cannot be loaded
    into a two-label head (a size mismatch in every cell)."""
    labels = getattr(config, "id2label", None) or {}
    if len(labels) not in (0, 2):
        raise ConfigError(f"--model {name}: its classifier head has {len(labels)} labels and MRPC has 2; "
                          f"give a base model or a two-label checkpoint (or --no-weights for a fresh model)")


def check_weights_readable(name: str, folder: Path) -> None:
    """Every safetensors file of the folder opens and lists its tensors (a header read, no weights
    loaded): a truncated or corrupt file is named now, not in each cell."""
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except Exception as exc:
            raise ConfigError(f"--model {name}: {path.name} cannot be read ({type(exc).__name__}: "
                              f"{_first_line(exc)}); the weights file is truncated or corrupt") from None


def check_padding(run: RunConfig) -> None:
    """Every batch is padded to a multiple of --pad-to-multiple-of: past the model's positions, no
    batch can run (a tensor-size error in every cell)."""
    positions = None
    if is_tiny(run.model):
        positions = TINY_BERT["max_position_embeddings"]
    else:
        from transformers import AutoConfig

        try:
            positions = AutoConfig.from_pretrained(packaged_model_path() if run.model == "minilm-l6" else run.model
                                                   ).max_position_embeddings
        except Exception:
            return  # the model's own check says why it cannot be loaded
    if positions and run.pad_to_multiple_of > positions:
        raise ConfigError(f"--pad-to-multiple-of {run.pad_to_multiple_of}: longer than the model's {positions} "
                          f"positions, so no batch could run; give a multiple of 8 up to {positions}")


def check_lora(run: RunConfig) -> None:
    """Before any cell: every target module names a layer of the model that PEFT can adapt (a linear,
    embedding or convolution layer), checked on the architecture built on the meta device (no
    weights, no memory)."""
    import torch
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS
    from transformers import AutoModelForSequenceClassification

    from bench.models.lora import default_targets

    config = _config_of(run)
    targets, _ = (list(run.lora_targets), "") if run.lora_targets else default_targets(config.model_type)
    targets = targets or list(PEFT_TARGETS[config.model_type])
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    adaptable = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d)
    # PEFT trains in full every module whose name ends with classifier or score (modules_to_save;
    # DistilBERT's pre_classifier too) and adapts nothing inside them: a target there adapts nothing.
    modules = {name: m for name, m in model.named_modules()
               if not any(part.endswith(("classifier", "score")) for part in name.split("."))}
    linears = sorted({name.rsplit(".", 1)[-1] for name, m in modules.items() if isinstance(m, torch.nn.Linear)})
    for target in targets:
        matched = [m for name, m in modules.items() if name == target or name.endswith("." + target)]
        if not matched:
            raise ConfigError(f"--lora-targets {target}: no module of {run.model} ({config.model_type}) outside its "
                              f"classifier head (trained in full) is named so; its linear layers are named "
                              f"{', '.join(linears)}")
        if not all(isinstance(m, adaptable) or type(m).__name__ == "Conv1D" for m in matched):
            kind = next(type(m).__name__ for m in matched if not isinstance(m, adaptable))
            raise ConfigError(f"--lora-targets {target}: names a {kind} in {run.model}, which LoRA cannot adapt; "
                              f"name linear layers: {', '.join(linears)}")


def _config_of(run: RunConfig):
    """The model's config as the cell will build it (the preflight has already read it once)."""
    from pathlib import Path

    from transformers import AutoConfig, BertConfig

    if is_tiny(run.model):
        return tiny_config(run.model, num_labels=2)
    if run.no_weights and run.model in _KNOWN_BERT_CONFIGS and not Path(run.model).is_dir():
        return BertConfig(**_KNOWN_BERT_CONFIGS[run.model], num_labels=2)
    source = packaged_model_path() if run.model == "minilm-l6" else run.model
    return AutoConfig.from_pretrained(source, num_labels=2)
