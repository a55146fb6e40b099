"""The HF stack's habits at the command line: no prefix abbreviations, --device auto by default (the
choice recorded and reported), a TrainingArguments JSON drives a run; and the machine's load read
through psutil gives the figures /proc/stat gives by hand."""

import argparse
import json
import os
import sys

import pytest

from bench.cli import build_parser, main, plan_from_args
from bench.records import read_records


def _subparsers(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("argv", [
    ["run", "--max-st", "10"], ["run", "--lo", "manual"], ["report", "x", "--cs", "y.csv"],
    ["export", "x", "--format", "csv", "--super"], ["compare", "a", "b", "--fail", "5"],
    ["explain", "x", "--from", "manual", "--to", "trainer", "--rep", "2"],
])
def test_prefix_abbreviations_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_every_parser_refuses_abbreviations():
    parser = build_parser()
    assert parser.allow_abbrev is False and all(p.allow_abbrev is False for p in _subparsers(parser).values())


def test_device_defaults_to_auto_which_picks_what_the_machine_has(monkeypatch):
    from bench.devices import DEVICES, auto_device

    args = build_parser().parse_args(["run", "--loops", "manual"])
    assert args.device == (["auto"], True)
    device, said = auto_device()
    assert {c.device for c in plan_from_args(args)[1]} == {device}
    if device == "cpu":
        assert said.startswith("--device auto chose cpu (no CUDA device") and "no MPS device" in said
    monkeypatch.setattr(type(DEVICES["cuda"]), "unavailable", lambda self: None)  # as on a GPU machine
    assert auto_device() == ("cuda", "--device auto chose cuda")


@pytest.mark.parametrize("text,needle", [("auto,cpu", "auto picks one device and stands alone"),
                                         ("tpu", "unknown device 'tpu'; choose from: auto, all, cpu, cuda, mps")])
def test_bad_device_lists_are_one_line(text, needle, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--device", text])
    assert needle in capsys.readouterr().err


def test_auto_with_a_precision_the_device_cannot_run_says_what_auto_chose(capsys, monkeypatch):
    from bench.devices import auto_device

    if auto_device()[0] != "cpu":
        pytest.skip("the CPU is what auto picks only where there is no GPU")
    assert main(["run", "--loops", "manual", "--precision", "tf32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: --device auto chose cpu (") and "--device cpu --precision tf32" in err


def test_a_trainingarguments_json_drives_a_run(glue_dir, tmp_path, capsys):
    """TrainingArguments.to_json_string() as the recipe: its learning rate, batch size and steps in force."""
    from transformers import TrainingArguments

    ta = TrainingArguments(output_dir=str(tmp_path / "from-ta"), learning_rate=2e-4, per_device_train_batch_size=4,
                           max_steps=3, max_grad_norm=0.0, optim="adamw_torch", report_to="none")
    path = tmp_path / "args.json"
    path.write_text(ta.to_json_string())
    assert main(["run", "--config", str(path), "--loops", "manual", "--device", "cpu", "--model", "tiny",
                 "--glue-dir", glue_dir, "--train-samples", "16", "--eval-samples", "8", "--timing-warmup", "1",
                 "--no-progress", "--in-process"]) == 0
    (record,) = read_records(tmp_path / "from-ta")  # output_dir is OUT
    assert (record.run.lr, record.run.batch_size, record.run.max_steps, record.steps) == (2e-4, 4, 3, 3)
    assert record.settings["lr"] == 2e-4 and record.settings["grad_clip_max_norm"] is None
    assert record.run.eval_batch_size == 8  # per_device_eval_batch_size: the Trainer's default
    assert record.device_choice == ""  # --device named: nothing chosen


def test_every_trainingarguments_key_is_honoured_refused_or_ignored():
    from transformers import TrainingArguments

    from bench.config import trainingargs as ta

    keys = json.loads(TrainingArguments(output_dir="x").to_json_string())
    tables = [set(ta.RENAMED), set(ta.PRECISION_KEYS), set(ta.EVAL_KEYS), set(ta.FIXED), set(ta.IGNORED)]
    unplaced = [k for k in keys if not any(k in t for t in tables)]
    assert not unplaced, f"TrainingArguments keys bench neither honours, refuses nor ignores: {unplaced}"
    twice = [k for k in keys if sum(k in t for t in tables) > 1]
    assert not twice, f"in two tables: {twice}"
    flags = set(__import__("bench.config.recipe", fromlist=["actions"]).actions(_subparsers(build_parser())["run"]))
    assert all(flag in flags for flag, _ in ta.RENAMED.values()) and {"precision", "eval-every"} <= flags
    # The default TrainingArguments file is accepted as it is, and says what the Trainer would do.
    entries = {flag: value for _, flag, value in ta.translate(keys, flags) if value is not ta.UNSET}
    assert entries["adamw"] == "fused" and entries["max-grad-norm"] == 1.0 and entries["precision"] == "fp32"
    assert entries["epochs"] == 3 and "max-steps" not in entries and entries["report-to"] == "none"


@pytest.mark.parametrize("content,option", [
    ({"learning-rate": 3e-5}, ("lr", 3e-5)), ({"bf16": True}, ("precision", (["bf16"], True))),
    ({"use_cpu": True}, ("device", (["cpu"], True))),
    ({"eval_strategy": "steps", "eval_steps": 5}, ("eval_every", 5)),
    ({"lr_scheduler_type": "cosine", "logging_steps": 7}, ("scheduler", "cosine")),
])
def test_trainer_names_reach_the_options(content, option, tmp_path):
    from bench.config import recipe

    path = tmp_path / "r.json"
    path.write_text(json.dumps(content))
    parser = build_parser()
    args = parser.parse_args(recipe.with_config(["run", "--config", str(path)], str(path), recipe.run_parser(parser)))
    assert getattr(args, option[0]) == option[1]


def test_the_report_says_what_auto_chose(tmp_path):
    from bench.records import Record
    from bench.report import render

    r = Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="x",
               device_choice="--device auto chose cpu (no CUDA device | <b>here</b>)")
    text = render([r], tmp_path / "report.md")
    assert "Device: --device auto chose cpu (no CUDA device \\| \\<b\\>here\\</b\\>)." in text  # escaped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_psutil_busy_time_is_proc_stat_by_hand():
    """The figure before psutil (busy ticks of /proc/stat's first line over the tick rate) brackets
    psutil's, read between two readings by hand: the same counter, the same fields."""
    from bench.cell.load import busy_cpu_s

    def by_hand():
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")

    before, mine, after = by_hand(), busy_cpu_s(), by_hand()
    assert before - 1e-9 <= mine <= after + 1e-9 and after - before < 1.0
