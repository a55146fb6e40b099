"""Nothing wrong is ever recorded as ok: one test per way a figure could be wrong or lost.

Divergence, bad numbers, mixed configurations in one OUT, two writers, a truncated results file,
a report written over records, an unwritable OUT, an empty or foreign results file, orphaned DDP
workers, SIGTERM, Markdown injection from a model path, a busy machine, and a regression gate on
a machine class without a baseline of its own.  Then: a full disk during an append, a
log and a report (on a small tmpfs where one can be mounted, and an injected ENOSPC); symbolic
links where bench writes; plot names from records; other users' stale cell folders; the compare
gate on failed or missing cells; the data fingerprint; a window too short to judge busy; a
tokenizer that is not the model's; the batch and accumulation in force; a cell's memory; and each
traceback or unclear line turned into one line.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.config import Cell, RunConfig
from bench.records import RESULTS_FILE, Record, append_record, read_records
from tests.conftest import ROOT
from tests.test_cli import run_cli


def _args(glue_dir, out, *extra, loops="manual"):
    """A short tiny-model sweep; ``--out OUT`` last, so ``[:-2]`` leaves it out (for ``--resume``)."""
    return ["run", "--loops", loops, "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
            "--max-steps", "3", "--timing-warmup", "1", "--train-samples", "24", "--eval-samples", "8",
            "--no-progress", *extra, "--out", str(out)]


@pytest.fixture(scope="module")
def one_cell_out(glue_dir, tmp_path_factory):
    """One short in-process sweep of ``_args``, run once for the module: the tests that need an OUT
    holding a finished cell (to resume, fill the disk under, or compare against) start from a copy."""
    out = tmp_path_factory.mktemp("one-cell") / "out"
    first = run_cli(*_args(glue_dir, out, "--in-process"))
    assert first.returncode == 0, first.stderr[-2000:]
    return out


def _copy_out(src, dest):
    """A copy of a finished OUT at ``dest`` (its records, report, plots, logs and lock file)."""
    import shutil

    shutil.copytree(src, dest, symlinks=True)
    return dest


def _one_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _strict(line: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


# ---- divergence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", ["inf", "nan", "-inf"])
def test_non_finite_lr_is_refused_before_anything_runs(glue_dir, tmp_path, lr):
    line = _one_line(run_cli(*_args(glue_dir, tmp_path / "out", f"--lr={lr}")))
    assert "--lr" in line and "finite" in line
    assert not (tmp_path / "out").exists()


def test_a_diverging_run_is_failed_with_its_steps_and_strict_json(glue_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli(*_args(glue_dir, out, "--lr", "1e36", "--max-steps", "8", "--in-process", loops="manual,trainer"))
    assert result.returncode == 1, result.stderr[-2000:]
    records = read_records(out)
    assert [r.status for r in records] == ["failed", "failed"]
    for r in records:
        assert r.reason.startswith("diverged at step "), r.reason
        step = int(r.reason.split()[3])
        assert "(loss nan)" in r.reason or "(loss inf)" in r.reason or "gradient norm" in r.reason
        # The steps up to the divergence stay, with the non-finite one written as null.
        assert len(r.step_losses) == step and r.step_losses[-1] is None
        assert all(x is not None for x in r.step_losses[:-1])
    for line in (out / RESULTS_FILE).read_text().splitlines():
        _strict(line)  # RFC 8259: no bare NaN / Infinity
    assert "None: every cell ran and is ok" not in (out / "report.md").read_text()


def test_meter_finds_the_first_non_finite_step():
    import torch

    from bench.meter import Diverged, StepMeter

    meter = StepMeter("cpu", timing_warmup=0, total_steps=5, progress=False)
    meter.start()
    batch = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    meter.step(torch.tensor(0.7), batch)
    meter.observe_grad_norm(torch.tensor(float("inf")))
    with pytest.raises(Diverged, match=r"diverged at step 2 \(gradient norm inf\)"):
        meter.step(torch.tensor(0.6), batch)


def test_an_inf_gradient_norm_under_fp16_scaling_is_an_overflow_not_divergence():
    import torch

    from bench.meter import StepMeter

    meter = StepMeter("cpu", timing_warmup=0, total_steps=2, progress=False, grad_scaler=True)
    meter.start()
    batch = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    meter.observe_grad_norm(torch.tensor(float("inf")))
    meter.step(torch.tensor(0.7), batch)  # the scaler skips this step; nothing diverged
    meter.step(torch.tensor(0.6), batch)


@pytest.mark.parametrize("args,needle", [
    (["--weight-decay", "nan"], "--weight-decay"),
    (["--seed", "-1"], "--seed"),
    (["--max-grad-norm", "inf"], "--max-grad-norm"),
])
def test_bad_numbers_are_one_line_before_anything_runs(glue_dir, tmp_path, args, needle):
    line = _one_line(run_cli(*_args(glue_dir, tmp_path / "out", *args)))
    assert needle in line


def test_config_validation_refuses_what_the_cli_cannot_see():
    from bench.config import ConfigError

    for bad in (dict(weight_decay=float("nan")), dict(seed=-1), dict(seed=2**32), dict(adam_beta2=1.0),
                dict(adam_eps=0.0), dict(lr=float("inf"))):
        with pytest.raises(ConfigError):
            RunConfig(**bad).validate()


# ---- one OUT, one configuration, one writer -----------------------------------------------------


def test_resume_with_another_lr_is_refused_naming_the_field(glue_dir, tmp_path, one_cell_out):
    out = _copy_out(one_cell_out, tmp_path / "out")
    before = (out / RESULTS_FILE).read_text()
    line = _one_line(run_cli(*_args(glue_dir, out, "--lr", "1e-4", "--in-process")[:-2], "--resume", str(out)))
    assert "run.lr (5e-05 recorded, 0.0001 now)" in line
    # Reusing an OUT with records without --resume: refused, with the fix.
    line = _one_line(run_cli(*_args(glue_dir, out, "--in-process")))
    assert f"--resume {out}" in line and "new --out" in line
    assert (out / RESULTS_FILE).read_text() == before
    # More repeats of the same cells are comparable.
    more = run_cli(*_args(glue_dir, out, "--repeats", "2", "--in-process")[:-2], "--resume", str(out))
    assert more.returncode == 0, more.stderr[-2000:]
    assert [r.repeat for r in read_records(out)] == [0, 1]


def test_a_second_sweep_on_the_same_out_is_refused_naming_the_holder(glue_dir, tmp_path):
    from bench.sweep.outdir import OutLock

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from bench.sweep.outdir import OutLock\nOutLock(Path(sys.argv[1])).acquire()\n"
                               "print('locked', flush=True)\ntime.sleep(60)", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = _one_line(run_cli(*_args(glue_dir, out)))
        assert f"in use by another bench sweep (PID {holder.pid})" in line
    finally:
        holder.kill()
        holder.wait()
    assert not (out / RESULTS_FILE).exists()
    # The holder is dead: its lock file stays, with its PID in it, and blocks nothing.
    assert (out / ".bench.lock").exists()
    OutLock(out).acquire().release()


def test_a_truncated_results_file_is_refused_and_left_as_it_is(glue_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    content = '{"loop": "manual", "device": "cpu", "precision": "fp32", "status": "ok"}\n{"loop": "manu'
    (out / RESULTS_FILE).write_text(content)
    line = _one_line(run_cli(*_args(glue_dir, out)))
    assert "results.jsonl:2: truncated last line" in line and "move" in line
    assert (out / RESULTS_FILE).read_text() == content


def test_an_unwritable_out_is_refused_before_training(glue_dir, tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits: use a file system that refuses everyone
        out = Path("/proc/bench-cannot-write-here")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        out = parent / "out"
    t0 = time.monotonic()
    line = _one_line(run_cli(*_args(glue_dir, out)))
    assert "not writable" in line
    assert time.monotonic() - t0 < 60  # nothing trained


# ---- the report --------------------------------------------------------------------------------


def test_report_never_writes_over_records_or_foreign_files(tmp_path):
    out = tmp_path / "out"
    rec = Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="test")
    append_record(out, rec)
    before = (out / RESULTS_FILE).read_text()
    line = _one_line(run_cli("report", str(out), "-o", str(out / RESULTS_FILE)))
    assert "results file" in line
    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n")
    line = _one_line(run_cli("report", str(out), "-o", str(notes)))
    assert "not written by bench report" in line
    assert (out / RESULTS_FILE).read_text() == before and notes.read_text() == "my notes\n"
    ok = run_cli("report", str(out), "-o", str(tmp_path / "r.md"))
    assert ok.returncode == 0, ok.stderr
    again = run_cli("report", str(out), "-o", str(tmp_path / "r.md"))  # its own file: remade
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("content,needle", [
    ("", "holds no records"),
    ('{"loop": "manual", "precision": "fp32", "status": "ok"}\n', "no 'device' field"),
])
def test_report_on_an_empty_or_foreign_file_is_one_line(tmp_path, content, needle):
    (tmp_path / RESULTS_FILE).write_text(content)
    line = _one_line(run_cli("report", str(tmp_path)))
    assert needle in line


def test_user_strings_cannot_change_the_reports_structure(tmp_path):
    from bench.report import render

    evil = "models/x```\n# Injected heading\n| a | b |"
    run = RunConfig(model=evil, max_steps=3)
    records = []
    for loop in ("manual", "trainer"):
        cell = Cell(loop, "cpu", "fp32", run)
        r = Record(loop=loop, device="cpu", precision="fp32", status="ok", cell_id=cell.cell_id,
                   config=cell.to_dict(), command=f"python -m bench run --model '{evil}'",
                   samples_per_s=10.0, step_s=[0.1] * 3, step_losses=[0.7, 0.6, 0.5], timed_s=0.2,
                   timing_warmup_steps=1, step_samples=[8] * 3, step_padded_tokens=[64] * 3,
                   model={"name": evil, "weights": f"pretrained:{evil}", "tokenizer": evil},
                   data_source=f"local:{evil}", settings={"model_path": evil, "lr": 5e-5})
        records.append(Record.from_dict(json.loads(r.to_json())))
    records.append(Record(loop="accelerate", device="cpu", precision="fp32", status="failed",
                          reason=f"could not load {evil}"))
    text = render(records, tmp_path / "report.md")
    # Outside code blocks, no line comes from the evil string: the only level-1 heading is the
    # report's own, and every block that opens closes with the same (longer) fence.
    outside, fence = [], None
    for line in text.splitlines():
        if fence is None and line.startswith("```"):
            fence = line
        elif fence is not None and line == fence:
            fence = None
        elif fence is None:
            outside.append(line)
    assert fence is None
    assert not any(line.startswith("# Injected") for line in outside)
    assert [h for h in outside if h.startswith("# ")] == [outside[0]] and outside[0].startswith("# bench report")
    assert "`" * 4 in text  # the command's fence outgrows the triple backticks inside it
    # Table rows keep their column count.
    for table_row in (line for line in text.splitlines() if line.startswith("| accelerate | cpu | fp32 | failed")):
        assert table_row.replace("\\|", "").count("|") == 6


# ---- processes ---------------------------------------------------------------------------------


def _cell_processes(sweep_pid: int) -> list[int]:
    """PIDs whose command line names a cell folder of this sweep (the cell and torchrun's workers)."""
    needle = f"bench-cell-{sweep_pid}-".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_sigkill_of_the_sweep_takes_the_ddp_workers_with_it(glue_dir, tmp_path):
    out = tmp_path / "out"
    sweep = subprocess.Popen([sys.executable, "-m", "bench", *_args(glue_dir, out, "--nproc", "2", "--max-steps", "400",
                                                                    "--train-samples", "3668")],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: len(_cell_processes(sweep.pid)) >= 3, 120), "torchrun and 2 workers never started"
    finally:
        sweep.kill()
        sweep.wait()
    assert _wait_for(lambda: not _cell_processes(sweep.pid), 20), _cell_processes(sweep.pid)
    # Its cell folder is cleared by the next sweep, which finds its owner dead.
    from bench.sweep.driver import remove_stale_cell_dirs

    remove_stale_cell_dirs()
    assert not list(Path(tempfile.gettempdir()).glob(f"bench-cell-{sweep.pid}-*"))


@pytest.mark.slow
def test_a_ddp_cell_past_its_timeout_leaves_no_worker(glue_dir, tmp_path):
    from bench.sweep.driver import run_isolated

    run = RunConfig(model="tiny", glue_dir=glue_dir, seed=3)  # seed 3: both ranks hang
    record = run_isolated(Cell("manual", "cpu", "fp32", run, nproc=2), timeout_s=15, progress=False, command="test",
                          module="tests.helpers.misbehaving_cell")
    assert record.status == "failed" and record.reason.startswith("timed out after 15 s")
    assert "*****" not in record.reason and "OMP_NUM_THREADS" not in record.reason  # torchrun's words, not the cell's
    assert _wait_for(lambda: not _cell_processes(os.getpid()), 20), _cell_processes(os.getpid())


def test_a_failing_rank_is_named_with_its_own_error(failing_rank_cell):
    r, _ = failing_rank_cell  # the two-rank cell whose rank 1 raises, shared with test_ddp
    assert r.status == "failed"
    assert r.reason.endswith("rank 1: RuntimeError: rank 1 gives up"), r.reason
    assert "*****" not in r.reason


def test_sigterm_is_handled_like_ctrl_c(glue_dir, tmp_path):
    out = tmp_path / "out"
    sweep = subprocess.Popen([sys.executable, "-m", "bench", *_args(glue_dir, out, "--max-steps", "400",
                                                                    "--train-samples", "3668")],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: bool(_cell_processes(sweep.pid)), 120), "the cell never started"
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 128 + signal.SIGTERM
    assert "terminated (SIGTERM)" in err and "--resume" in err
    assert not list(Path(tempfile.gettempdir()).glob(f"bench-cell-{sweep.pid}-*"))
    assert _wait_for(lambda: not _cell_processes(sweep.pid), 20)


@pytest.mark.slow
def test_two_nodes_on_one_machine_make_one_record_written_by_node_0(glue_dir, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    out = tmp_path / "out"
    common = _args(glue_dir, out, "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", port)
    nodes = [subprocess.Popen([sys.executable, "-m", "bench", *common, "--node-rank", str(rank)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    results = [p.communicate(timeout=300) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], [e[-1500:] for _, e in results]
    records = read_records(out)
    assert len(records) == 1 and records[0].status == "ok" and records[0].world_size == 2
    assert "node 0 records it" in results[1][1]


# ---- a busy machine ----------------------------------------------------------------------------


def _burner():
    return subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 120\nwhile time.time() < t: pass"])


@pytest.mark.slow
def test_a_cell_measured_beside_two_busy_processes_is_marked_busy(tiny_run):
    from bench.cell.main import run_cell

    burners = [_burner(), _burner()]
    try:
        time.sleep(1)
        record = run_cell(Cell("manual", "cpu", "fp32", tiny_run(max_steps=40, train_samples=320)),
                          progress=False, command="test")
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert record.status == "ok", record.reason
    load = record.machine_load
    assert record.machine_busy is True, load
    assert load.others_cpu_fraction > 0.10 and load.loadavg_1m_start is not None
    assert load.timed_window_s >= 1.0
    assert load.gemm_gflops_before > 0 and load.gemm_gflops_after > 0
    assert any("other processes used" in why for why in record.machine_busy_why)


def test_the_busy_rule():
    from bench.cell.load import busy_verdict

    quiet = {"cores": 2, "others_cpu_fraction": 0.02, "timed_window_s": 5.0, "gemm_gflops_before": 200.0,
             "gemm_gflops_after": 195.0}
    assert busy_verdict(quiet) == (False, [])
    assert busy_verdict(dict(quiet, others_cpu_fraction=0.4))[0]
    assert not busy_verdict(dict(quiet, others_cpu_fraction=0.4, timed_window_s=0.3))[0]  # a few ticks: no verdict
    busy, why = busy_verdict(dict(quiet, gemm_gflops_after=120.0))
    assert busy and "GEMM probe 200 GFLOP/s before training, 120 after (40% apart)" in why[0]


def test_the_report_refuses_to_call_a_gap_real_when_either_side_was_busy():
    import dataclasses

    from bench.analysis import GapRow

    row = GapRow(loop="trainer", runs=3, sps_ratio=0.77, step_ratio=1.3, step_ratio_range=(1.2, 1.4), busy=True,
                 manual_cv=None, phase_delta_s=None)
    assert "not called real: the machine was busy" in row.verdict
    assert "a real gap" in dataclasses.replace(row, busy=False).verdict


# ---- the regression gate -----------------------------------------------------------------------


def _bench_json(path, trainer_ratio, accelerate_ratio):
    path.write_text(json.dumps({"benchmarks": [
        {"name": "test_loop_steps[manual]", "stats": {"median": 0.7}, "extra_info": {}},
        {"name": "test_loop_steps[trainer]", "stats": {"median": 1.0}, "extra_info": {}},
        {"name": "test_meter_overhead", "stats": {"median": 0.001}, "extra_info": {}},
        {"name": "test_paired_ratios", "stats": {"median": 3.0},
         "extra_info": {"trainer/manual": trainer_ratio, "accelerate/manual": accelerate_ratio}}]}))
    return path


def test_an_amx_xeon_is_a_machine_class_of_its_own_with_its_committed_baseline():
    """torch calls an AMX Xeon and a Zen 4/5 both AVX512; their cores run the benchmarks 1.5-2x apart,
    so the class names AMX, read from /proc/cpuinfo's flags, and each class has a committed baseline."""
    import torch

    from bench.regress import DEFAULT_DIR, machine_class

    cap, cores = torch.backends.cpu.get_cpu_capability().lower(), os.cpu_count()
    xeon = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    zen = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512f avx512_bf16\n"
    assert machine_class(xeon) == f"cpu-{cap}-amx-{cores}core"
    assert machine_class(zen) == machine_class("") == f"cpu-{cap}-{cores}core"
    # A word that only contains the flag's name is not the flag.
    assert machine_class("flags\t\t: amx_tile_not\nmodel name\t: amx_tile\n") == f"cpu-{cap}-{cores}core"
    assert {"cpu-avx2-2core.json", "cpu-avx512-2core.json", "cpu-avx512-amx-2core.json"} <= \
        {path.name for path in DEFAULT_DIR.glob("*.json")}


def test_the_gate_gates_ratios_on_a_machine_class_without_a_baseline(tmp_path, capsys):
    from bench.regress import load_ratio_baseline, main

    base = load_ratio_baseline()
    trainer, accelerate = base["trainer/manual"], base["accelerate/manual"]
    # The ratios it has are judged ok, but a class without a baseline and the loops this run did not
    # measure (fabric, lightning) are "could not judge": exit 3, never a pass.
    assert main([str(_bench_json(tmp_path / "ok.json", trainer, accelerate)), "--machine-class", "cpu-unknown-1core"]) == 3
    out = capsys.readouterr().out
    assert "no absolute baseline for machine class cpu-unknown-1core" in out
    assert "ok   trainer/manual" in out and "meter overhead" in out
    assert "???? fabric/manual: in the ratio baseline but not measured in this run" in out
    assert main([str(_bench_json(tmp_path / "slow.json", trainer * 2, accelerate)),
                 "--machine-class", "cpu-unknown-1core"]) == 1
    assert "FAIL trainer/manual" in capsys.readouterr().out


def _gate_json(path, **medians):
    path.write_text(json.dumps({"benchmarks": [{"name": name, "stats": {"median": value}, "extra_info": {}}
                                               for name, value in medians.items()]}))
    return str(path)


def _full_run(**override):
    """A run of every benchmark the committed baselines hold, at their own figures, with overrides."""
    from bench.regress import DEFAULT_DIR, medians

    figures = {k: v for k, v in medians(DEFAULT_DIR / "cpu-avx512-2core.json").items() if not k.startswith("paired ")}
    figures.update(override)
    return figures


@pytest.mark.parametrize("what,medians,needle", [
    ("a NaN median", dict(nan_key="test_loop_steps[trainer]"), "is not a comparison of two timings"),
    ("a NaN meter cost", dict(nan_key="test_meter_overhead"), "meter overhead: nan"),
    ("a loop left out", dict(drop="test_loop_steps[fabric]"), "fabric/manual: in the ratio baseline but not measured"),
    ("no benchmark at all", dict(empty=True), "holds no benchmark at all"),
])
def test_the_gate_cannot_pass_what_it_did_not_compare(tmp_path, capsys, what, medians, needle):
    """NaN compares False with every limit, an absent loop has no ratio to exceed one: each is "could
    not judge" (exit 3, its own code), naming the figure, never "no regression"."""
    from bench.regress import main

    figures = _full_run()
    if "nan_key" in medians:
        figures[medians["nan_key"]] = float("nan")
    if "drop" in medians:
        figures.pop(medians["drop"])
    if medians.get("empty"):
        figures = {}
    code = main([_gate_json(tmp_path / "run.json", **figures), "--machine-class", "cpu-avx512-2core"])
    captured = capsys.readouterr()
    assert code == 3, (what, captured.out)
    assert needle in captured.out + captured.err and "no regression" not in captured.out


@pytest.mark.parametrize("content", ["{not json", '["a", "list"]', '{"hello": 1}', '{"benchmarks": [{"x": 1}]}'])
def test_a_corrupt_or_foreign_json_is_could_not_judge_in_one_line(tmp_path, capsys, content):
    from bench.regress import main

    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main([str(bad), "--machine-class", "cpu-avx512-2core"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench.regress: could not judge: ") and "Traceback" not in err[0]
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    (baselines / "ratios.json").write_text(content)
    good = _gate_json(tmp_path / "run.json", **_full_run())
    assert main([good, "--baseline-dir", str(baselines), "--machine-class", "x"]) == 3


def test_the_committed_baselines_pass_against_themselves(tmp_path, capsys):
    """The three-valued gate still passes a complete run at the baselines' own figures."""
    from bench.regress import main

    assert main([_gate_json(tmp_path / "run.json", **_full_run()), "--machine-class", "cpu-avx512-2core"]) == 0
    assert "no regression (" in capsys.readouterr().out


# ---- a full disk --------------------------------------------------------------------------------


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("bench: error:")]


def _lines(out):
    """results.jsonl as whole lines: each ends with a newline and is one JSON record."""
    raw = (out / RESULTS_FILE).read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only; skipped otherwise), and ``fill(keep)`` leaving ``keep`` bytes free."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")

    def fill(keep):
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        with open(mnt / "filler", "ab") as f:
            f.write(b"x" * max(0, free - keep))

    fill.mnt = mnt
    fill.free = lambda: (mnt / "filler").unlink()
    try:
        yield fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_disk_full_while_appending_keeps_whole_lines_and_resume_works(glue_dir, small_disk, one_cell_out):
    out = _copy_out(one_cell_out, small_disk.mnt / "out")
    before = (out / RESULTS_FILE).read_bytes()
    small_disk(keep=8192)  # room for the lock's PID and a short failed record, not for the whole record
    full = run_cli(*_args(glue_dir, out, "--in-process", "--repeats", "2")[:-2], "--resume", str(out))
    assert full.returncode == 2, full.stderr[-2000:]
    [line] = _error_lines(full)
    assert f"{out}: no space left on the device while writing results.jsonl" in line and "KiB free" in line
    assert "Traceback" not in full.stderr
    assert (out / RESULTS_FILE).read_bytes().startswith(before)  # nothing already there lost
    records = _lines(out)
    assert [(r["repeat"], r["status"]) for r in records] == [(0, "ok"), (1, "failed")]
    assert records[1]["failure"]["kind"] == "disk-full"
    small_disk.free()
    again = run_cli(*_args(glue_dir, out, "--in-process", "--repeats", "2")[:-2], "--resume", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert [(r["repeat"], r["status"]) for r in _lines(out)] == [(0, "ok"), (1, "failed"), (1, "ok")]


@pytest.mark.slow
def test_disk_full_for_the_log_and_the_record_loses_nothing(glue_dir, small_disk, one_cell_out):
    out = _copy_out(one_cell_out, small_disk.mnt / "out")
    before = (out / RESULTS_FILE).read_bytes()
    small_disk(keep=4096)  # the lock's PID fits; the cell's log cannot be written, nor any record
    full = run_cli(*_args(glue_dir, out, "--repeats", "2")[:-2], "--resume", str(out))
    assert full.returncode == 2, full.stderr[-2000:]
    [line] = _error_lines(full)
    assert "no space left on the device" in line and "--resume" in line
    assert "the cell's log is incomplete: no space left" in full.stderr
    after = (out / RESULTS_FILE).read_bytes()
    assert after.startswith(before)  # nothing already there lost or rewritten
    # A short disk-full record fits only where the file's last page has room left (tmpfs allocates by
    # the page, so whether it does depends on the earlier records' length): whole, and saying so.
    added = [json.loads(line) for line in after[len(before):].decode().splitlines()]
    assert all(r["status"] == "failed" and r["failure"]["kind"] == "disk-full" for r in added), added
    small_disk.free()
    again = run_cli(*_args(glue_dir, out, "--in-process", "--repeats", "2")[:-2], "--resume", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert [(r["repeat"], r["status"]) for r in _lines(out)] == [(0, "ok"), *[(1, "failed")] * len(added), (1, "ok")]


@pytest.mark.slow
def test_disk_full_during_the_report_leaves_the_old_report(glue_dir, small_disk, one_cell_out):
    out = _copy_out(one_cell_out, small_disk.mnt / "out")
    report = (out / "report.md").read_bytes()
    records = (out / RESULTS_FILE).read_bytes()
    small_disk(keep=0)
    full = run_cli("report", str(out))
    line = _one_line(full)
    assert f"{out}: no space left on the device" in line and "free" in line
    assert (out / "report.md").read_bytes() == report and (out / RESULTS_FILE).read_bytes() == records
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # no half-written file left behind
    small_disk.free()
    assert run_cli("report", str(out)).returncode == 0


def _enospc(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_append_that_fails_midway_is_rolled_back(tmp_path, monkeypatch):
    import errno

    from bench import safeio
    from bench.safeio import DiskFull

    append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="a"))
    before = (tmp_path / RESULTS_FILE).read_bytes()
    real_write = os.write

    def half(fd, data):  # the disk fills halfway through the line
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safeio.os, "write", half)
    with pytest.raises(DiskFull, match="no space left on the device while writing results.jsonl"):
        append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="b"))
    monkeypatch.setattr(safeio.os, "write", lambda fd, data: real_write(fd, bytes(data)[:10]))  # a short write
    with pytest.raises(DiskFull):
        append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="c"))
    monkeypatch.setattr(safeio.os, "fsync", _enospc)
    monkeypatch.setattr(safeio.os, "write", real_write)
    with pytest.raises(DiskFull):
        append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="d"))
    assert (tmp_path / RESULTS_FILE).read_bytes() == before


