"""Runs measured on more than one machine (a folder resumed in another session): the report says which
run ran where, and compares time figures only within one machine (bench/analysis/machines.py)."""

import dataclasses
import json

import pytest

from bench.analysis import cells_of, comparison_groups, gap_rows
from bench.analysis.machines import Environment, Environments, machine_count, same_machine
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


SPS = {"manual": {1: 10.0, 2: 11.0, 3: 20.0}, "accelerate": {1: 9.0, 2: 9.0, 3: 9.0},
       "trainer": {1: 12.0, 2: 15.0, 3: 13.0}}  # samples/s on Zen 3; three times as many on Zen 5


def _sweep(out, where):
    """manual, accelerate, trainer at seeds 1-3; ``where(loop, seed)`` is the environment of each run.
    trainer is wrong on 40 of 200 pairs."""
    for seed in (1, 2, 3):
        ref, a, b = _seed_case(40, seed=seed)
        for loop, pred, reached in (("manual", a, (10.0 * seed, 20)), ("accelerate", a, (9.0, 20)),
                                    ("trainer", b, None)):
            env = where(loop, seed)
            r = _rec(loop, seed, pred, ref, SPS[loop][seed] * (3 if env is ZEN5 else 1), [0.6, 0.8, 0.9], reached)
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
    assert machine_count(seed3_elsewhere[:6]) == 1 and machine_count(seed3_elsewhere) == 2
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
    bottom, seeds = _section(text, "Bottom line"), _section(text, "Each seed's runs")
    assert "**cpu / fp32 / seed 3**: AMD EPYC family/model 26/2, 2 threads; environment B;" in seeds
    assert "**cpu / fp32 / seed 1**: AMD EPYC family/model 25/1, 2 threads; environment A;" in seeds
    assert bottom.count("2 machines in these records") == 1  # said once
    assert "(one machine)" not in bottom
    # Each seed's loops ran side by side: their speed still compares, seed by seed.
    seed3 = seeds.split("**cpu / fp32 / seed 3**")[1]
    assert seed3.count("[1.00×](#is-each-loop-as-fast-as-the-manual-loop)") == 2


def test_one_machine_keeps_the_single_environment_table(tmp_path):
    records = _sweep(tmp_path / "run", lambda loop, seed: ZEN3)
    text = render(records, tmp_path / "report.md")
    env = _section(text, "Environment")
    assert "environments" not in env and "| | |" in env and "25/1" in env
    assert "how these figures carry to another CPU or GPU class (one machine)" in _section(text, "Bottom line")


@pytest.fixture
def trainer_elsewhere(tmp_path):
    """The trainer's runs resumed on Zen 5 at every seed, the other loops on Zen 3."""
    return _sweep(tmp_path / "run", lambda loop, seed: ZEN5 if loop == "trainer" else ZEN3)


def test_no_speed_verdict_between_runs_of_two_machines(trainer_elsewhere, tmp_path):
    for (_, _, variant), group in comparison_groups(cells_of(trainer_elsewhere)).items():
        seed = int(variant.split()[-1])
        rows = {row.loop: row for row in gap_rows(group)}
        assert rows["trainer"].step_ratio is None and rows["trainer"].sps_ratio is None  # 3x faster: the machine
        assert rows["trainer"].phase_delta_s is None and rows["trainer"].other_machine
        assert rows["accelerate"].step_ratio == pytest.approx(1.0)
        assert rows["accelerate"].sps_ratio == pytest.approx(9 / SPS["manual"][seed])
    text = render(trainer_elsewhere, tmp_path / "report.md")
    bottom, seeds = _section(text, "Bottom line"), _section(text, "Each seed's runs")
    assert "**cpu / fp32 / seed 1**: 2 machines: environments A, B;" in seeds
    seed1 = seeds.split("**cpu / fp32 / seed 1**")[1].split("**cpu / fp32 / seed 2**")[0]
    trainer = next(line for line in seed1.splitlines() if line.startswith("| **trainer** |"))
    assert "×" not in trainer and "[36.0](#cpu)" in trainer  # no ratio across machines
    accelerate = next(line for line in seed1.splitlines() if line.startswith("| **accelerate** |"))
    assert "[1.00×](#is-each-loop-as-fast-as-the-manual-loop)" in accelerate  # same machine as manual's: judged
    assert "cpu / fp32 / seed 1: speed, memory and startup across the machines its runs were measured on" in bottom
    assert "rerun its loops on one machine" in bottom
    assert "first step soonest" not in bottom and "in memory" not in bottom  # no extremes across machines


