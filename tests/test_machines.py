"""Runs measured on more than one machine (a folder resumed in another session): the report says which
run ran where, and compares time figures only within one machine (bench/analysis/machines.py)."""

import dataclasses
import json

import pytest

from bench.analysis import cells_of, comparison_groups, gap_rows
from bench.analysis.machines import Environment, Environments
from bench.analysis.quality import quality_rows
from bench.cli import main
from bench.precision import cpu_features
from bench.records import append_record, read_records
from bench.report import render
from bench.report.quality import HEADING as QUALITY_HEADING
from tests.test_seeds import _rec, _seed_case

ZEN3 = {"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.24.0", "accelerate": "1.15.0",
        "platform": "Linux-x86_64", "torch_threads": 2, "cpu_capability": "AVX2", "git_sha": "aaaa",
        "cpu_name": "AMD EPYC", "cpu_family_model": "25/1", "amx_bf16": False, "avx512_bf16": False}
ZEN5 = {**ZEN3, "cpu_capability": "AVX512", "cpu_family_model": "26/2", "avx512_bf16": True}


def _sweep(out, where):
    """manual, accelerate, trainer at seeds 1-3; ``where(loop, seed)`` is the environment of each run.
    trainer is wrong on 40 of 200 pairs; samples/s: manual 10, accelerate 9, trainer 12 on Zen 3,
    all three times as fast on Zen 5."""
    for seed in (1, 2, 3):
        ref, a, b = _seed_case(40, seed=seed)
        for loop, pred, sps, reached in (("manual", a, 10.0, (10.0 * seed, 20)), ("accelerate", a, 9.0, (9.0, 20)),
                                         ("trainer", b, 12.0, None)):
            env = where(loop, seed)
            r = _rec(loop, seed, pred, ref, sps * (3 if env is ZEN5 else 1), [0.6, 0.8, 0.9], reached)
            r.env = dict(env)
            append_record(out, r)
    return read_records(out)


@pytest.fixture
def seed3_elsewhere(tmp_path):
    """Seeds 1 and 2 on Zen 3; seed 3, every loop, resumed on Zen 5."""
    return _sweep(tmp_path / "run", lambda loop, seed: ZEN5 if seed == 3 else ZEN3)


def _section(text, heading):
    return text.split(f"## {heading}")[1].split("\n## ")[0]


def test_environments_group_runs_by_machine_and_software(seed3_elsewhere):
    envs = Environments.of(seed3_elsewhere)
    assert len(envs.seen) == 2 and envs.mixed_machines
    assert [envs.letter_of(r) for r in seed3_elsewhere] == ["A"] * 6 + ["B"] * 3
    assert envs.machine_count(seed3_elsewhere[:6]) == 1 and envs.machine_count(seed3_elsewhere) == 2
    # A new commit on the same machine is another environment, not another machine.
    other_sha = dataclasses.replace(seed3_elsewhere[0])
    other_sha.env = {**ZEN3, "git_sha": "bbbb"}
    envs = Environments.of(seed3_elsewhere[:6] + [other_sha])
    assert len(envs.seen) == 2 and not envs.mixed_machines
    # A record with nothing measured (a cell skipped before its process) has no environment.
    skipped = dataclasses.replace(seed3_elsewhere[0], status="skipped")
    skipped.env = {}
    assert Environment.of(skipped) is None and not Environments.of(seed3_elsewhere[:6] + [skipped]).mixed


def test_the_report_says_which_runs_ran_on_which_machine(seed3_elsewhere, tmp_path):
    text = render(seed3_elsewhere, tmp_path / "report.md")
    env = _section(text, "Environment")
    assert "measured in 2 environments, on 2 machines" in env
    assert "| | A | B | |" in env
    assert "| runs | 6 run(s): seed 1: every loop; seed 2: every loop | 3 run(s): seed 3: every loop | |" in env
    assert "| CPU | AMD EPYC, family/model 25/1 (torch capability AVX2, AMX-BF16 no, AVX512-BF16 no, 2 threads) | " \
           "AMD EPYC, family/model 26/2 (torch capability AVX512, AMX-BF16 no, AVX512-BF16 yes, 2 threads) | " \
           "*differs* |" in env
    assert "| torch | 2.13.0+cpu | 2.13.0+cpu | |" in env
    bottom = _section(text, "Bottom line")
    assert "**cpu / fp32 / seed 3** (AMD EPYC family/model 26/2, 2 threads; environment B;" in bottom
    assert "**cpu / fp32 / seed 1** (AMD EPYC family/model 25/1, 2 threads; environment A;" in bottom
    assert bottom.count("2 machines in these records") == 3
    assert "one machine: these figures compare within this CPU/GPU class only" not in bottom
    # Each seed's loops ran side by side: their speed still compares, seed by seed.
    seed3 = bottom.split("**cpu / fp32 / seed 3**")[1].split("Cannot tell")[0]
    assert seed3.count("[step time 1.00× manual's]") == 2


