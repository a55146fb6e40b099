"""Records as a table: bench.load's columns are the registry's (then every field by a stable name),
one row per cell, figures equal to the records'; bench export writes the same table as CSV, Parquet
or JSON lines, whole, never through a link nor over an input."""

import json
import os
import subprocess
import sys

import pytest

import bench
from bench.analysis.columns import COLUMNS
from bench.analysis.table import columns
from bench.cli import main
from bench.records import read_records
from tests.conftest import ROOT

REPORT = ROOT / "reports" / "cpu-minilm-40steps"


def test_the_frames_columns_are_the_registrys_then_stable_names():
    df = bench.load(REPORT)
    assert list(df.columns) == columns()
    assert [c for c in df.columns if c in {col.name for col in COLUMNS}] == [col.name for col in COLUMNS]
    assert len(set(df.columns)) == len(df.columns)
    # The names do not depend on the data: a run of another shape has the same columns.
    assert list(bench.load(ROOT / "reports" / "h200-bert-base-paths").columns) == list(df.columns)
    for name in ("run.lr", "setup_s.total_s", "machine_load.others_cpu_fraction", "model.n_params",
                 "phase_s_mean.backward", "wall_s.timed_steps_s", "eval_curve.eval_f1", "step_losses", "device_choice"):
        assert name in df.columns


def test_one_row_per_cell_with_the_records_figures():
    records = read_records(REPORT)
    df = bench.load(REPORT)
    assert len(df) == len({r.cell_id for r in records}) == len(records)
    for record, (_, row) in zip(records, df.iterrows()):
        assert row["cell_id"] == record.cell_id and row["samples_per_s"] == record.samples_per_s
        assert row["setup_total_s"] == record.setup_s.total_s == row["setup_s.total_s"]
        assert row["run.lr"] == record.run.lr and list(row["step_losses"]) == record.step_losses
        assert row["machine_load.cores"] == record.machine_load.cores
        assert row["label"].startswith(f"{record.loop}/{record.device}/{record.precision}")
    manual = df[(df.loop == "manual") & (df.precision == "fp32")]
    base = manual["samples_per_s"].median()  # speed-up: against the device's manual fp32 cell
    row = df[(df.loop == "trainer") & (df.precision == "fp32")].iloc[0]
    assert row["speed_up"] == pytest.approx(row["samples_per_s"] / base)


def test_import_bench_is_cheap_and_load_prints_one_row_per_cell():
    code = ("import sys, bench\nassert 'pandas' not in sys.modules and 'torch' not in sys.modules\n"
            "print(bench.load('reports/cpu-minilm-40steps').shape)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"(30, {len(columns())})"


def test_a_cell_run_again_is_one_row_unless_superseded_asked(tmp_path):
    first, *_ = (REPORT / "results.jsonl").read_text().splitlines(keepends=True)
    again = dict(json.loads(first), started_at="2030-01-01T00:00:00+00:00", samples_per_s=1.5)
    (tmp_path / "results.jsonl").write_text(first + json.dumps(again) + "\n")
    df = bench.load(tmp_path)
    assert len(df) == 1 and df.iloc[0]["samples_per_s"] == 1.5 and df.iloc[0]["results_line"] == 2
    every = bench.load(tmp_path, superseded=True)
    assert list(every["superseded"]) == [True, False] and list(every["results_line"]) == [1, 2]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_export_writes_the_same_table(fmt, tmp_path):
    import pandas as pd

    target = tmp_path / f"t.{fmt}"
    assert main(["export", str(REPORT), "--format", fmt, "-o", str(target)]) == 0
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet, "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt](target)
    df = bench.load(REPORT)
    assert list(read.columns) == list(df.columns) and len(read) == len(df)
    assert list(read["samples_per_s"]) == pytest.approx(list(df["samples_per_s"]))
    losses = read["step_losses"].iloc[0]
    assert list(json.loads(losses) if isinstance(losses, str) else losses) == pytest.approx(df["step_losses"].iloc[0])
    assert main(["export", str(REPORT), "--format", fmt, "-o", str(target)]) == 0  # an earlier export: written over


def test_export_defaults_to_a_file_beside_the_records(tmp_path):
    (tmp_path / "results.jsonl").write_bytes((REPORT / "results.jsonl").read_bytes())
    assert main(["export", str(tmp_path), "--format", "csv"]) == 0
    assert (tmp_path / "records.csv").read_text().startswith("results_line,superseded,cell_id,")


@pytest.mark.parametrize("make,args,needle", [
    (lambda d: None, ["-o", "{d}/results.jsonl", "--format", "jsonl"], "is the results file this export reads"),
    (lambda d: (d / "notes.csv").write_text("mine\n"), ["-o", "{d}/notes.csv", "--format", "csv"],
     "exists and was not written by bench export"),
    (lambda d: os.symlink(d / "elsewhere.csv", d / "link.csv"), ["-o", "{d}/link.csv", "--format", "csv"],
     "is a symbolic link"),
    (lambda d: None, ["-o", "{d}/t.csv", "--format", "parquet"], "a .csv name for --format parquet"),
])
def test_export_refuses_inputs_links_and_others_files(make, args, needle, tmp_path, capsys):
    (tmp_path / "results.jsonl").write_bytes((REPORT / "results.jsonl").read_bytes())
    make(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert main(["export", str(tmp_path), *[a.replace("{d}", str(tmp_path)) for a in args]]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and needle in err[0], err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert not (tmp_path / "elsewhere.csv").exists()
