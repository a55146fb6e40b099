"""Matrix expansion and skip reasons, isolation of cells, resume after a kill, corrupt results."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.config import Cell, ConfigError, RunConfig
from bench.records import ResultsFileError, read_records
from bench.sweep.plan import plan_cells
from bench.sweep.driver import refuse_explicit, run_isolated, run_sweep
from tests.conftest import ROOT
from tests.test_cli import run_cli

# ---- matrix and skip reasons ---------------------------------------------------------------


def test_expand_is_the_full_product_with_repeats():
    cells = plan_cells(["manual", "trainer"], ["cpu", "cuda"], ["fp32", "bf16"], [RunConfig()], repeats=2)
    assert len(cells) == 2 * 2 * 2 * 2
    assert len({c.cell_id for c in cells}) == 16  # repeats are distinct cells
    assert {(c.loop, c.device, c.precision) for c in cells} == {
        (lp, d, p) for lp in ("manual", "trainer") for d in ("cpu", "cuda") for p in ("fp32", "bf16")}
    # a round of every cell before the next repeat, so the loops compared run close together in time
    assert [c.repeat for c in cells] == [0] * 8 + [1] * 8


def test_cell_id_is_a_hash_of_the_full_config():
    a = Cell("manual", "cpu", "fp32", RunConfig(lr=5e-5))
    assert a.cell_id == Cell("manual", "cpu", "fp32", RunConfig(lr=5e-5)).cell_id
    assert a.cell_id != Cell("manual", "cpu", "fp32", RunConfig(lr=4e-5)).cell_id
    assert a.cell_id != Cell("manual", "cpu", "bf16", RunConfig(lr=5e-5)).cell_id


def test_cpu_skip_reasons():
    from bench.precision import precision_unsupported

    assert precision_unsupported("cpu", "fp32") is None
    assert precision_unsupported("cpu", "bf16") is None
    assert precision_unsupported("cpu", "tf32") == "tf32 is cuda-only (a tensor-core matmul mode of NVIDIA GPUs)"
    assert "silently trains fp32" in precision_unsupported("cpu", "fp16")


@pytest.fixture
def fake_gpu(monkeypatch):
    """Fake the GPU at the boundary torch exposes, not through a hook in bench."""
    import torch

    def install(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)

    return install


def test_old_gpu_skips_bf16_and_tf32(fake_gpu):
    from bench.precision import device_unavailable, precision_unsupported

    fake_gpu((7, 5))
    assert device_unavailable("cuda") is None
    assert precision_unsupported("cuda", "bf16") == "bf16 needs compute capability >= 8.0, this GPU has 7.5"
    assert precision_unsupported("cuda", "tf32") == "tf32 needs compute capability >= 8.0, this GPU has 7.5"
    assert precision_unsupported("cuda", "fp16") is None


def test_ampere_or_newer_runs_everything(fake_gpu):
    from bench.precision import precision_unsupported

    fake_gpu((9, 0))
    assert all(precision_unsupported("cuda", p) is None for p in ("fp32", "tf32", "fp16", "bf16"))


def test_explicit_impossible_device_is_an_error_but_all_is_a_skip(monkeypatch):
    import torch

    from bench.cell.main import skip_reason

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cuda: no CUDA device"):
        refuse_explicit(["cuda"], ["fp32"], True, False, skip_reason)
    with pytest.raises(ConfigError, match="--device cpu --precision tf32: tf32 is cuda-only"):
        refuse_explicit(["cpu"], ["tf32"], True, True, skip_reason)
    refuse_explicit(["cpu", "cuda", "mps"], ["fp32"], False, False, skip_reason)  # via `all`: no error
    refuse_explicit(["cpu"], ["fp32", "tf32"], True, False, skip_reason)  # precision via `all`: no error
    assert "no CUDA device" in skip_reason(Cell("manual", "cuda", "fp32"))


def test_all_precisions_on_cpu_records_skips_with_reasons(tmp_path, tiny_run):
    run = tiny_run(max_steps=2, timing_warmup=1, train_samples=16, eval_samples=8)
    cells = plan_cells(["manual"], ["cpu"], ["tf32", "fp16"], [run])
    made = run_sweep(cells, tmp_path, isolate=False, progress=False)
    assert [(r.precision, r.status) for r in made] == [("tf32", "skipped"), ("fp16", "skipped")]
    assert all(r.reason for r in made)
    assert [r.status for r in read_records(tmp_path)] == ["skipped", "skipped"]


# ---- isolation ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,expect", [
    (1, "exited with code 1 without a record: RuntimeError: boom: the loop raised"),
    (2, "exited with code 3 without a record: giving up"),
    (4, "killed by SIGKILL (not by the kernel's OOM killer"),
])
def test_a_misbehaving_cell_becomes_a_failed_record(seed, expect):
    cell = Cell("manual", "cpu", "fp32", RunConfig(model="tiny", seed=seed))
    record = run_isolated(cell, timeout_s=120, progress=False, command="test", module="tests.helpers.misbehaving_cell")
    assert record.status == "failed"
    assert expect in record.reason
    assert record.cell_id == cell.cell_id
    assert any(f"seed {seed}" in line for line in record.failure.last_lines)
    assert record.failure.kind in ("exit", "killed") and not record.env


def test_a_hanging_cell_is_killed_at_the_timeout():
    cell = Cell("manual", "cpu", "fp32", RunConfig(model="tiny", seed=3))
    t0 = time.monotonic()
    record = run_isolated(cell, timeout_s=3, progress=False, command="test", module="tests.helpers.misbehaving_cell")
    assert time.monotonic() - t0 < 30
    assert record.status == "failed" and record.reason.startswith("timed out after 3 s (--cell-timeout)")


def test_all_precisions_on_cpu_end_to_end(glue_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", "--loops", "manual", "--device", "cpu", "--precision", "all", "--model", "tiny",
                     "--glue-dir", glue_dir, "--max-steps", "2", "--timing-warmup", "1", "--train-samples", "16",
                     "--eval-samples", "8", "--out", str(out), "--no-progress", "--in-process")
    statuses = {r.precision: r.status for r in read_records(out)}
    assert statuses == {"fp32": "ok", "bf16": "ok", "tf32": "skipped", "fp16": "skipped"}
    assert result.returncode == 0  # every cell that was not skipped is ok


def test_a_failing_cell_does_not_stop_the_sweep_but_fails_the_exit_code(glue_dir, tmp_path):
    """A real failure inside the cell: a model folder whose weights file reads (the preflight's header
    check passes) but holds a tensor of the wrong shape, which only loading the model finds."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    import shutil
    from pathlib import Path
    from pathlib import Path

    from bench.models import TINY_BERT, packaged_model_path

    broken = tmp_path / "broken-model"
    BertConfig(**TINY_BERT).save_pretrained(broken)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(packaged_model_path()) / name, broken)  # its own vocabulary: only the weights are broken
    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(3, 3)}, str(broken / "model.safetensors"))
    out = tmp_path / "out"
    result = run_cli("run", "--loops", "manual,trainer", "--device", "cpu", "--model", str(broken),
                     "--glue-dir", glue_dir, "--max-steps", "2", "--timing-warmup", "1", "--train-samples", "16",
                     "--eval-samples", "8", "--out", str(out), "--no-progress", "--in-process")
    records = read_records(out)
    assert [(r.loop, r.status) for r in records] == [("manual", "failed"), ("trainer", "failed")]
    assert all("could not load model" in r.reason for r in records)
    assert result.returncode == 1
    assert (out / "report.md").exists()  # the report is written either way


