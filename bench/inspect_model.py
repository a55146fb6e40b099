"""``python -m bench inspect``: the tutorial's opening, made useful.

1. What ``AutoModelForSequenceClassification`` adds to ``AutoModel``, as a diff of the two module
   trees (the tutorial prints both and compares them by eye).
2. The loading report: checkpoint weights that were not used, and weights newly initialised.
3. The pair encoding of a sentence pair: ``[CLS] s1 [SEP] s2 [SEP]``, token types, attention mask.
"""

from __future__ import annotations

import difflib
import re
import sys

from bench.config import ConfigError


def module_lines(model, strip_prefix: str = "") -> list[str]:
    """One line per module, ``name: Class(args)``, repeated encoder layers folded into the first."""
    lines = []
    n_layers = {}
    for name, module in model.named_modules():
        if strip_prefix and name.startswith(strip_prefix):
            name = name[len(strip_prefix):]
        elif strip_prefix and name == strip_prefix.rstrip("."):
            continue
        if not name:
            continue
        m = re.match(r"(.*\.layer)\.(\d+)(\..*)?$", name)
        if m:
            n_layers[m.group(1)] = max(n_layers.get(m.group(1), 0), int(m.group(2)) + 1)
            if m.group(2) != "0":
                continue
        extra = module.extra_repr()
        lines.append(f"{name}: {type(module).__name__}({extra})")
    return [re.sub(r"(\w+\.layer)\.0", lambda mm: f"{mm.group(1)}.[0..{n_layers.get(mm.group(1), 1) - 1}]", line)
            for line in lines]


def tree_diff(base_model, cls_model) -> list[str]:
    """The classification model's modules against the base model's, with the wrapper prefix
    (``bert.``) removed so that only real differences remain."""
    prefix = getattr(cls_model, "base_model_prefix", "") + "."
    base = module_lines(base_model)
    head = module_lines(cls_model, strip_prefix=prefix)
    out = []
    for line in difflib.unified_diff(base, head, fromfile=type(base_model).__name__,
                                     tofile=type(cls_model).__name__, lineterm="", n=1):
        out.append(line)
    return out


def encoding_table(tokenizer, s1: str, s2: str) -> list[str]:
    enc = tokenizer(s1, s2)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    rows = [("token", tokens), ("input_ids", enc["input_ids"]),
            ("token_type_ids", enc.get("token_type_ids", ["-"] * len(tokens))),
            ("attention_mask", enc["attention_mask"])]
    widths = [max(len(str(r[1][i])) for r in rows) for i in range(len(tokens))]
    label = max(len(r[0]) for r in rows)
    return [f"{name:<{label}}  " + " ".join(f"{str(v):>{w}}" for v, w in zip(values, widths)) for name, values in rows]


def cmd_inspect(args) -> int:
    import transformers
    from transformers import AutoModel, AutoModelForSequenceClassification

    from bench.config import RunConfig
    from bench.models import check_model, packaged_model_path

    check_model(RunConfig(model=args.model))
    if args.model == "tiny":
        raise ConfigError("inspect needs a checkpoint; tiny has none (use minilm-l6 or a model id/folder)")
    source = packaged_model_path() if args.model == "minilm-l6" else args.model
    transformers.logging.set_verbosity_error()  # the loading report is printed below, in full
    try:
        base = AutoModel.from_pretrained(source)
        cls_model, info = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2,
                                                                             output_loading_info=True)
        from bench.models import _load_tokenizer

        tokenizer = _load_tokenizer(source)
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
