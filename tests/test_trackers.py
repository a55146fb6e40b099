"""--report-to: each tracker's files read back with its own library (MLflow's client, TensorBoard's
event reader, W&B's own protobuf records, Trackio's own storage), the figures equal to the records'
own; a tracker that cannot work is one line before any cell, one that fails mid-sweep a warning and
a tracker-log entry that never touches a record, and what it missed is logged later."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import build_parser, main
from bench.records import read_records
from tests.conftest import ROOT
from tests.test_cli import run_cli

REPORT = ROOT / "reports" / "cpu-minilm-40steps"


def _no_tracker_env(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_PROJECT", "TRACKIO_DIR", "TRACKIO_SPACE_ID",
                 "TRACKIO_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def swept(glue_dir, tmp_path_factory):
    """The done-when command, small: two loops, 8 steps of the tiny model, MLflow and TensorBoard."""
    out = tmp_path_factory.mktemp("trackers") / "sweep"
    env = {k: v for k, v in __import__("os").environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--loops", "manual,trainer", "--device", "cpu",
                             "--model", "tiny", "--max-steps", "8", "--report-to", "mlflow,tensorboard", "--glue-dir",
                             glue_dir, "--train-samples", "64", "--eval-samples", "16", "--timing-warmup", "2",
                             "--no-progress", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return out, read_records(out)


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def test_mlflow_store_holds_one_run_per_cell_with_the_step_losses(swept):
    from mlflow.tracking import MlflowClient

    out, records = swept
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep")  # named after OUT
    runs = client.search_runs([experiment.experiment_id])
    cells = {r.data.tags["bench.cell_id"]: r for r in runs if r.data.tags.get("bench.kind") == "cell"}
    assert set(cells) == {r.cell_id for r in records} and len(cells) == 2
    assert [r.info.run_name for r in runs if r.data.tags.get("bench.kind") == "report"] == ["report"]
    for record in records:
        run = cells[record.cell_id]
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in history] == list(range(1, 9))
        assert all(_close(m.value, v) for m, v in zip(history, record.step_losses))
        lrs = client.get_metric_history(run.info.run_id, "train/lr")
        assert all(_close(m.value, v) for m, v in zip(lrs, record.step_lrs))
        assert _close(run.data.metrics["summary/samples_per_s"], record.samples_per_s)
        assert _close(run.data.metrics["eval/f1"], record.eval_f1)
        assert run.data.params["run.lr"] == str(record.run.lr) and run.data.params["loop"] == record.loop
        assert run.data.params["settings.optimizer"] == record.settings["optimizer"]
        assert run.info.run_name == f"{record.loop}/cpu/fp32" and run.info.status == "FINISHED"
        artifact = client.download_artifacts(run.info.run_id, "record.json", str(out / "dl" / record.cell_id))
        assert Path(artifact).read_text() == record.to_json() + "\n"  # the record exactly as results.jsonl holds it
        assert f"{record.cell_id}.log" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_tensorboard_event_files_hold_the_same_scalars(swept):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, records = swept
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    for record in records:
        events = EventAccumulator(str(out / "tensorboard" / f"{record.loop}-cpu-fp32"))
        events.Reload()
        run = next(r for r in runs if r.data.tags.get("bench.cell_id") == record.cell_id)
        assert set(events.Tags()["scalars"]) == set(run.data.metrics)  # the same scalars in both
        for name in ("train/loss", "train/lr", "train/step_s"):
            tb = [(e.step, e.value) for e in events.Scalars(name)]
            ml = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
            assert [s for s, _ in tb] == [s for s, _ in ml]
            assert all(math.isclose(a, b, rel_tol=1e-6) for (_, a), (_, b) in zip(tb, ml))  # events hold float32
        assert (out / "tensorboard" / f"{record.loop}-cpu-fp32" / "record.json").read_text() == record.to_json() + "\n"
    log = [json.loads(line) for line in (out / "trackers.jsonl").read_text().splitlines()]
    assert {(e["tracker"], e["kind"], e["status"]) for e in log} == {
        (t, k, "logged") for t in ("mlflow", "tensorboard") for k in ("cell", "report")}


def _small_out(tmp_path: Path, n: int = 2) -> Path:
    """An OUT holding the first ``n`` records of a committed run: trackers need no training to be tested."""
    out = tmp_path / "small"
    out.mkdir()
    lines = (REPORT / "results.jsonl").read_text().splitlines(keepends=True)[:n]
    (out / "results.jsonl").write_text("".join(lines))
    return out


def test_wandb_offline_and_trackio_local_read_back(tmp_path, monkeypatch):
    """``bench report OUT --report-to wandb,trackio``: every record logged, then the report; W&B's
    run log decoded with W&B's own protobuf, Trackio's store read by Trackio's own storage."""
    from tests.helpers.wandb_log import run_of

    _no_tracker_env(monkeypatch)
    out = _small_out(tmp_path)
    records = read_records(out)
    result = run_cli("report", str(out), "--report-to", "wandb,trackio", env={"WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stderr
    runs = [run_of(p) for p in sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))]
    cells = {r["config"]["bench.key"]: r for r in runs if r["name"] != "report"}
    assert len(cells) == 2 and {r["group"] for r in runs} == {"small"} and [r["name"] for r in runs].count("report") == 1
    for record in records:
        run = next(r for r in cells.values() if r["config"]["loop"] == record.loop)
        assert [run["history"][s]["train/loss"] for s in sorted(run["history"])] == pytest.approx(record.step_losses)
        assert run["summary"]["summary/samples_per_s"] == pytest.approx(record.samples_per_s)
    files = sorted((out / "wandb").glob("offline-run-*/files/record.json"))
    assert {f.read_text() for f in files} == {r.to_json() + "\n" for r in records}
    code = ("import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage as S\n"
            "print(json.dumps({n: S.get_logs('small', n) for n in S.get_runs('small')}))")
    read = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(__import__("os").environ, TRACKIO_DIR=str(out / "trackio")))
    logs = json.loads(read.stdout.strip().splitlines()[-1])
    assert set(logs) == {"manual/cpu/fp32", "accelerate/cpu/fp32", "report"}
    for record in records:
        rows = logs[f"{record.loop}/cpu/fp32"]
        losses = {row["step"]: row["train/loss"] for row in rows if "train/loss" in row}
        assert [losses[s] for s in sorted(losses)] == pytest.approx(record.step_losses)
        assert any(row.get("summary/eval_f1") == pytest.approx(record.eval_f1) for row in rows)