def test_an_injected_enospc_at_the_log_close_keeps_the_cells_record(glue_dir, tmp_path, monkeypatch, capsys, tiny_run):
    from bench.sweep.driver import run_sweep

    out = tmp_path / "out"
    real_close = os.close

    def close(fd):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        real_close(fd)
        if target.startswith(str(out / "logs")):
            _enospc()

    monkeypatch.setattr(os, "close", close)
    made = run_sweep([Cell("manual", "cpu", "fp32", tiny_run(max_steps=2, timing_warmup=0))], out, progress=False)
    monkeypatch.setattr(os, "close", real_close)
    assert [r.status for r in made] == ["ok"]
    assert [r["status"] for r in _lines(out)] == ["ok"]
    assert "the cell's log is incomplete: no space left on the device" in capsys.readouterr().err


def test_an_injected_enospc_in_the_report_and_the_csv_leaves_the_old_files(tmp_path, monkeypatch):
    from bench import safeio

    append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="a"))
    assert run_cli("report", str(tmp_path), "--csv", str(tmp_path / "cells.csv")).returncode == 0
    report, table = (tmp_path / "report.md").read_bytes(), (tmp_path / "cells.csv").read_bytes()
    append_record(tmp_path, Record(loop="trainer", device="cpu", precision="fp32", status="skipped", reason="b"))
    from bench.cli import main

    monkeypatch.setattr(safeio.os, "fsync", _enospc)
    assert main(["report", str(tmp_path)]) == 2
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "new.md"), "--csv", str(tmp_path / "cells.csv")]) == 2
    assert (tmp_path / "report.md").read_bytes() == report and (tmp_path / "cells.csv").read_bytes() == table
    assert not (tmp_path / "new.md").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_last_line_without_newline_is_refused_not_glued_onto(glue_dir, tmp_path):
    out = tmp_path / "out"
    append_record(out, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="a"))
    content = (out / RESULTS_FILE).read_bytes()[:-1]
    (out / RESULTS_FILE).write_bytes(content)
    line = _one_line(run_cli(*_args(glue_dir, out)[:-2], "--resume", str(out)))
    assert "results.jsonl:1: truncated last line" in line
    assert (out / RESULTS_FILE).read_bytes() == content


