"""--model resolution: the packaged alias, local folders, --no-weights offline."""

import pytest

from bench.config import ConfigError, RunConfig
from bench.models import check_model, load_model, packaged_model_path


def test_minilm_alias_is_the_packaged_pretrained_model():
    model, tokenizer, info = load_model(RunConfig(model="minilm-l6"))
    assert info.weights == f"pretrained:{packaged_model_path()}"
    assert info.num_layers == 6 and info.hidden_size == 384
    assert tokenizer.vocab_size == 30522
    assert tokenizer.convert_ids_to_tokens(tokenizer("Hello", "World")["input_ids"]) == \
        ["[CLS]", "hello", "[SEP]", "world", "[SEP]"]  # uncased pair encoding


def test_local_folder_is_a_model(tmp_path):
    model, tokenizer, info = load_model(RunConfig(model=packaged_model_path()))
    assert info.weights.startswith("pretrained:") and info.num_layers == 6


def test_bert_base_without_weights_works_offline():
    check_model(RunConfig(model="bert-base-uncased", no_weights=True))
    model, tokenizer, info = load_model(RunConfig(model="bert-base-uncased", no_weights=True))
    assert info.weights.startswith("random-init:BertConfig() defaults")
    assert (info.num_layers, info.hidden_size) == (12, 768)
    assert 109_000_000 < info.n_params < 110_000_000  # bert-base + a 2-way classifier head
    assert tokenizer.vocab_size == 30522 and info.tokenizer.startswith("packaged-uncased:")


def test_same_seed_same_initial_weights_head_included():
    a, _, _ = load_model(RunConfig(model="tiny", seed=3))
    b, _, _ = load_model(RunConfig(model="tiny", seed=3))
    c, _, _ = load_model(RunConfig(model="tiny", seed=4))
    assert (a.classifier.weight == b.classifier.weight).all()
    assert not (a.classifier.weight == c.classifier.weight).all()


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/folder"])
def test_missing_local_folder_is_refused(name):
    with pytest.raises(ConfigError, match="no such folder"):
        check_model(RunConfig(model=name))


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        check_model(RunConfig(model=str(tmp_path)))
