"""``python -m bench inspect``: the tutorial's opening, made useful.

1. What ``AutoModelForSequenceClassification`` adds to ``AutoModel``, as a diff of the two module
   trees (the tutorial prints both and compares them by eye).
2. The loading report: checkpoint weights that were not used, and weights newly initialised.
3. The pair encoding of a sentence pair: ``[CLS] s1 [SEP] s2 [SEP]``, token types, attention mask.
"""

from __future__ import annotations

import difflib
import re


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