def test_quality_compares_speed_and_time_to_target_within_a_seeds_machine(trainer_elsewhere, seed3_elsewhere, tmp_path):
    (q,) = quality_rows(cells_of(trainer_elsewhere))
    assert q.machines == 2 and q.seed_split
    assert q.loops["trainer"].speed_ratio is None  # never on manual's machine
    assert q.loops["accelerate"].speed_ratio == pytest.approx(9 / 11)  # median of 0.9, 0.82, 0.45
    assert q.loops["manual"].machines == 1 and q.loops["trainer"].machines == 1
    text = render(trainer_elsewhere, tmp_path / "elsewhere.md")
    section, bottom = _section(text, QUALITY_HEADING), _section(text, "Bottom line")
    assert "and some seed's loops did not." in section
    row = next(line for line in section.splitlines() if line.startswith("| trainer | 1 |") and "of 200" in line)
    assert row.endswith("| another machine than manual's | - |")  # no time set beside manual's across machines
    manual = next(line for line in bottom.splitlines() if line.startswith("| **manual** (the tutorial's loop) |"))
    assert "machines" not in manual  # manual's own runs are all on one machine
    assert "| **trainer** | no ratio: never on manual's machine |" in bottom

    (q,) = quality_rows(cells_of(seed3_elsewhere))
    # Per seed on its own machine: 1.2, 1.36, 0.65 -> 1.2 (the ratio of the medians would be 15/11).
    assert q.loops["trainer"].speed_ratio == pytest.approx(1.2)
    assert q.loops["manual"].to_target_s == {1: 10.0, 2: 20.0, 3: 30.0} and not q.seed_split
    text = render(seed3_elsewhere, tmp_path / "report.md")
    section = _section(text, QUALITY_HEADING)
    assert "These runs were measured on 2 machines" in section and "(every seed's loops did)." in section
    assert "| accelerate | 3 |" in section
    row = next(line for line in section.splitlines() if line.startswith("| trainer | 3 |") and "of 200" in line)
    assert row.endswith("| not reached | 30 |")  # per seed: the loop's time to target and manual's
    bottom = _section(text, "Bottom line")
    assert "| **trainer** | 1.20× manual's |" in bottom
    assert "| **manual** (the tutorial's loop) | 11.0 samples/s (median over 2 machines) |" in bottom


def test_a_loop_resumed_elsewhere_at_some_seeds_is_paired_with_manual_at_the_others(tmp_path):
    """accelerate's seeds 2 and 3 resumed on Zen 5, the rest on Zen 3: its speed beside manual's is
    seed 1's alone (9 / 10), and the bottom line names the seeds it leaves out."""
    records = _sweep(tmp_path / "run", lambda loop, seed: ZEN5 if loop == "accelerate" and seed > 1 else ZEN3)
    (q,) = quality_rows(cells_of(records))
    assert q.loops["accelerate"].beside_reference == {1: True, 2: False, 3: False}
    assert q.loops["accelerate"].speed_ratio == pytest.approx(0.9)
    bottom = _section(render(records, tmp_path / "report.md"), "Bottom line")
    assert "| **accelerate** | 0.90× manual's (seed 1; 2, 3 on another machine) |" in bottom
    trainer = next(line for line in bottom.splitlines() if line.startswith("| **trainer** |"))
    assert "× manual's |" in trainer and "another machine" not in trainer  # every seed beside manual's


def test_a_cpu_cell_and_a_cuda_cell_of_one_box_are_one_machine_and_old_records_match_any(seed3_elsewhere):
    cpu = seed3_elsewhere[0]
    cuda = dataclasses.replace(cpu, device="cuda")
    cuda.env = {**ZEN3, "gpu_name": "NVIDIA H200", "gpu_count": 1, "gpu_capability": "9.0", "cuda": "12.8"}
    old = dataclasses.replace(cpu)
    old.env = {k: v for k, v in ZEN3.items() if k not in ("cpu_family_model", "avx512_bf16")}  # before those keys
    ddp = dataclasses.replace(cuda)
    ddp.env = {**cuda.env, "gpu_count": 8, "torch_threads": 1}  # a DDP cell of the same box sees all its GPUs
    assert not Environments.of([cpu, cuda, ddp]).mixed  # one sweep's CPU, CUDA and DDP cells: one environment
    envs = Environments.of([cpu, cuda, ddp, old])
    assert len(envs.seen) == 2 and len(envs.machines) == 1 and not envs.mixed_machines  # the old one: its rows
    assert same_machine([cpu, cuda, ddp, old])
    assert not same_machine([cpu, seed3_elsewhere[-1]])  # Zen 3 and Zen 5
    other_gpu = dataclasses.replace(cuda)
    other_gpu.env = {**cuda.env, "gpu_name": "NVIDIA H100"}
    assert not same_machine([cuda, other_gpu]) and same_machine([cpu, other_gpu])
    # The best-known runs found the machines, whatever came first: a CPU cell first, then two GPUs.
    envs = Environments.of([cpu, cuda, other_gpu])
    assert len(envs.machines) == 2 and envs.mixed_machines and machine_count([cpu, cuda, other_gpu]) == 2
    # An old record first, then Zen 3 and Zen 5: two machines, not one.
    zen5 = seed3_elsewhere[-1]
    envs = Environments.of([old, cpu, zen5])
    assert len(envs.machines) == 2 and envs.mixed_machines and machine_count([old, cpu, zen5]) == 2


