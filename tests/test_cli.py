"""The command line: bad input gets one clear line and a non-zero exit; --help stays light."""

import os
import subprocess
import sys

import pytest

from bench.cli import build_parser, main
from tests.conftest import ROOT


def run_cli(*args, env=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          env=full_env, timeout=300)


def test_help_does_not_import_torch():
    code = ("import sys\nfrom bench.cli import main\n"
            "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
            "assert 'transformers' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--loops" in out.stdout and "manual" in out.stdout and "fp32" in out.stdout


@pytest.mark.parametrize("args,needle", [
    (["--loops", "manual,jax"], "unknown loop 'jax'; choose from: all, manual, accelerate, trainer"),
    (["--device", "tpu"], "unknown device 'tpu'; choose from: auto, all, cpu, cuda, mps"),
    (["--precision", "fp8"], "unknown precision 'fp8'; choose from: all, fp32, tf32, fp16, bf16"),
    (["--batch-size", "0"], "must be >= 1"),
    (["--lr", "-1"], "must be > 0"),
    (["--adamw", "sgd"], "invalid choice"),
])
def test_unknown_choices_exit_2_with_the_valid_list(args, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", *args])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def _one_line_error(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bench: error: ")
    return lines[0]


def test_cuda_asked_without_a_gpu_is_one_line(glue_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    line = _one_line_error(run_cli("run", "--device", "cuda", "--model", "tiny", "--glue-dir", glue_dir))
    assert "--device cuda" in line and "no CUDA device" in line


def test_tf32_asked_on_cpu_is_one_line(glue_dir):
    line = _one_line_error(run_cli("run", "--device", "cpu", "--precision", "tf32", "--model", "tiny",
                                   "--glue-dir", glue_dir))
    assert "tf32 is cuda-only" in line


def test_missing_glue_dir_is_one_line(tmp_path):
    line = _one_line_error(run_cli("run", "--model", "tiny", "--glue-dir", str(tmp_path / "nowhere")))
    assert "no MRPC in" in line and "hf download nyu-mll/glue" in line


def test_no_data_source_at_all_is_one_line():
    """No --glue-dir, no $BENCH_GLUE_DIR and no Hub (offline): say what was tried and how to fix it."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BENCH_GLUE_DIR": ""}
    line = _one_line_error(run_cli("run", "--model", "tiny", env=env))
    assert "tried the Hub (nyu-mll/glue" in line and "--glue-dir" in line and "hf download" in line


def test_timing_warmup_longer_than_the_run_is_one_line(glue_dir):
    line = _one_line_error(run_cli("run", "--model", "tiny", "--glue-dir", glue_dir, "--max-steps", "3",
                                   "--timing-warmup", "3"))
    assert "--timing-warmup 3 leaves no timed step out of 3" in line


def test_unknown_model_offline_is_one_line(glue_dir):
    line = _one_line_error(run_cli("run", "--model", "no-such-org/no-such-model", "--glue-dir", glue_dir,
                                   env={"HF_HUB_OFFLINE": "1"}))
    assert "could not load model 'no-such-org/no-such-model'" in line and "--model minilm-l6" in line


def test_glue_dir_flag_wins_over_env(monkeypatch, glue_dir, tmp_path):
    from bench.data import resolve_glue_dir

    monkeypatch.setenv("BENCH_GLUE_DIR", str(tmp_path))
    assert resolve_glue_dir(None) == str(tmp_path.resolve())
    assert resolve_glue_dir(glue_dir) == glue_dir
    monkeypatch.delenv("BENCH_GLUE_DIR")
    assert resolve_glue_dir(None) is None


def test_env_glue_dir_loads_the_splits(monkeypatch, glue_dir):
    from bench.data import load_mrpc, resolve_glue_dir

    monkeypatch.setenv("BENCH_GLUE_DIR", glue_dir)
    raw, source = load_mrpc(resolve_glue_dir(None))
    assert {k: len(v) for k, v in raw.items()} == {"train": 3668, "validation": 408, "test": 1725}
    assert [sum(v["label"]) for v in raw.values()] == [2474, 279, 1147]  # MRPC's balance, fixture or not
    assert source == f"local:{glue_dir}"


def test_real_mrpc_is_the_hub_repos_text(real_glue_dir):
    """On a real copy: GLUE's first training pair, and MRPC's padding at the tutorial's batch 8."""
    from bench.config import RunConfig
    from bench.data import load_mrpc, prepare
    from bench.models import load_model

    raw, _ = load_mrpc(real_glue_dir)
    first = raw["train"][0]
    assert first["sentence1"].startswith("Amrozi accused his brother") and first["label"] == 1
    run = RunConfig(model="tiny", glue_dir=real_glue_dir)
    _, tokenizer, _ = load_model(run)
    lengths = [len(ids) for ids in prepare(run, tokenizer).train.with_format(None)["input_ids"]]
    assert 45 < sum(lengths) / len(lengths) < 60 and max(lengths) <= 103  # MRPC pairs: ~52 WordPiece tokens


def test_parser_defaults_are_the_tutorials():
    from bench.commands.run import _run_configs

    (run,), explicit = _run_configs(build_parser().parse_args(["run"]))
    assert (run.lr, run.batch_size, run.epochs, run.warmup_steps, run.weight_decay, run.seed) == (5e-5, 8, 3, 0, 0.0, 42)
    assert run.max_grad_norm is None and run.scheduler == "linear" and run.adamw == "torch-default"
    assert not run.group_by_length and run.pad_to_multiple_of is None and not run.compile and run.preset is None
    assert explicit == set()


def test_batch_size_is_a_sweep_axis():
    from bench.commands.run import _run_configs

    runs, explicit = _run_configs(build_parser().parse_args(["run", "--batch-size", "8,16,32"]))
    assert [r.batch_size for r in runs] == [8, 16, 32] and "batch_size" in explicit


def test_preset_fills_fast_path_per_device_and_explicit_flags_win():
    from bench.commands.run import _run_configs
    from bench.sweep.presets import PRESETS, apply_preset

    args = build_parser().parse_args(["run", "--preset", "tutorial,fast", "--adamw", "for-loop"])
    assert args.preset[0] == ["tutorial", "fast"]
    (run,), explicit = _run_configs(args)
    cpu = apply_preset(run, "cpu", "fast", explicit)
    assert cpu.preset == "fast" and cpu.group_by_length and cpu.batch_size == PRESETS["fast"]["cpu"]["batch_size"]
    assert cpu.adamw == "for-loop"  # given on the command line: the preset does not override it
    cuda = apply_preset(run, "cuda", "fast", explicit)
    assert cuda.pad_to_multiple_of == 8 and cuda.pin_memory
    assert apply_preset(run, "cpu", None, explicit) == run


def test_help_says_each_default_once_and_every_option_has_help():
    import argparse

    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))
    text = run.format_help()
    assert "(default: None)" not in text and "(default 8) (default" not in text
    missing = [a.option_strings for a in run._actions if not a.help and a.help is not argparse.SUPPRESS]
    assert not missing, missing


def test_version_and_summary_keep_their_formatting(capsys):
    from bench.records import Record
    from bench.report.summary import summary_table

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and "bench 0.1.0" in capsys.readouterr().out
    table = summary_table([Record(loop="manual", device="cpu", precision="fp32", status="ok", eval_f1=0.0,
                                  step_s_p50=0.256)])
    assert "| 0.0000 " in table and "| 256.0 " in table
