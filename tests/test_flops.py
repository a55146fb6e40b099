"""MFU's numerator held to torch's own count: the FLOPs formula (PaLM's 6N + 12·L·H·Q·T per token,
pooler and classifier counted per token, no optimizer) against ``FlopCounterMode`` over one training
step's forward and backward, for bert-base's shapes and MiniLM's, within 2%."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForSequenceClassification, BertConfig

from bench.records.vocabulary import train_flops_per_sequence

SHAPES = {
    "bert-base": BertConfig(),  # its defaults are bert-base-uncased's architecture
    "minilm-l6": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_flops_formula_is_flopcountermodes_within_2_percent(name):
    config = SHAPES[name]
    config.num_labels = 2
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32, attn_implementation="eager")
    batch, length = 2, 128
    inputs = {"input_ids": torch.randint(0, config.vocab_size, (batch, length)),
              "attention_mask": torch.ones(batch, length, dtype=torch.long),
              "labels": torch.tensor([0, 1])}
    with FlopCounterMode(display=False) as counter:
        model(**inputs).loss.backward()
    counted = counter.get_total_flops()
    n = sum(p.numel() for n_, p in model.named_parameters() if ".embeddings." not in f".{n_}")
    formula = batch * train_flops_per_sequence(n, config.num_hidden_layers, config.hidden_size, length)
    assert formula == pytest.approx(counted, rel=0.02), f"{name}: formula {formula:.4g} vs counted {counted:.4g}"
    assert formula >= counted  # the formula counts pooler and classifier per token: never under