def test_the_devices_table_and_gap_table_give_no_ratio_across_machines(trainer_elsewhere, tmp_path):
    text = render(trainer_elsewhere, tmp_path / "report.md")
    gaps = _section(text, "Is each loop as fast as the manual loop?")
    trainer = [line for line in gaps.splitlines() if "| trainer |" in line]
    assert len(trainer) == 3 and all("measured on another machine than the manual loop's runs" in x for x in trainer)
    assert all("| - | - |" in x for x in trainer)  # no samples/s ratio, no step ratio
    accelerate = next(line for line in gaps.splitlines() if "| seed 1 | accelerate |" in line)
    assert "| 0.900 | 1.000 |" in accelerate
    speedup = _column(text, "trainer", "speed-up")
    assert speedup and all(v == "-" for v in speedup)  # 3.6x would be the machine


def _column(text, loop, label):
    """The values of one column of the device table, for one loop's rows."""
    section = _section(text, "cpu")
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    i = header.index(label)
    rows = [[v.strip() for v in line.strip("|").split("|")] for line in lines[2:]]
    return [row[i] for row in rows if loop in row]


def test_resume_warning_ignores_keys_an_old_record_lacks(tmp_path):
    from bench.sweep.outdir import other_machines

    here = cpu_features()
    r = _rec("manual", 1, [1, 0], [1, 0])
    r.env = {"torch": "2.13.0+cpu", "cpu_name": here["cpu_name"]}  # recorded before family/model and the flags
    assert other_machines(tmp_path, [r]) is None
    r.env = {**r.env, "cpu_family_model": "99/9"}
    assert "family/model 99/9" in other_machines(tmp_path, [r])


