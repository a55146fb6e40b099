"""MFU's FLOPs per sequence, for every tiny encoder architecture, within 2% of torch's
FlopCounterMode on a batch the formula was not solved from (other batch size and length)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.config import RunConfig
from bench.models import TINY_ARCHS, load_model


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
@pytest.mark.parametrize("n,length", [(4, 48), (2, 100)])
@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_flops_per_step_within_two_percent_of_flop_counter(arch, n, length, finetune):
    """Under LoRA too: no frozen weight gets a gradient, so the backward is smaller, and the count
    is of the model as it trains."""
    if finetune == "lora":
        pytest.importorskip("peft")
    model, tokenizer, info = load_model(RunConfig(model=f"tiny-{arch}", finetune=finetune))
    a, b, c = info.train_flops_per_sequence_coeffs
    predicted = n * (a * length + b * length**2 + c)
    ids = torch.randint(1000, 2000, (n, length))
    # The reference runs eager attention, whose matmuls the counter sees on every architecture
    # (SDPA's fused CPU kernel, taken by ModernBERT, is invisible to it).
    model.set_attn_implementation("eager")
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(n, dtype=torch.long)).loss.backward()
    assert predicted == pytest.approx(counter.get_total_flops(), rel=0.02)


def test_counting_leaves_no_gradients_and_no_rng_draws():
    """The count runs dropout in train mode; the loops' shared RNG stream must not move."""
    from bench.models import counted_flops_coeffs

    model, tokenizer, _ = load_model(RunConfig(model="tiny"))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    counted_flops_coeffs(model, tokenizer)
    assert torch.equal(torch.rand(3), expected)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_attention_term_is_counted_for_every_architecture(arch):
    """12 layers h T^2: ModernBERT (no attention dropout) takes SDPA's fused kernel, which the
    counter does not see; its term is added by hand, the others' is measured."""
    _, _, info = load_model(RunConfig(model=f"tiny-{arch}"))
    assert info.train_flops_per_sequence_coeffs[1] == pytest.approx(12 * 2 * 64, rel=0.02)


def test_lora_counts_fewer_flops_than_full_fine_tuning():
    """The frozen weights' gradients are not computed: LoRA's per-token FLOPs are about 2/3 of full's
    (forward 2N, input gradients 2N, against full's 6N), never the 6 N rule's."""
    pytest.importorskip("peft")
    _, _, full = load_model(RunConfig(model="tiny"))
    _, _, lora = load_model(RunConfig(model="tiny", finetune="lora"))
    ratio = lora.train_flops_per_sequence_coeffs[0] / full.train_flops_per_sequence_coeffs[0]
    assert 0.6 < ratio < 0.72