# ---- no write through a link ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [".bench.lock", "report.md", "report-cpu-throughput.png", "logs/cell.log",
                                  "results.jsonl"])
def test_a_symlink_in_out_is_refused_and_its_target_left_alone(glue_dir, tmp_path, name):
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (out / name).symlink_to(victim)
    line = _one_line(run_cli(*_args(glue_dir, out)))
    assert f"{out / name} is a symbolic link" in line
    assert victim.read_text() == "precious\n"


def test_a_lock_or_log_planted_as_a_link_is_refused_at_open(tmp_path):
    from bench.sweep.outdir import OutLock
    from bench.safeio import LinkRefused
    from bench.sweep.driver import CellLog

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / ".bench.lock").symlink_to(victim)
    (tmp_path / "x.log").symlink_to(victim)
    with pytest.raises(LinkRefused, match="is a symbolic link"):
        OutLock(tmp_path).acquire()
    with pytest.raises(LinkRefused):
        CellLog(tmp_path / "x.log")
    assert victim.read_text() == "precious\n"


def test_report_refuses_a_report_md_that_is_a_link(tmp_path):
    append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="a"))
    victim = tmp_path / "victim.md"
    victim.write_text("# bench report of someone else\n")  # passes the first-line check: the link must not
    (tmp_path / "report.md").symlink_to(victim)
    line = _one_line(run_cli("report", str(tmp_path)))
    assert "report.md is a symbolic link" in line
    assert victim.read_text() == "# bench report of someone else\n"