def test_one_machine_keeps_the_single_environment_table(tmp_path):
    records = _sweep(tmp_path / "run", lambda loop, seed: ZEN3)
    text = render(records, tmp_path / "report.md")
    env = _section(text, "Environment")
    assert "environments" not in env and "| | |" in env and "25/1" in env
    assert "one machine: these figures compare within this CPU/GPU class only" in _section(text, "Bottom line")


@pytest.fixture
def trainer_elsewhere(tmp_path):
    """The trainer's runs resumed on Zen 5 at every seed, the other loops on Zen 3."""
    return _sweep(tmp_path / "run", lambda loop, seed: ZEN5 if loop == "trainer" else ZEN3)


def test_no_speed_verdict_between_runs_of_two_machines(trainer_elsewhere, tmp_path):
    for _, group in comparison_groups(cells_of(trainer_elsewhere)).items():
        rows = {row.loop: row for row in gap_rows(group)}
        assert rows["trainer"].step_ratio is None and rows["trainer"].sps_ratio is None  # 3x faster: the machine
        assert rows["accelerate"].step_ratio == pytest.approx(1.0) and rows["accelerate"].sps_ratio == pytest.approx(0.9)
    text = render(trainer_elsewhere, tmp_path / "report.md")
    bottom = _section(text, "Bottom line")
    assert "**cpu / fp32 / seed 1** (2 machines: environments A, B;" in bottom
    trainer = next(line for line in bottom.splitlines() if line.startswith("- **trainer**: "))
    assert "manual's" not in trainer and "36.0 samples/s" in trainer
    assert "these runs were measured on 2 machines (environments A, B" in bottom
    assert "only their F1 does" in bottom
    assert "startup:" not in bottom and "memory:" not in bottom  # no extremes across machines


def test_quality_compares_speed_and_time_to_target_within_a_seeds_machine(trainer_elsewhere, seed3_elsewhere, tmp_path):
    (q,) = quality_rows(cells_of(trainer_elsewhere))
    assert q.machines == 2
    assert q.loops["trainer"].speed_ratio is None  # never on manual's machine
    assert q.loops["accelerate"].speed_ratio == pytest.approx(0.9)
    (q,) = quality_rows(cells_of(seed3_elsewhere))
    assert q.loops["trainer"].speed_ratio == pytest.approx(1.2)  # every seed's ratio is 1.2 on its own machine
    assert q.loops["manual"].to_target_s == {1: 10.0, 2: 20.0, 3: 30.0}
    text = render(seed3_elsewhere, tmp_path / "report.md")
    section = _section(text, QUALITY_HEADING)
    assert "These runs were measured on 2 machines" in section and "a median over seeds mixes machines" in section
    assert "| accelerate | 3 |" in section
    row = next(line for line in section.splitlines() if line.startswith("| trainer | 3 |") and "of 200" in line)
    assert row.endswith("| not reached | 30 |")  # per seed: the loop's time to target and manual's
    bottom = _section(text, "Bottom line")
    assert "- **trainer** (1.20× manual's samples/s, median over seeds)" in bottom
    assert "- **manual**: the reference, 10.0 samples/s (median over seeds measured on 2 machines)" in bottom


def test_resume_on_another_cpu_warns_in_one_line(glue_dir, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["run", "--loops", "manual", "--model", "tiny", "--glue-dir", glue_dir, "--max-steps", "2",
            "--timing-warmup", "1", "--train-samples", "16", "--eval-samples", "8", "--no-progress", "--in-process"]
    assert main([*base, "--out", str(out)]) == 0
    assert "another CPU" not in capsys.readouterr().err
    # The same folder, as if its cell had run on another CPU: nothing runs again, the warning says so.
    results = out / "results.jsonl"
    line = json.loads(results.read_text())
    line["env"] = {**line["env"], "cpu_family_model": "99/9"}
    results.write_text(json.dumps(line) + "\n")
    assert main([*base, "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    warnings = [x for x in err.splitlines() if "another CPU" in x]
    here = cpu_features()
    assert len(warnings) == 1 and warnings[0].startswith(f"bench: warning: --resume {out}: ")
    assert "family/model 99/9" in warnings[0] and f"family/model {here['cpu_family_model']}" in warnings[0]
    assert "already recorded" in err
