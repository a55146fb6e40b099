"""``bench inspect``: the tutorial's opening, made useful (what the classification model adds, its
loading report, the pair encoding; the pieces are in ``bench/commands/inspect_model.py``)."""

from __future__ import annotations

import sys

from bench.config import ConfigError
from bench.commands.inspect_model import encoding_table, tree_diff


def cmd_inspect(args) -> int:
    import transformers
    from transformers import AutoModel, AutoModelForSequenceClassification

    from bench.config import RunConfig
    from bench.models.checks import check_model
    from bench.models import is_tiny, packaged_model_path

    check_model(RunConfig(model=args.model))
    if is_tiny(args.model):
        raise ConfigError(f"inspect needs a checkpoint; {args.model} has none (use minilm-l6 or a model id/folder)")
    source = packaged_model_path() if args.model == "minilm-l6" else args.model
    transformers.logging.set_verbosity_error()  # the loading report is printed below, in full
    try:
        base = AutoModel.from_pretrained(source)
        cls_model, info = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2,
                                                                             output_loading_info=True)
        from bench.models import load_tokenizer

        tokenizer = load_tokenizer(source)
    except Exception as exc:
        raise ConfigError(f"could not load {args.model!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc

    out = sys.stdout
    print(f"# {args.model} ({source})\n", file=out)
    print("## 1. AutoModel vs AutoModelForSequenceClassification\n", file=out)
    n_base = sum(p.numel() for p in base.parameters())
    n_cls = sum(p.numel() for p in cls_model.parameters())
    print(f"{type(base).__name__}: {n_base:,} parameters; {type(cls_model).__name__}: {n_cls:,} "
          f"(+{n_cls - n_base:,}). Module trees, the wrapper prefix "
          f"'{cls_model.base_model_prefix}.' removed; '+' is what the classification model adds:\n", file=out)
    for line in tree_diff(base, cls_model):
        print("    " + line, file=out)
    print("\n## 2. Loading report (AutoModelForSequenceClassification.from_pretrained)\n", file=out)
    unused = sorted(info.get("unexpected_keys") or [])
    missing = sorted(info.get("missing_keys") or [])
    mismatched = info.get("mismatched_keys") or []
    print(f"Checkpoint weights not used ({len(unused)}): " + (", ".join(unused) if unused else "none"), file=out)
    print(f"Weights newly initialised ({len(missing)}): " + (", ".join(missing) if missing else "none"), file=out)
    if mismatched:
        print(f"Weights with mismatched shapes, re-initialised ({len(mismatched)}): {mismatched}", file=out)
    print("The new weights are the classification head: they start random, which is why the model must be "
          "fine-tuned before its predictions mean anything.", file=out)
    print("\n## 3. Pair tokenization\n", file=out)
    print(f"tokenizer({args.sentence1!r}, {args.sentence2!r}) -> [CLS] sentence1 [SEP] sentence2 [SEP]; "
          "token_type_ids mark which sentence each token belongs to:\n", file=out)
    for line in encoding_table(tokenizer, args.sentence1, args.sentence2):
        print("    " + line, file=out)
    return 0