def test_run_keeps_a_report_md_bench_did_not_write(glue_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    line = _one_line(run_cli(*_args(glue_dir, out)))
    assert "report.md: exists and was not written by bench" in line
    assert (out / "report.md").read_text() == "my notes\n"


def test_plot_names_from_records_stay_inside_the_report_folder(tmp_path):
    from bench.report import render

    run = RunConfig(model="tiny", max_steps=3)
    cell = Cell("manual", "cpu", "fp32", run)
    evil = "/../../../escaped"
    rec = Record(loop="manual", device=evil, precision="fp32/../../x", status="ok", cell_id=cell.cell_id,
                 config=cell.to_dict(), samples_per_s=10.0, step_s=[0.1] * 3, step_losses=[0.7, 0.6, 0.5],
                 timed_s=0.2, timing_warmup_steps=1, step_samples=[8] * 3, peak_rss_mib=100.0)
    out = tmp_path / "a" / "b" / "c"
    render([Record.from_dict(json.loads(rec.to_json()))], out / "report.md")
    assert not list(tmp_path.rglob("*escaped*")) or all(p.parent == out for p in tmp_path.rglob("*escaped*"))
    pngs = list(tmp_path.rglob("*.png"))
    assert pngs and all(p.parent == out for p in pngs)
    assert all("/" not in p.name[len("report-"):] and ".." not in p.name for p in pngs)


def test_the_write_probe_name_is_unpredictable(tmp_path, monkeypatch):
    from bench.sweep.outdir import check_writable

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    planted = out / f".bench-write-test-{os.getpid()}"
    planted.symlink_to(victim)
    with pytest.raises(Exception, match="symbolic link"):
        check_writable(out)  # the planted link is refused; nothing was written through it
    planted.unlink()
    check_writable(out)
    assert victim.read_text() == "precious\n" and os.listdir(out) == []


def test_stale_cell_folders_of_other_users_are_left_alone(tmp_path, monkeypatch):
    import tempfile as tf

    from bench.sweep import driver as sweep

    monkeypatch.setattr(tf, "gettempdir", lambda: str(tmp_path))
    dead = 2**22 + 12345  # above pid_max: never a live process
    mine, theirs = tmp_path / f"bench-cell-{dead}-a", tmp_path / f"bench-cell-{dead}-b"
    mine.mkdir()
    theirs.mkdir()
    os.chown(theirs, os.getuid() + 1, -1) if os.geteuid() == 0 else pytest.skip("chown to another user needs root")
    removed = sweep.remove_stale_cell_dirs()
    assert removed == [str(mine)] and theirs.exists() and not mine.exists()


# ---- memory ----------------------------------------------------------------------------------------


def test_nproc_above_the_cores_is_refused_before_anything_runs(glue_dir, tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    line = _one_line(run_cli(*_args(glue_dir, out, "--nproc", "64")))
    assert "--nproc 64" in line and "CPU cores" in line
    assert not out.exists() and time.monotonic() - t0 < 60


def test_a_cell_past_its_memory_limit_is_stopped_and_recorded_out_of_memory(glue_dir, tmp_path, capsys):
    from bench.cli import main

    out = tmp_path / "out"
    code = main(_args(glue_dir, out, "--cell-memory-limit", "0.05"))  # the real parser: 51 MiB, below torch's import
    assert code == 1
    [r] = read_records(out)
    assert r.status == "failed" and r.failure.kind == "out-of-memory"
    assert r.reason.startswith("out of memory (peak ") and "limit 0.05 GiB" in r.reason, r.reason


def test_the_memory_watch_reads_pss_only_past_the_limit(monkeypatch):
    """Reading PSS walks the cell's page tables (milliseconds of CPU taken from the cell being timed);
    RSS is an upper bound of it, so PSS is read only when the RSS sum passes the limit."""
    import subprocess
    import sys

    import psutil

    from bench.sweep import memwatch

    reads = []
    real = psutil.Process.memory_full_info
    monkeypatch.setattr(psutil.Process, "memory_full_info", lambda self: reads.append(self.pid) or real(self))
    code = "x = bytearray(64 * 2**20); import time; time.sleep(1.5)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    watch = memwatch.MemoryWatch(proc, limit=64 * 2**30)
    proc.wait()
    watch.stop()
    assert watch.peak > 64 * 2**20 and not watch.tripped and reads == []
    proc = subprocess.Popen([sys.executable, "-c", code])
    watch = memwatch.MemoryWatch(proc, limit=32 * 2**20)
    proc.wait()
    watch.stop()
    assert watch.tripped and proc.pid in reads


def test_a_kernel_oom_kill_is_recorded_as_out_of_memory(monkeypatch, tiny_run):
    from bench.sweep import memwatch
    from bench.sweep import driver as sweep

    cell = Cell("manual", "cpu", "fp32", tiny_run(seed=4))  # the stand-in cell SIGKILLs itself
    # Without evidence of memory pressure, a SIGKILL stays a kill.
    monkeypatch.setattr(memwatch, "_oom_kills", lambda: 0)
    r = sweep.run_isolated(cell, 120, False, "", module="tests.helpers.misbehaving_cell")
    assert r.failure.kind == "killed" and "SIGKILL" in r.reason
    # The cgroup's count of kernel OOM kills went up while the cell ran: out of memory.
    counts = iter([3, 4])
    monkeypatch.setattr(memwatch, "_oom_kills", lambda: next(counts))
    r = sweep.run_isolated(cell, 120, False, "", module="tests.helpers.misbehaving_cell")
    assert r.status == "failed" and r.failure.kind == "out-of-memory"
    assert r.reason.startswith("out of memory (peak ") and "kernel's OOM killer" in r.reason
    # Under torchrun the kernel's kill of a worker is an exit 1 saying "Signal 9 received by PID".
    counts = iter([3, 4])
    r = sweep.run_isolated(Cell("manual", "cpu", "fp32", tiny_run(seed=6)), 120, False, "",
                           module="tests.helpers.misbehaving_cell")
    assert r.failure.kind == "out-of-memory" and "a worker was killed by the kernel's OOM killer" in r.reason


# ---- the compare gate ----------------------------------------------------------------------------


def _compare_run(folder, statuses):
    from tests.test_report import rec

    for loop, status in statuses.items():
        append_record(folder, rec(loop, status=status, reason="boom: the loop raised" if status == "failed" else
                                  ("no GPU" if status == "skipped" else "")))
    return folder


@pytest.mark.parametrize("b_statuses,needle", [
    ({"manual": "ok", "trainer": "failed"}, "trainer/cpu/fp32: failed in B: boom: the loop raised"),
    ({"manual": "ok", "trainer": "skipped"}, "trainer/cpu/fp32: not run in B: no GPU"),
    ({"manual": "ok"}, "trainer/cpu/fp32: missing in B"),
])
def test_the_compare_gate_fails_on_a_failed_or_missing_cell_in_b(tmp_path, b_statuses, needle):
    a = _compare_run(tmp_path / "a", {"manual": "ok", "trainer": "ok"})
    b = _compare_run(tmp_path / "b", b_statuses)
    result = run_cli("compare", str(a), str(b), "--fail-above", "10")
    assert result.returncode == 1, result.stderr
    assert f"bench compare: {needle}" in result.stderr
    assert "**Failed, missing in B, or not judged:** trainer/cpu/fp32" in result.stdout
    assert run_cli("compare", str(a), str(b)).returncode == 0  # no gate asked for: a comparison


# ---- the data ------------------------------------------------------------------------------------


def _glue_copy(glue_dir, folder, edit=None):
    """A copy of the MRPC mirror; ``edit(table)`` changes its training split."""
    import shutil

    import pyarrow.parquet as pq

    shutil.copytree(glue_dir, folder)  # its README.md declares the mrpc config
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    if edit is not None:
        train = folder / "mrpc" / "train-00000-of-00001.parquet"
        pq.write_table(edit(pq.read_table(train)), train)
    return str(folder)


def test_runs_on_different_data_are_not_compared_as_the_same(glue_dir, tmp_path, one_cell_out):
    import pyarrow as pa

    def flip_first_label(table):
        labels = table.column("label").to_pylist()
        labels[0] = 1 - labels[0]
        return table.set_column(table.schema.get_field_index("label"), "label",
                                pa.array(labels, type=table.schema.field("label").type))

    other = _glue_copy(glue_dir, tmp_path / "glue", flip_first_label)
    _copy_out(one_cell_out, tmp_path / "a")  # a: the module's sweep on glue_dir
    done = run_cli(*_args(other, tmp_path / "b", "--in-process"))
    assert done.returncode == 0, done.stderr[-2000:]
    fa, fb = (read_records(tmp_path / n)[0].data_fingerprint for n in "ab")
    assert fa.startswith("sha256:") and fb.startswith("sha256:") and fa != fb
    line = _one_line(run_cli("compare", str(tmp_path / "a"), str(tmp_path / "b")))
    assert "trained on different data (data_fingerprint" in line and "--differ data_fingerprint" in line
    named = run_cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--differ", "data_fingerprint")
    assert named.returncode == 0, named.stderr


def test_differ_with_an_unknown_field_is_refused(tmp_path):
    a = _compare_run(tmp_path / "a", {"manual": "ok"})
    line = _one_line(run_cli("compare", str(a), str(a), "--differ", "num_wrokers"))
    assert "--differ num_wrokers: not a run setting" in line and "batch_size" in line


# ---- a busy machine ------------------------------------------------------------------------------


def test_a_window_too_short_to_judge_is_not_called_quiet():
    from bench.cell.load import busy_verdict

    short = {"cores": 2, "others_cpu_fraction": 0.0, "timed_window_s": 0.3, "gemm_gflops_before": 200.0,
             "gemm_gflops_after": 195.0, "loadavg_1m_end": 6.1}
    busy, why = busy_verdict(short)
    assert busy is None and why == ["window too short to judge: 0.3 s of timed steps (under 1 s); "
                                    "1-minute load 6.1 on 2 cores"]
    assert busy_verdict(dict(short, timed_window_s=None, others_cpu_fraction=None))[0] is None
    assert busy_verdict(dict(short, gemm_gflops_after=100.0))[0] is True  # the probes still say busy
    assert busy_verdict(dict(short, timed_window_s=5.0)) == (False, [])
    from bench.report.summary import summary_table

    r = (Record(loop="manual", device="cpu", precision="fp32", status="ok", machine_busy=None,
                          machine_busy_why=why))
    assert "ok (busy: not judged)" in summary_table([r])


def test_the_start_of_run_warning_reads_the_one_minute_load(monkeypatch):
    from bench.cell import load as machine

    monkeypatch.setattr(machine, "loadavg_1m", lambda: 6.1)
    monkeypatch.setattr(machine, "busy_cpu_s", lambda: 0.0)  # nothing else ran in the short window
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    line = machine.busy_now(seconds=0.05)
    assert line and "1-minute load 6.1 on 2 cores" in line
    monkeypatch.setattr(machine, "loadavg_1m", lambda: 0.2)
    assert machine.busy_now(seconds=0.05) is None


# ---- wrong figures recorded as ok ------------------------------------------------------------------


def test_a_model_folder_without_its_tokenizer_files_is_refused(glue_dir, tmp_path):
    import shutil

    from bench.models import packaged_model_path

    model = tmp_path / "model"
    shutil.copytree(packaged_model_path(), model)
    for name in ("tokenizer.json", "vocab.txt"):
        (model / name).unlink()
    line = _one_line(run_cli(*_args(glue_dir, tmp_path / "out", "--model", str(model))))  # the last --model wins
    assert "its tokenizer has 5 tokens and the model's embeddings 30522" in line and "vocab.txt" in line
    assert not (tmp_path / "out").exists()


def test_the_batch_and_accumulation_in_force_are_recorded_and_reported(glue_dir, tmp_path):
    out = tmp_path / "out"
    done = run_cli(*_args(glue_dir, out, "--in-process", "--batch-size", "100000", "--grad-accum", "1000"))
    assert done.returncode == 0, done.stderr[-2000:]
    [r] = read_records(out)
    assert (r.settings["batch_size_in_force"], r.settings["grad_accum_in_force"]) == (24, 1)
    assert "batch 100000 (in force, as the training pairs allow: batch 100000 → 24; accumulation 1000 → 1)" in \
        (out / "report.md").read_text()


# ---- one line, never a traceback ----------------------------------------------------------------


def _good_record(**changes):
    from tests.test_report import rec

    d = json.loads(rec("manual").to_json())
    d.update(changes)
    return d


@pytest.mark.parametrize("line,needle", [
    (json.dumps(_good_record(samples_per_s="fast")), "field 'samples_per_s' is 'fast', not a number"),
    (json.dumps(_good_record(step_losses=None)), "field 'step_losses' is None, not a list"),
    (json.dumps(_good_record(config={})), "field 'config' is empty"),
    (json.dumps(_good_record(schema="2")), "schema is '2', not a number"),
    (json.dumps(_good_record(samples_per_s=1.0)).replace('"samples_per_s": 1.0', '"samples_per_s": NaN'),
     "non-finite number NaN"),
    (json.dumps(_good_record(eval_f1=1.0)).replace('"eval_f1": 1.0', '"eval_f1": -Infinity'), "non-finite number -Infinity"),
])
def test_a_bad_record_is_one_line_naming_the_line(tmp_path, line, needle):
    (tmp_path / RESULTS_FILE).write_text(json.dumps(_good_record()) + "\n" + line + "\n")
    got = _one_line(run_cli("report", str(tmp_path)))
    assert f"results.jsonl:2: " in got and needle in got, got
    compared = _one_line(run_cli("compare", str(tmp_path), str(tmp_path)))
    assert needle in compared


def test_a_non_utf8_byte_in_the_results_is_one_line(tmp_path):
    (tmp_path / RESULTS_FILE).write_bytes(json.dumps(_good_record()).encode() + b"\n{\"loop\": \"m\xe9\"}\n")
    line = _one_line(run_cli("report", str(tmp_path)))
    assert "results.jsonl:2: not UTF-8 text (byte 0xe9" in line


def test_results_jsonl_as_a_folder_is_one_line(glue_dir, tmp_path):
    (tmp_path / RESULTS_FILE).mkdir()
    assert "is a folder, not a results file" in _one_line(run_cli("report", str(tmp_path)))
    assert "is a folder" in _one_line(run_cli(*_args(glue_dir, tmp_path)[:-2], "--resume", str(tmp_path)))


def test_resume_refuses_a_bad_record_before_training(glue_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / RESULTS_FILE).write_text(json.dumps(_good_record(config={})) + "\n")
    t0 = time.monotonic()
    line = _one_line(run_cli(*_args(glue_dir, out)[:-2], "--resume", str(out)))
    assert "field 'config' is empty" in line and time.monotonic() - t0 < 60
    assert not (out / "logs").exists()  # nothing trained


def test_report_and_compare_into_a_read_only_folder_are_one_line(tmp_path):
    append_record(tmp_path / "r", Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="a"))
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes through permission bits: a file system that refuses everyone
        target = Path("/proc/bench-cannot-write-here.md")
    else:
        ro.chmod(0o555)
        target = ro / "report.md"
    assert "cannot be written" in _one_line(run_cli("report", str(tmp_path / "r"), "-o", str(target)))
    a = _compare_run(tmp_path / "a", {"manual": "ok"})
    assert "cannot be written" in _one_line(run_cli("compare", str(a), str(a), "-o", str(target)))


def test_a_report_name_too_long_is_one_line(tmp_path):
    append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="a"))
    line = _one_line(run_cli("report", str(tmp_path), "-o", str(tmp_path / ("r" * 300 + ".md"))))
    assert "cannot be written" in line


