"""`python -m bench run` end to end: each cell in its own process, records appended, summary printed."""

import json

import pytest

import loops

from bench.records import read_records
from tests.test_cli import run_cli


def test_repeats_run_a_round_of_every_loop_before_the_next(glue_dir, tmp_path):
    """Every loop once, then every loop again: the loops compared run close together in time (in this
    process: the order is the sweep's, whatever runs each cell)."""
    from bench.cli import main

    out = tmp_path / "out"
    assert main(["run", "--loops", "manual,trainer", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--max-steps", "2", "--timing-warmup", "1", "--train-samples", "16", "--eval-samples", "8",
                 "--repeats", "2", "--in-process", "--out", str(out), "--no-progress"]) == 0
    records = read_records(out)
    assert [(r.loop, r.repeat, r.status) for r in records] == [
        (loop, rep, "ok") for rep in (0, 1) for loop in ("manual", "trainer")]
    assert len({r.cell_id for r in records}) == 4


@pytest.mark.slow
def test_run_all_loops_writes_ok_records_each_cell_in_its_own_process(glue_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", "--loops", "all", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                     "--max-steps", "4", "--timing-warmup", "1", "--train-samples", "48", "--eval-samples", "16",
                     "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_records(out)
    assert [(r.loop, r.repeat, r.status) for r in records] == [(loop, 0, "ok") for loop in loops.available()]
    assert len({r.cell_id for r in records}) == len(loops.available())
    assert all(r.command.endswith("--no-progress") and " run " in r.command for r in records)
    # The summary table at the end names every loop.
    for loop in loops.available():
        assert f"| {loop}" in result.stdout
    # Every line is one JSON object, loadable by pandas.
    import pandas as pd

    df = pd.read_json(out / "results.jsonl", lines=True)
    assert len(df) == len(loops.available()) and set(df["status"]) == {"ok"}
    with open(out / "results.jsonl") as f:
        assert all(json.loads(line)["eval_examples"] == 16 for line in f)
    # Each cell in a fresh process: its wall time holds the whole startup, imports included.
    for r in records:
        assert r.process_wall_s > r.setup_s.total_s > r.setup_s.imports_s > 0.1
    # Piped, the sweep says one line per cell and nothing else: no progress frames, no library
    # banners; everything each cell's process printed is in its log.
    assert "\r" not in result.stderr and "LOAD REPORT" not in result.stderr and "Map" not in result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(said) == 2 * len(loops.available())  # "running", then "ok ... samples/s, N s"
    assert all(line.endswith(": running") or " samples/s, " in line for line in said)
    logs = sorted((out / "logs").glob("*.log"))
    assert [p.stem for p in logs] == sorted(r.cell_id for r in records)
    assert all(p.read_text().startswith("=== ") for p in logs)
    _every_second_named(records, result.stderr)


def _every_second_named(records, stderr):
    """Each cell's wall-time parts, measured where their work is done, add up to its process_wall_s
    (from the kernel's start time of the process) within 2%; the peak probe runs once per sweep."""
    import re

    import pytest

    from bench.records.vocabulary import WALL_PARTS as PARTS, WALL_SUM_TOLERANCE as SUM_TOLERANCE, named_s

    for r in records:
        wall = r.wall_s
        assert list(wall)[:len(PARTS)] == [k for k, _ in PARTS] and all(v >= 0 for v in wall.values())
        assert named_s(wall) == pytest.approx(r.process_wall_s, rel=SUM_TOLERANCE), wall
        assert wall["timed_steps_s"] == pytest.approx(r.timed_s, abs=1e-5) and wall["interpreter_s"] > 0  # 6 digits
        assert 0 <= wall["after_record_s"] < r.process_wall_s  # the sweep measured the write and the exit
    # MFU's peak: measured by the sweep's first cell, handed to every other one with where it came from.
    first, rest = records[0], records[1:]
    assert first.device_peak_source.startswith("measured") and first.wall_s["peak_probe_s"] > 0
    for r in rest:
        assert r.device_peak_tflops == first.device_peak_tflops
        assert r.device_peak_source.endswith(f", handed from cell {first.cell_id}, measured once per sweep")
        assert r.wall_s["peak_probe_s"] < 0.01
    # The sweep's last line: how much of its wall clock was timed steps.
    last = stderr.strip().splitlines()[-1]
    m = re.fullmatch(r"bench: timed steps (\d+) s of (\d+) s \((\d+)%\)", last)
    assert m, last
    assert int(m.group(1)) == round(sum(r.timed_s for r in records)) and int(m.group(2)) > sum(
        r.process_wall_s for r in records) * 0.9
