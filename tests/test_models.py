"""--model resolution: the packaged alias, local folders, --no-weights offline."""

import pytest

from bench.config import ConfigError, RunConfig
from bench.models.checks import check_model
from bench.models import load_model, packaged_model_path


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


def _fp16_checkpoint(folder):
    """A tiny BERT saved as transformers saves an fp16 model: fp16 tensors, a config saying so, and
    the packaged uncased tokenizer beside them (the GPU check carries MiniLM this way)."""
    import shutil
    from pathlib import Path

    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    from bench.models import TINY_BERT

    config = BertConfig(**TINY_BERT, num_labels=2)
    AutoModelForSequenceClassification.from_config(config, dtype=torch.float16).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(packaged_model_path()) / name, folder / name)
    return folder


def test_an_fp16_checkpoint_and_an_fp16_config_load_as_fp32(tmp_path):
    """transformers 5 loads a checkpoint in its saved dtype by default, and builds a config that
    names a dtype in it: an fp16 MiniLM would train fp16 weights under any label."""
    import json

    import torch
    from transformers import AutoModelForSequenceClassification

    folder = _fp16_checkpoint(tmp_path / "fp16")
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float16"
    as_shipped = AutoModelForSequenceClassification.from_pretrained(folder)
    assert {p.dtype for p in as_shipped.parameters()} == {torch.float16}  # what the library does unasked
    for run in (RunConfig(model=str(folder)), RunConfig(model=str(folder), no_weights=True)):
        model, _, info = load_model(run)
        assert {p.dtype for p in model.parameters()} == {torch.float32}, run.no_weights
        assert info.weights.startswith("random-init:" if run.no_weights else "pretrained:")


def test_an_fp16_model_in_an_fp32_cell_is_a_failed_cell(tiny_run, monkeypatch):
    """The precision check reads every trainable parameter's dtype: a model the loader left in fp16
    is a failed cell with the reason, before its first step (trained, it diverges or passes as fp32)."""
    from bench.cell import steps as cellrun
    from bench.cell.main import run_cell
    from bench.config import Cell

    real = cellrun.load_model

    def fp16_model(run, num_labels=2):
        model, tokenizer, info = real(run, num_labels)
        return model.half(), tokenizer, info

    monkeypatch.setattr(cellrun, "load_model", fp16_model)
    record = run_cell(Cell("manual", "cpu", "fp32", tiny_run(max_steps=3, timing_warmup=1)), progress=False)
    assert record.status == "failed"
    assert record.reason.startswith("asked fp32 but the model's trainable parameters are float16")
    assert record.failure.kind == "config" and record.steps in (None, 0)


def test_the_settings_check_after_training_reads_every_parameter_dtype():
    from bench.precision import precision_plan
    from bench.cell.settings import precision_mismatch

    plan = precision_plan("bf16")
    settings = {"autocast_dtype": "bfloat16", "grad_scaler": False, "cuda_matmul_tf32": False}
    assert precision_mismatch(plan, {**settings, "param_dtypes": ["float32"]}) is None
    assert precision_mismatch(plan, settings) is None  # an older record: nothing to compare
    assert "bfloat16, float32" in precision_mismatch(plan, {**settings, "param_dtypes": ["bfloat16", "float32"]})


def test_a_copied_tree_names_its_commit_from_the_commit_file(tmp_path, monkeypatch):
    """A tree sent to another machine may carry a stale .git: the commit file written where the copy
    was made wins while it exists; a malformed one is ignored."""
    from bench.cell import envinfo

    root = tmp_path / "tree"
    (root / "bench").mkdir(parents=True)
    monkeypatch.setattr(envinfo, "__file__", str(root / "bench" / "envinfo.py"))
    assert envinfo._read_git_sha() is None  # no git, no file
    (root / envinfo.COMMIT_FILE).write_text("52b30b176dca\n")
    assert envinfo._read_git_sha() == "52b30b176dca"
    (root / envinfo.COMMIT_FILE).write_text("$(rm -rf /)\n")
    assert envinfo._read_git_sha() is None


# --- encoders other than BERT: facts from each config, pair inputs from each forward ---

TINY_EXPECT = {  # arch: (layers, hidden, takes token_type_ids, dropout string read from the config)
    "bert": (2, 64, True, "hidden=0.1 attention=0.1 classifier=0.1"),
    "roberta": (2, 64, True, "hidden=0.1 attention=0.1 classifier=0.1"),
    "distilbert": (2, 64, False, "hidden=0.1 attention=0.1 classifier=0.2"),  # dropout / seq_classif_dropout
    "electra": (2, 64, True, "hidden=0.1 attention=0.1 classifier=0.1"),
    "deberta-v2": (2, 64, False, "hidden=0.1 attention=0.1 classifier=0.0"),  # type_vocab_size 0, pooler_dropout
    "modernbert": (2, 64, False, "hidden=0.0 attention=0.0 classifier=0.0"),  # mlp_dropout / attention_dropout
}


@pytest.mark.parametrize("arch", sorted(TINY_EXPECT))
def test_tiny_alias_per_architecture_trains_a_step(arch):
    import torch

    model, tokenizer, info = load_model(RunConfig(model=f"tiny-{arch}"))
    layers, hidden, segments, dropout = TINY_EXPECT[arch]
    assert (info.num_layers, info.hidden_size, info.dropout) == (layers, hidden, dropout)
    assert ("token_type_ids" in tokenizer.model_input_names) == segments
    batch = tokenizer(["the cat sat", "a dog"], ["on the mat", "ran far away"], padding=True, return_tensors="pt")
    loss = model(**batch, labels=torch.tensor([0, 1])).loss
    loss.backward()  # an unexpected token_type_ids argument would raise here already
    assert torch.isfinite(loss)


def test_deberta_without_sdpa_runs_and_records_eager():
    _, _, info = load_model(RunConfig(model="tiny-deberta-v2"))
    assert info.attn_implementation == "eager"


def test_decoder_only_model_is_refused_before_any_cell(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(tmp_path)
    from bench.models import packaged_model_path as p
    import shutil

    for f in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (__import__("pathlib").Path(p()) / f).exists():
            shutil.copy(__import__("pathlib").Path(p()) / f, tmp_path / f)
    with pytest.raises(ConfigError, match="decoder-only"):
        check_model(RunConfig(model=str(tmp_path)))


def test_architecture_without_a_classifier_is_refused():
    from transformers import CLIPConfig

    from bench.models import check_architecture

    with pytest.raises(ConfigError, match="no sequence-classification model"):
        check_architecture("x", CLIPConfig())


@pytest.mark.parametrize("arch", ["roberta", "electra"])
def test_precision_probe_finds_the_logits_layer_inside_a_head_module(arch):
    """RoBERTa's and ELECTRA's ``classifier`` is a module (dense, dropout, out_proj), not a Linear."""
    import torch

    from bench.cell.settings import PrecisionProbe

    model, tokenizer, _ = load_model(RunConfig(model=f"tiny-{arch}"))
    probe = PrecisionProbe(model, "cpu")
    model.train()
    model(**tokenizer(["a b"], ["c d"], return_tensors="pt"), labels=torch.tensor([1]))
    assert probe.seen["compute_dtype"] == "float32" and probe.seen["param_dtype"] == "float32"