def test_a_missing_extra_is_one_line_before_anything(glue_dir, tmp_path, monkeypatch, capsys):
    from bench import trackers

    monkeypatch.setitem(trackers.TRACKERS, "mlflow", ("bench.trackers.to_mlflow", "no_such_package_here"))
    out = tmp_path / "out"
    assert main(["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--report-to", "mlflow", "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["bench: error: --report-to mlflow: needs the package 'no_such_package_here', not installed here "
                   "(pip install -e \".[mlflow]\")"]
    assert not out.exists()


def test_an_unreachable_server_is_one_line_before_any_cell(glue_dir, tmp_path, monkeypatch, capsys):
    _no_tracker_env(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    out = tmp_path / "out"
    assert main(["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--max-steps", "2", "--timing-warmup", "1", "--in-process", "--report-to", "mlflow",
                 "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bench: error")]
    assert len(err) == 1 and err[0].startswith("bench: error: --report-to mlflow: cannot log to it (")
    assert not (out / "results.jsonl").exists()


def test_a_tracker_failing_mid_sweep_warns_keeps_every_record_and_logs_it_later(tmp_path, monkeypatch):
    from bench.trackers import drive, to_tensorboard

    out = _small_out(tmp_path, 3)
    before = (out / "results.jsonl").read_bytes()
    trackers = drive.open_trackers(["tensorboard"], out)
    monkeypatch.setattr(to_tensorboard, "log_run", lambda session, run: (_ for _ in ()).throw(OSError("disk gone")))
    warnings = drive.log_pending(trackers)
    assert len(warnings) == 2 and "tensorboard: not logged (OSError: disk gone" in warnings[0]
    assert "off for the rest of this sweep" in warnings[1] and "tensorboard" in trackers.off
    log = drive.read_log(out)
    assert [e["status"] for e in log] == ["failed", "failed", "off"]
    assert (out / "results.jsonl").read_bytes() == before  # no record touched
    monkeypatch.undo()
    assert drive.log_pending(drive.open_trackers(["tensorboard"], out)) == []  # what it missed, logged now
    logged = [e for e in drive.read_log(out) if e["status"] == "logged"]
    assert len(logged) == 3 and len({e["key"] for e in logged}) == 3
    assert drive.log_pending(drive.open_trackers(["tensorboard"], out)) == []  # and only once
    assert len([e for e in drive.read_log(out) if e["status"] == "logged"]) == 3


def test_a_cell_run_again_gets_a_numbered_run(tmp_path):
    from bench.trackers import drive

    out = _small_out(tmp_path, 1)
    line = (out / "results.jsonl").read_text()
    again = json.loads(line)
    again["started_at"] = "2030-01-01T00:00:00+00:00"  # the same cell, recorded once more (a resumed failure)
    (out / "results.jsonl").write_text(line + json.dumps(again) + "\n")
    drive.log_pending(drive.open_trackers(["tensorboard"], out))
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == ["manual-cpu-fp32", "manual-cpu-fp32-2"]
    assert [e["name"] for e in drive.read_log(out)] == ["manual/cpu/fp32", "manual/cpu/fp32 (2)"]


@pytest.mark.parametrize("text,expected", [
    ("none", []), ("mlflow", ["mlflow"]), ("tensorboard,mlflow,tensorboard", ["tensorboard", "mlflow"]),
    ("all", ["mlflow", "tensorboard", "wandb", "trackio"]),
])
def test_report_to_through_the_parser(text, expected):
    assert build_parser().parse_args(["run", "--report-to", text]).report_to == expected
    assert build_parser().parse_args(["report", "x", "--report-to", text]).report_to == expected
    assert build_parser().parse_args(["run"]).report_to == []


def test_an_unknown_tracker_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--report-to", "mlflow,comet"])
    assert exc.value.code == 2
    assert "unknown tracker 'comet'; choose from: none, all, mlflow, tensorboard, wandb, trackio" in capsys.readouterr().err