def test_a_truncated_parquet_names_its_cause_in_one_line(glue_dir, tmp_path):
    glue = _glue_copy(glue_dir, tmp_path / "glue")
    train = Path(glue) / "mrpc" / "train-00000-of-00001.parquet"
    os.truncate(train, train.stat().st_size // 2)
    line = _one_line(run_cli(*_args(glue, tmp_path / "out")))
    assert f"could not read MRPC from {glue}/mrpc/" in line and "ArrowInvalid" in line and "DatasetGenerationError" not in line


def test_an_unwritable_datasets_cache_is_not_blamed_on_the_data(glue_dir, tmp_path):
    glue = _glue_copy(glue_dir, tmp_path / "glue")  # a copy never loaded, so the cache must be written
    line = _one_line(run_cli(*_args(glue, tmp_path / "out"), env={"HF_DATASETS_CACHE": "/proc/bench-cache"}))
    assert "the datasets cache /proc/bench-cache cannot be written" in line and f"not the data in {glue}" in line


def test_padding_past_the_models_positions_is_refused_before_anything_runs(glue_dir, tmp_path):
    line = _one_line(run_cli(*_args(glue_dir, tmp_path / "out", "--pad-to-multiple-of", "1024")))
    assert "--pad-to-multiple-of 1024: longer than the model's 512 positions" in line


def test_a_refused_run_leaves_no_out_behind(glue_dir, tmp_path):
    out = tmp_path / "out"
    _one_line(run_cli(*_args(glue_dir, out, "--model", str(tmp_path / "no-such-model"))))
    assert not out.exists()


def test_ctrl_c_during_report_does_not_suggest_resume(tmp_path, monkeypatch, capsys):
    from bench import report
    from bench.cli import main

    append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="a"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "render", interrupted)
    assert main(["report", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "report wrote nothing over what was there" in err


def test_report_without_o_does_not_blame_an_o_flag(tmp_path):
    append_record(tmp_path, Record(loop="manual", device="cpu", precision="fp32", status="skipped", reason="a"))
    (tmp_path / "report.md").write_text("my notes\n")
    line = _one_line(run_cli("report", str(tmp_path)))
    assert f"-o {tmp_path}" not in line and f"error: {tmp_path / 'report.md'}: exists and was not written by bench report" in line
    assert (tmp_path / "report.md").read_text() == "my notes\n"