# ---- resume ---------------------------------------------------------------------------------


def _sweep_args(glue_dir, out, loops="all"):
    return ["run", "--loops", loops, "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
            "--max-steps", "3", "--timing-warmup", "1", "--train-samples", "24", "--eval-samples", "8",
            "--no-progress", "--out", str(out)]


@pytest.mark.slow
def test_killed_sweep_resumes_with_every_cell_once(glue_dir, tmp_path):
    """The sweep is killed while its second cell runs.  Two cells are enough for that (the harness
    is under test, not the loops: test_run_cli runs every loop through a whole sweep)."""
    out = tmp_path / "out"
    sweep_loops = "manual,trainer"
    proc = subprocess.Popen([sys.executable, "-m", "bench", *_sweep_args(glue_dir, out, sweep_loops)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") >= 1):
        time.sleep(0.2)
    assert results.exists(), "the first cell never finished"
    os.kill(proc.pid, signal.SIGKILL)  # mid-sweep: the second cell is running
    proc.wait()
    before = read_records(out)
    assert len(before) == 1  # the second cell was running
    first_lines = results.read_text()
    time.sleep(1)
    resumed = run_cli(*_sweep_args(glue_dir, out, sweep_loops)[:-2], "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records = read_records(out)
    assert sorted(r.loop for r in records) == ["manual", "trainer"]  # each cell exactly once
    assert len({r.cell_id for r in records}) == 2
    assert results.read_text().startswith(first_lines)  # nothing recorded was rewritten
    assert "already recorded" in resumed.stderr


def test_resume_reruns_a_failed_cell_and_keeps_the_failure(glue_dir, tmp_path):
    from bench.records import Record, append_record

    out = tmp_path / "out"
    args = _sweep_args(glue_dir, out)
    cell = Cell("manual", "cpu", "fp32", RunConfig(model="tiny", glue_dir=glue_dir, max_steps=3, timing_warmup=1,
                                                    train_samples=24, eval_samples=8))
    append_record(out, Record(loop="manual", device="cpu", precision="fp32", status="failed", reason="earlier crash",
                              cell_id=cell.cell_id, config=cell.to_dict()))
    result = run_cli(*[a for a in args if a != "all"][:2], "manual", *args[3:-2], "--resume", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_records(out)
    assert [r.status for r in records] == ["failed", "ok"] and records[0].cell_id == records[1].cell_id


def test_a_committed_folder_resumes_from_a_clone_where_the_data_lies_elsewhere(glue_dir, tmp_path):
    """A committed report's records are made portable (``bench.records.paths``): they name the data
    and the model, not where they lay.  Resumed from a clone where the data lies elsewhere, its cells
    are the same cells: a recorded one is not run again, a failed one run again supersedes it, and a
    setting that differs is still refused."""
    import shutil
    from pathlib import Path

    from bench.records import Record, append_record, latest_per_cell
    from bench.records.paths import main as make_portable

    made = tmp_path / "made"
    args = _sweep_args(glue_dir, made, loops="manual")
    assert run_cli(*args).returncode == 0
    trainer = Cell("trainer", "cpu", "fp32", read_records(made)[0].run)
    append_record(made, Record(loop="trainer", device="cpu", precision="fp32", status="failed", reason="earlier crash",
                               cell_id=trainer.cell_id, config=trainer.to_dict()))
    committed = tmp_path / "clone" / "reports" / "committed"
    committed.mkdir(parents=True)
    assert make_portable([str(made), str(committed / "results.jsonl")]) == 0
    recorded = (committed / "results.jsonl").read_text()
    assert str(Path(glue_dir)) not in recorded and '"glue_dir": "' + Path(glue_dir).name + '"' in recorded
    elsewhere = tmp_path / "clone" / "shared" / Path(glue_dir).name
    shutil.copytree(glue_dir, elsewhere)

    resume = [*_sweep_args(str(elsewhere), committed, loops="manual,trainer")[:-2], "--resume", str(committed)]
    result = run_cli(*resume)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "manual/cpu/fp32: already recorded" in result.stderr and "trainer/cpu/fp32: running" in result.stderr
    records = read_records(committed)
    assert (committed / "results.jsonl").read_text().startswith(recorded)  # nothing recorded is rewritten
    assert [(r.loop, r.status) for r in records] == [("manual", "ok"), ("trainer", "failed"), ("trainer", "ok")]
    assert records[1].cell_id != records[2].cell_id and records[1].cell_key == records[2].cell_key
    assert sorted((r.loop, r.status) for r in latest_per_cell(records)) == [("manual", "ok"), ("trainer", "ok")]
    # One cell per loop in the report, compared as one group: the data's two locations are not a variant.
    report = (committed / "report.md").read_text()
    assert "2 ok, 0 skipped, 1 failed" in report.split("## Bottom line")[0] and "glue_dir" not in report
    bottom = report.split("## Bottom line")[1].split("\n## ")[0]
    assert bottom.count("| **manual** |") == 1 and bottom.count("| **trainer** |") == 1
    # Resumed again: nothing left to run.  Another learning rate is another cell: refused by name.
    again = run_cli(*resume)
    assert again.returncode == 0 and "running" not in again.stderr
    other = run_cli(*resume, "--lr", "1e-4")
    assert other.returncode == 2 and "run.lr (5e-05 recorded, 0.0001 now)" in other.stderr
    assert len(read_records(committed)) == 3


# ---- corrupt results ------------------------------------------------------------------------


@pytest.mark.parametrize("content,needle", [
    ('{"loop": "manual", "device": "cpu", "precision": "fp32", "status": "ok", "cell_id": "x"}\n{"loop": "trai',
     "results.jsonl:2: truncated last line"),
    ("loop,status\nmanual,ok\n", "results.jsonl:1: not a JSON record"),
    ('{"hello": 1}\n', "results.jsonl:1: not a bench record"),
])
def test_corrupt_results_are_an_error_naming_the_line(tmp_path, content, needle, glue_dir):
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    with pytest.raises(ResultsFileError, match=needle.replace(".", r"\.")):
        read_records(tmp_path)
    result = run_cli(*_sweep_args(glue_dir, tmp_path)[:-2], "--resume", str(tmp_path))
    assert result.returncode == 2 and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert path.read_text() == content  # nothing dropped or rewritten
    report = run_cli("report", str(tmp_path))
    assert report.returncode == 2 and needle in report.stderr


# ---- a cell that cannot finish in time says so early ----------------------------------------


def _meter_steps(meter, n, seconds):
    import torch

    batch = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    for _ in range(n):
        time.sleep(seconds)
        meter.step(torch.tensor(0.5), batch)


def test_meter_stops_a_cell_projected_past_its_budget():
    from bench.meter import WouldTimeOut, StepMeter

    meter = StepMeter("cpu", timing_warmup=1, total_steps=200, progress=False, budget=(time.perf_counter(), 1.0))
    meter.start()
    with pytest.raises(WouldTimeOut, match=r"would not finish within --cell-timeout 1 s: .* stopped after step 4"):
        _meter_steps(meter, 10, 0.02)  # 200 steps x 20 ms = 4 s, far past 1 s
    assert len(meter.losses) == 4  # warm-up step + 3 timed steps, then the verdict


def test_meter_lets_a_cell_that_fits_run():
    from bench.meter import StepMeter

    meter = StepMeter("cpu", timing_warmup=1, total_steps=10, progress=False, budget=(time.perf_counter(), 5.0))
    meter.start()
    _meter_steps(meter, 10, 0.01)
    meter.stop()
    assert meter.summary()["steps"] == 10


@pytest.mark.parametrize("loop", ["manual", "accelerate", "trainer"])
def test_a_cell_over_budget_is_a_failed_record_with_its_speed(loop, tiny_run):
    from bench.cell.main import run_cell

    cell = Cell(loop, "cpu", "fp32", tiny_run(max_steps=40))
    record = run_cell(cell, progress=False, command="test", budget=(time.perf_counter(), 0.01))
    assert record.status == "failed"
    assert record.reason.startswith("WouldTimeOut: would not finish within --cell-timeout 0.01 s")
    assert "samples/s) over steps 3-5" in record.reason and "stopped after step 5" in record.reason


def test_the_plan_expands_every_axis_in_one_documented_order():
    runs = [RunConfig(batch_size=8), RunConfig(batch_size=32)]
    cells = plan_cells(["manual", "trainer"], ["cpu"], ["fp32", "bf16"], runs, presets=[None, "fast"], repeats=2,
                       explicit={"batch_size"})
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    key = [(c.repeat, c.run.preset, c.run.batch_size, c.precision, c.loop) for c in cells]
    assert key == sorted(key, key=lambda k: (k[0], k[1] is not None, k[2], ["fp32", "bf16"].index(k[3]),
                                             ["manual", "trainer"].index(k[4])))
    # The run config depends on device, preset and batch size only: every loop and precision shares it.
    fast32 = {c.run for c in cells if c.run.preset == "fast" and c.run.batch_size == 32}
    assert len(fast32) == 1 and next(iter(fast32)).group_by_length  # the preset's own fields, the user's batch size
