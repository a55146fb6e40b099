"""``--executor ray``: the refusals (fast), and local Ray running tiny cells two at a time (slow)."""

import builtins
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bench.records import read_records
from tests.test_cli import run_cli

TINY = ["--device", "cpu", "--model", "tiny", "--max-steps", "4", "--timing-warmup", "1",
        "--train-samples", "32", "--eval-samples", "16", "--no-progress"]

# What differs between two runs of the same cell whatever runs it: the clock, and where it ran.
TIME_AND_PLACE = {"started_at", "finished_at", "command", "env", "executor", "sibling_cells", "cells_at_once", "cpu_cores",
                  "cuda_visible_devices", "node", "machine_load", "setup", "phases", "eval_curve", "step_phase_s",
                  # the machine's load and the MFU peak's source (a Ray task measures its own peak: no
                  # cell runs before it to hand one over) are facts about the run, not the cell
                  "machine_busy", "machine_busy_why", "device_peak_source"}


def test_ray_missing_is_one_line_and_exit_2_before_any_work(monkeypatch, tmp_path, capsys, glue_dir):
    from bench.cli import main

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    out = tmp_path / "out"
    assert main(["run", "--loops", "manual", "--glue-dir", glue_dir, "--executor", "ray", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the package 'ray'" in err[0] and 'pip install -e ".[ray]"' in err[0]
    assert not out.exists()


def test_ray_flags_without_the_ray_executor_are_refused(tmp_path, capsys, glue_dir):
    from bench.cli import main

    assert main(["run", "--loops", "manual", "--glue-dir", glue_dir, "--cpus-per-cell", "2",
                 "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "--executor ray" in capsys.readouterr().err


def _comparable(record) -> dict:
    d = record.to_dict()
    return {k: v for k, v in d.items() if k not in TIME_AND_PLACE and not k.endswith("_s") and "_s_" not in k
            and "per_s" not in k and "tflops" not in k and "mfu" not in k and "mib" not in k.lower()
            and "bytes" not in k and "ms" not in k.split("_")}


@pytest.mark.slow
def test_four_cells_two_at_a_time_match_the_sequential_records(glue_dir, tmp_path):
    args = ["run", "--loops", "manual,fabric", "--repeats", "2", "--glue-dir", glue_dir, *TINY]
    seq = run_cli(*args, "--out", str(tmp_path / "seq"))
    par = run_cli(*args, "--out", str(tmp_path / "ray"), "--executor", "ray", "--cells-at-once", "2",
                  "--cpus-per-cell", "1")
    assert seq.returncode == 0 and par.returncode == 0, par.stderr[-2000:]
    a = sorted(read_records(tmp_path / "seq"), key=lambda r: r.cell_id)
    b = sorted(read_records(tmp_path / "ray"), key=lambda r: r.cell_id)
    assert [r.cell_id for r in a] == [r.cell_id for r in b] and len(a) == 4
    for x, y in zip(a, b):
        assert _comparable(x) == _comparable(y)
        assert x.train_loss_final == y.train_loss_final  # the same steps on the same data, whatever ran them
        assert y.executor == "ray" and y.cells_at_once == 2 and y.node and y.cpu_cores
        assert y.machine_load.timed_start_unix_s < y.machine_load.timed_end_unix_s and y.machine_load.own_cpu_cores
        assert x.executor == ""


@pytest.mark.slow
def test_driver_killed_then_resume_records_each_cell_once_and_leaves_no_process(glue_dir, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "bench", "run", "--loops", "manual,fabric", "--repeats", "2",
            "--glue-dir", glue_dir, *TINY, "--executor", "ray", "--cpus-per-cell", "1", "--out", str(out)]
    import uuid

    mark = uuid.uuid4().hex  # tells this test's processes (driver, Ray, cells) from any other's
    driver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, BENCH_TEST_MARK=mark), start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") >= 1):
        time.sleep(0.5)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    # The Ray this driver started outlives it (a killed driver cannot stop it): ended here, by mark.
    for p in _marked(mark):
        p.kill()
    before = read_records(out, allow_empty=True)
    assert 1 <= len(before) < 4
    done = run_cli("run", "--loops", "manual,fabric", "--repeats", "2", "--glue-dir", glue_dir, *TINY,
                   "--executor", "ray", "--cpus-per-cell", "1", "--resume", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_records(out)
    ok = [r.cell_id for r in records if r.status == "ok"]
    assert len(ok) == 4 and len(set(ok)) == 4
    lines = [json.loads(line) for line in results.read_text().splitlines()]  # every line whole
    assert len(lines) == len(records)
    assert not _marked(mark)  # the resumed sweep left nothing running either
    assert not [p for p in psutil.process_iter(["cmdline"]) if "bench.cell.main" in (p.info["cmdline"] or [])
                and p.ppid() == os.getpid()]


def _marked(mark: str) -> list:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("BENCH_TEST_MARK") == mark:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _cells_of(mark: str) -> list:
    """The cell processes (``bench.cell.main``) of the sweep marked ``mark``."""
    found = []
    for p in _marked(mark):
        try:
            if "bench.cell.main" in p.cmdline():
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("to", ["group", "driver"])
def test_ctrl_c_stops_the_ray_sweep_its_cells_in_flight_and_its_ray(glue_dir, tmp_path, to):
    """Ctrl-C while cells run (a terminal's, to the foreground process group; or SIGINT to the driver
    alone): the driver exits non-zero within seconds, the cells in flight are stopped, no process of
    the sweep (Ray's, the tasks', the cells') is left, and results.jsonl holds only whole lines."""
    import uuid

    out = tmp_path / "out"
    mark = uuid.uuid4().hex  # tells this sweep's processes (driver, Ray, tasks, cells) from any other's
    argv = [sys.executable, "-m", "bench", "run", "--loops", "manual,fabric", "--repeats", "2", "--glue-dir",
            glue_dir, *TINY, "--max-steps", "400", "--executor", "ray", "--cpus-per-cell", "1", "--out", str(out)]
    # A terminal's foreground job takes SIGINT; a test run started in the background (`cmd &`, nohup)
    # inherits it ignored, and so would the driver: give the driver the terminal's disposition.
    driver = subprocess.Popen(argv, env=dict(os.environ, BENCH_TEST_MARK=mark), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        cells = []
        while not cells and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.5)
            cells = _cells_of(mark)
        assert cells, "no cell started"
        time.sleep(1.0)  # the cell under way, not just spawned
        assert len(_marked(mark)) > len(cells) + 2  # the mark reaches Ray's processes: the check below sees them
        if to == "group":
            os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: its foreground process group
        else:
            os.kill(driver.pid, signal.SIGINT)
        t0 = time.monotonic()
        _, err = driver.communicate(timeout=90)
        took = time.monotonic() - t0
        assert driver.returncode != 0 and "interrupted" in err, err[-2000:]
        assert took < 30, f"the driver took {took:.0f} s to stop"
        gone, alive = psutil.wait_procs(cells, timeout=15)
        assert not alive, f"cells still running after Ctrl-C: {[p.pid for p in alive]}"
        deadline = time.monotonic() + 20  # Ray's own processes wind down once the driver has stopped it
        while _marked(mark) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in _marked(mark)]
        assert not left, "processes of the sweep left running:\n" + "\n".join(left)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for p in _marked(mark):
            p.kill()
    results = out / "results.jsonl"
    text = results.read_text() if results.exists() else ""
    assert not text or text.endswith("\n")
    assert all(json.loads(line) for line in text.splitlines())  # every line whole
    assert not text or len(read_records(out)) == len(text.splitlines())


@pytest.mark.slow
def test_a_cell_killed_inside_its_task_is_a_failed_record(glue_dir, tmp_path):
    import uuid

    out = tmp_path / "out"
    mark = uuid.uuid4().hex  # tells this test's cell process from any other on the machine
    env = dict(os.environ, BENCH_TEST_MARK=mark)
    driver = subprocess.Popen([sys.executable, "-m", "bench", "run", "--loops", "manual", "--glue-dir", glue_dir,
                               *TINY, "--max-steps", "400", "--executor", "ray", "--cpus-per-cell", "1",
                               "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    killed = None
    deadline = time.monotonic() + 180
    while killed is None and time.monotonic() < deadline and driver.poll() is None:
        for p in psutil.process_iter(["cmdline"]):
            try:
                if "bench.cell.main" in (p.info["cmdline"] or []) and p.environ().get("BENCH_TEST_MARK") == mark:
                    p.kill()
                    killed = p.pid
                    break
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.2)
    _, err = driver.communicate(timeout=300)
    assert killed, err[-2000:]
    records = read_records(out)
    assert len(records) == 1 and records[0].status == "failed" and records[0].executor == "ray"
    assert records[0].failure is not None and records[0].reason


def test_the_report_says_which_cells_ran_together_and_shared_cores():
    from bench.records import Record
    from bench.report import concurrency
    from bench.report.context import Context

    def rec(loop, siblings, cores, node="n1"):
        return Record(loop=loop, device="cpu", precision="fp32", status="ok", cell_id=loop, executor="ray",
                      sibling_cells=siblings, cpu_cores=cores, node=node)

    from pathlib import Path

    # Records of schema 4 (no timed window): the configured figure, said as such.
    assert concurrency.lines(Context.of([rec("manual", 0, "0,1")], Path("r.md"))) == []
    text = "\n".join(concurrency.lines(Context.of([rec("manual", 1, "0,1"), rec("fabric", 1, "1,2")], Path("r.md"))))
    assert "Cells run at the same time" in text and text.count("| up to 1 | ") == 2
    assert text.count("| CPU cores | ⚠ busy |") == 0 and text.count("| CPU cores | quiet |") == 2
    assert "say only how many cells could run at once" in text
    # on different nodes nothing is shared
    text = "\n".join(concurrency.lines(Context.of([rec("manual", 1, "0,1", "a"), rec("fabric", 1, "0,1", "b")],
                                                   Path("r.md"))))
    assert text.count("| no | quiet |") == 2


@pytest.mark.parametrize("device,nproc,gpus", [("cuda", 2, 2), ("cuda:1", 1, 1), ("cpu", 2, 0), ("cpu", 1, 0)])
def test_a_cells_task_asks_for_its_nproc_gpus_as_one_task(device, nproc, gpus):
    """A CUDA cell of --nproc 2 is one task asking for 2 GPUs (one task's resources come from one
    node), never two tasks or a group spread over nodes; a CPU cell asks for none.  Ray itself checks
    the options (``.options`` validates without a running Ray)."""
    ray = pytest.importorskip("ray")
    from bench.config import Cell
    from bench.sweep.executors import task_options

    options = task_options(Cell(loop="manual", device=device, precision="fp32", nproc=nproc), cpus=3)
    assert options == {"num_cpus": 3, "num_gpus": gpus, "max_retries": 0}
    assert "scheduling_strategy" not in options and "placement_group" not in options
    ray.remote(lambda: None).options(**options)  # valid for Ray: no error


def test_the_load_watch_places_its_window_on_the_wall_clock_and_says_its_own_cpu():
    from bench.cell.load import LoadWatch

    t0 = 1_700_000_000.0
    watch = LoadWatch("cpu")
    window = {"wall_s": 2.0, "own_cpu_s": 3.0, "machine_busy_s": 4.0, "host": "h", "start_unix_s": t0,
              "end_unix_s": t0 + 2.0}
    load = watch.finish([window, dict(window, own_cpu_s=1.0), dict(window, host="other", own_cpu_s=5.0)])
    assert load["timed_start_unix_s"] == t0 and load["timed_end_unix_s"] == t0 + 2.0
    assert load["own_cpu_cores"] == 2.0 and load["others_cpu_cores"] == 0.0  # ranks on its host: 4 s of 4
    from bench.records.groups import MachineLoad

    assert MachineLoad.coerce(load).own_cpu_cores == 2.0  # a field of the record's group


def test_a_ray_record_says_its_host_and_the_cells_at_once_not_an_assumed_sibling_count():
    from bench.config import Cell
    from bench.sweep import executors

    cell = Cell(loop="manual", device="cpu", precision="fp32")
    from bench.records import Record

    data = Record(loop="manual", device="cpu", precision="fp32", status="ok", cell_id="c").to_dict()
    data["_where"] = {"cpu_cores": [0, 1], "cuda_visible_devices": "", "hostname": "box-1", "ray_node_id": "ab12"}

    class FakeRay:
        @staticmethod
        def get(ref):
            if ref == "lost":
                raise RuntimeError("the node died")
            return dict(data)

    record = executors._record_of(FakeRay, "ref", cell, "cmd", 2)
    assert (record.executor, record.cells_at_once, record.sibling_cells, record.node, record.cpu_cores) == \
        ("ray", 2, 0, "box-1", "0,1")
    failed = executors._record_of(FakeRay, "lost", cell, "cmd", 2)
    assert failed.status == "failed" and failed.executor == "ray" and failed.cells_at_once == 2