def test_resume_on_another_cpu_warns_in_one_line(glue_dir, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir, "--max-steps", "2",
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


def test_a_cell_records_the_commit_it_started_with(tiny_run, monkeypatch):
    """A commit made while a cell trains is not credited with the code the cell imported."""
    from bench.cell import record as cellrecord
    from bench.cell import envinfo
    from bench.cell.main import run_cell
    from bench.config import Cell

    head = {"sha": "aaaa"}
    monkeypatch.setattr(envinfo, "_read_git_sha", lambda: head["sha"])
    read_back = cellrecord.read_back

    def commit_after_training(r, result):  # training is over: someone commits
        head["sha"] = "bbbb"
        return read_back(r, result)

    monkeypatch.setattr(cellrecord, "read_back", commit_after_training)
    envinfo.git_sha.cache_clear()
    try:
        record = run_cell(Cell(loop="manual", device="cpu", precision="fp32", run=tiny_run(max_steps=4)),
                          progress=False)
    finally:
        envinfo.git_sha.cache_clear()
    assert head["sha"] == "bbbb"  # the commit happened before the record was made
    assert record.status == "ok" and record.env["git_sha"] == "aaaa"


@pytest.fixture
def parity_elsewhere(tmp_path):
    """A --parity run at the tutorial's settings: accelerate agrees with manual on its machine; trainer's
    losses are 1e-3 apart but it was resumed on Zen 5; fabric's are 1e-3 apart on manual's machine."""
    out = tmp_path / "parity"
    ref, a, _ = _seed_case(0, seed=1)
    for loop, env, bump in (("manual", ZEN3, 0.0), ("accelerate", ZEN3, 0.0), ("trainer", ZEN5, 1e-3),
                            ("fabric", ZEN3, 1e-3)):
        r = _rec(loop, 1, a, ref)
        r.config["run"].update(parity=True, defaults="tutorial")
        r.step_losses = [loss * (1 + bump) for loss in r.step_losses]
        r.env = dict(env)
        append_record(out, r)
    return read_records(out)


def test_parity_apart_on_another_machine_is_no_verdict_but_apart_on_one_fails(parity_elsewhere, tmp_path):
    from bench.analysis import Parity, parity_lines, parity_rows

    (group,) = comparison_groups(cells_of(parity_elsewhere)).values()
    rows = {row.loop: row for row in parity_rows(group)}
    assert rows["accelerate"].verdict is Parity.AGREES and not rows["accelerate"].other_machine
    assert rows["trainer"].verdict is Parity.ELSEWHERE and rows["trainer"].other_machine
    assert rows["fabric"].verdict is Parity.FAILS  # the same machine: a fault of the loop
    ok, lines = parity_lines(cells_of(parity_elsewhere))
    assert not ok  # fabric fails; trainer alone would not
    assert any("trainer vs manual" in line and "another machine than manual's: no verdict" in line for line in lines)
    ok_without_fabric, _ = parity_lines(cells_of([r for r in parity_elsewhere if r.loop != "fabric"]))
    assert ok_without_fabric
    text = render(parity_elsewhere, tmp_path / "report.md")
    table = _section(text, "Do the loops train the same thing?")
    trainer = next(line for line in table.splitlines() if line.startswith("| trainer |"))
    assert "measured on another machine than manual's" in trainer and "no verdict" in trainer
    assert "another machine" not in next(line for line in table.splitlines() if line.startswith("| fabric |"))
    bottom = _section(text, "Bottom line")
    assert "whether trainer trains the same thing as manual (step losses apart, measured on another machine)" in bottom
    assert "some loop's step losses differ from the manual loop's by up to 1.0e-03" in bottom  # fabric's, judged


def test_compare_gives_no_ratio_or_gate_pass_for_a_cell_whose_repeats_span_machines(tmp_path):
    """B's trainer cell: repeat 0 on Zen 3, repeat 1 resumed on Zen 5 (three times as fast): its
    median mixes machines, so compare gives it no ratio, and --fail-above cannot pass it."""
    from tests.test_cli import run_cli
    from tests.test_report import rec

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, loop, repeat, env, sps in ((a, "manual", 0, ZEN3, 10.0), (a, "manual", 1, ZEN3, 10.0),
                                           (a, "trainer", 0, ZEN3, 12.0), (a, "trainer", 1, ZEN3, 12.0),
                                           (b, "manual", 0, ZEN3, 10.1), (b, "manual", 1, ZEN3, 9.9),
                                           (b, "trainer", 0, ZEN3, 12.0), (b, "trainer", 1, ZEN5, 36.0)):
        r = rec(loop, sps=sps, repeat=repeat)
        r.env = dict(env)
        append_record(folder, r)
    result = run_cli("compare", str(a), str(b), "--fail-above", "10")
    assert result.returncode == 1, result.stderr
    trainer = next(line for line in result.stdout.splitlines() if line.startswith("| trainer |"))
    assert "no verdict: B's runs of this cell were measured on more than one machine" in trainer
    assert " 2.000 " not in trainer and "| - |" in trainer  # no B/A ratio of a mixed median
    manual = next(line for line in result.stdout.splitlines() if line.startswith("| manual |"))
    assert "same speed" in manual
    assert "**Failed, missing in B, or not judged:** trainer/cpu/fp32 (B's runs of this cell were measured on " \
           "more than one machine: no samples/s to gate (rerun it on one machine))" in result.stdout
    assert "trainer/cpu/fp32: B's runs of this cell were measured on more than one machine" in result.stderr
    assert "B's runs were measured on 2 machines" in result.stdout
    assert run_cli("compare", str(a), str(b)).returncode == 0  # without a gate, a comparison is a comparison


def test_the_lora_section_names_each_loops_evidence_and_warns_of_machines(tmp_path):
    """The committed full-vs-LoRA records: one machine, then accelerate's runs moved to another CPU.
    The quality line says which loop each reason is said of, and the section says when its rows span
    machines (its samples/s and peaks are each loop's own)."""
    from pathlib import Path

    from bench.report.finetune import HEADING as LORA_HEADING
    records = read_records(Path(__file__).parents[1] / "reports" / "cpu-minilm-lora-seeds" / "results.jsonl")
    # The folder itself may span machines: keep the runs of the manual loop's machine.
    manuals = {r.env["cpu_family_model"] for r in records if r.loop == "manual"}
    assert len(manuals) == 1
    records = [r for r in records if r.env["cpu_family_model"] in manuals]
    section = _section(render(records, tmp_path / "one.md"), LORA_HEADING)
    assert "These runs were measured on" not in section
    moved = []
    for r in records:
        if r.loop == "accelerate" and r.seed != 1:
            continue  # accelerate at one seed: its verdict rests on other evidence than the others'
        r = dataclasses.replace(r)
        if r.loop == "accelerate":
            r.env = {**r.env, "cpu_family_model": "99/9"}
        moved.append(r)
    section = _section(render(moved, tmp_path / "two.md"), LORA_HEADING)
    assert "These runs were measured on 2 machines ([Environment](#environment)" in section
    quality = next(line for line in section.splitlines() if line.startswith("Quality: "))
    assert "; accelerate: too few seeds (1;" in quality
    first = quality.split("; accelerate:")[0]  # the loops at three seeds, then their one reason
    assert first.startswith("Quality: manual, trainer, ") and "lightning: the F1 difference's 95% CI" in first
