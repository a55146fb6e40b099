"""The preflight: what no cell could get past is refused once, before any cell, in one line that
names the split and row, the model file, or the folder; and a sweep stops at its first full disk."""

from pathlib import Path

import pytest

from bench.records import read_records
from tests.test_cli import run_cli


def _fixture_with(tmp_path, split, row, **column):
    """The generated MRPC fixture with one change: a label at ``row`` of ``split`` or a column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers.mrpc_fixture import write_mrpc_like

    root = write_mrpc_like(tmp_path / "glue")
    path = root / "mrpc" / f"{split}-00000-of-00001.parquet"
    table = pq.read_table(path)
    if "label" in column:
        labels = table.column("label").to_pylist()
        labels[row] = column["label"]
        i = table.schema.get_field_index("label")
        table = table.set_column(i, table.schema.field(i), pa.array(labels, table.schema.field(i).type))
    if column.get("extra"):
        table = table.append_column("note", pa.array(["x"] * table.num_rows))
    if column.get("drop"):
        table = table.drop_columns([column["drop"]])
    if column.get("empty"):
        table = table.slice(0, 0)
    pq.write_table(table, path)
    return str(root)


def _run(glue, out, *extra):
    return run_cli("run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--glue-dir", glue,
                   "--max-steps", "2", "--timing-warmup", "1", "--train-samples", "16", "--eval-samples", "8", "--out", str(out),
                   "--no-progress", *extra)


@pytest.mark.parametrize("split,row,label", [("validation", 5, -100), ("validation", 3, -1), ("train", 7, 2)])
def test_a_label_other_than_0_or_1_is_refused_before_any_cell(tmp_path, split, row, label):
    result = _run(_fixture_with(tmp_path, split, row, label=label), tmp_path / "out")
    assert result.returncode == 2, result.stderr[-1500:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(lines) == 1 and f"the {split} split, row {row}: label {label}, not 0 or 1" in lines[0]
    assert "running" not in result.stderr and not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.parametrize("change,said", [
    (dict(extra=True), "columns are not MRPC's (extra note"),
    (dict(drop="idx"), "columns are not MRPC's (missing idx"),
    (dict(empty=True), "the validation split is empty"),
])
def test_a_split_of_the_wrong_shape_is_one_line(tmp_path, change, said):
    result = _run(_fixture_with(tmp_path, "validation", 0, **change), tmp_path / "out")
    assert result.returncode == 2 and said in result.stderr, result.stderr[-1500:]
    assert "Traceback" not in result.stderr


def _model_folder(tmp_path, config) -> Path:
    """A local model folder: a config and the packaged uncased tokenizer, no weights written yet."""
    from bench.models import load_tokenizer, packaged_model_path

    folder = tmp_path / "model"
    config.save_pretrained(folder)
    load_tokenizer(packaged_model_path()).save_pretrained(folder)
    return folder


def test_a_decoder_only_model_is_refused_before_any_cell(glue_dir, tmp_path):
    from transformers import GPT2Config

    folder = _model_folder(tmp_path, GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=30522))
    result = run_cli("run", "--loops", "manual", "--device", "cpu", "--model", str(folder), "--no-weights", "--glue-dir", glue_dir,
                     "--max-steps", "2", "--timing-warmup", "1", "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 2 and "'gpt2' is a decoder-only architecture" in result.stderr, result.stderr[-1500:]
    assert "hidden_dropout_prob" not in result.stderr


def test_a_three_label_head_and_a_corrupt_weights_file_are_refused(tmp_path):
    from transformers import BertConfig

    from bench.config import ConfigError, RunConfig
    from bench.models.checks import check_model

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=3)
    folder = _model_folder(tmp_path, config)
    with pytest.raises(ConfigError, match="its classifier head has 3 labels and MRPC has 2"):
        check_model(RunConfig(model=str(folder)))
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    folder = _model_folder(tmp_path / "b", config)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": trunc")
    with pytest.raises(ConfigError, match="model.safetensors cannot be read .* truncated or corrupt"):
        check_model(RunConfig(model=str(folder)))


def test_too_little_space_for_the_cells_is_refused_naming_the_folder(glue_dir, tmp_path, monkeypatch, capsys):
    import tempfile

    from bench.sweep import preflight
    from bench.cli import main

    monkeypatch.setattr(preflight, "free_bytes", lambda path: 12 * 1024 if Path(path) == Path(tempfile.gettempdir()) else 2**40)
    assert main(["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--max-steps", "2", "--timing-warmup", "1", "--in-process", "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    assert f"{tempfile.gettempdir()}: the temporary folder has 0.0 MiB free" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_the_sweep_stops_at_its_first_full_disk(glue_dir, tmp_path, monkeypatch, capsys):
    """The first cell fails for errno 28: the sweep stops there (one line, exit 2), the failure recorded,
    the cells after it not run into the same failure."""
    import bench.cell.main
    import bench.sweep.driver
    from bench.cli import main

    real = bench.cell.main.run_cell

    def full(cell, **kwargs):
        record = real(cell, **kwargs)
        record.status, record.reason = "failed", "OSError: [Errno 28] No space left on device: '/tmp/x'"
        return record

    monkeypatch.setattr(bench.cell.main, "run_cell", full)
    assert main(["run", "--loops", "manual,trainer", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--max-steps", "2", "--timing-warmup", "1", "--train-samples", "16", "--eval-samples", "8",
                 "--in-process", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and "the sweep stops here" in err and "trainer/cpu/fp32: running" not in err
    assert [(r.loop, r.status) for r in read_records(tmp_path / "out")] == [("manual", "failed")]


@pytest.mark.parametrize("argv,said", [
    (["--csv", "{out}/report.md"], "the same file as the report"),
    (["-o", "{tmp}/x.md", "--csv", "{tmp}/x.md"], "the same file as the report"),
    (["--csv", "{out}/results.jsonl"], "that is the results file (the records)"),
    (["--csv", "{out}/.bench.lock"], "that is the folder's lock"),
    (["-o", "{out}/logs"], "that is the cells' logs"),
])
def test_report_outputs_never_land_on_each_other_or_on_the_folders_files(tmp_path, capsys, argv, said):
    from bench.cli import main
    from bench.records import append_record
    from tests.test_report import rec

    out = tmp_path / "out"
    out.mkdir()
    for r in (rec("manual"), rec("trainer")):
        append_record(out, r)
    main(["report", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    code = main(["report", str(out), *[a.format(out=out, tmp=tmp_path) for a in argv]])
    assert code == 2 and said in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing replaced
    assert main(["report", str(out)]) == 0  # the folder still reports


# ---- one line, not a traceback ---------------------------------------------------------------
@pytest.mark.parametrize("make,said", [
    (lambda lock: lock.mkdir(), "a folder, where bench keeps the folder's lock"),
    (lambda lock: __import__("os").mkfifo(lock), "a FIFO, where bench keeps the folder's lock"),
])
def test_a_lock_that_is_not_a_file_is_one_line(glue_dir, tmp_path, make, said):
    out = tmp_path / "out"
    out.mkdir()
    make(out / ".bench.lock")
    result = _run(glue_dir, out, "--in-process")
    assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr


def test_config_files_one_line_each_and_read_back(tmp_path, capsys):
    from bench.cli import main

    def err(*argv):
        assert main(list(argv)) == 2
        return capsys.readouterr().err

    (tmp_path / "x.yaml").write_text("a: 1\n")
    assert err("run", "--config", str(tmp_path / "x.yaml")).count("--config") == 1  # said once, formats named
    (tmp_path / "a.toml").write_text("lr = 0.1\n")
    (tmp_path / "b.toml").write_text("seed = 3\n")
    assert "--config given 2 times" in err("run", "--config", str(tmp_path / "a.toml"), "--config", str(tmp_path / "b.toml"))
    # A value that starts with a dash stays the key's value, not the next flag.
    (tmp_path / "c.toml").write_text('model = "--lr"\n')
    assert main(["run", "--config", str(tmp_path / "c.toml"), "--print-config"]) == 0
    assert 'model = "--lr"' in capsys.readouterr().out
    # A character past the BMP is written as itself, and the file reads back.
    assert main(["run", "--model", "tiny😀", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert 'model = "tiny😀"' in printed
    (tmp_path / "e.toml").write_text(printed, encoding="utf-8")
    assert main(["run", "--config", str(tmp_path / "e.toml"), "--print-config"]) == 0
    assert capsys.readouterr().out == printed


@pytest.mark.parametrize("schema", [0, -5])
def test_records_of_no_schema_are_refused(tmp_path, schema):
    import json

    from bench.records import read_records
    from bench.records.schema import ResultsFileError
    from tests.test_report import rec

    d = json.loads(rec("manual").to_json())
    d["schema"] = schema
    (tmp_path / "results.jsonl").write_text(json.dumps(d) + "\n")
    with pytest.raises(ResultsFileError, match="schemas start at 1"):
        read_records(tmp_path)


def test_ctrl_c_in_an_in_process_lightning_cell_is_an_interrupt(tiny_run, monkeypatch):
    """Lightning turns KeyboardInterrupt into sys.exit(1): the loop gives the interrupt back."""
    import lightning.pytorch as pl

    from bench.cell.main import run_cell
    from bench.config import Cell

    def interrupted_fit(self, *args, **kwargs):
        self.state.status = pl.trainer.states.TrainerStatus.INTERRUPTED
        raise SystemExit(1)

    monkeypatch.setattr(pl.Trainer, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        run_cell(Cell("lightning", "cpu", "fp32", tiny_run()), progress=False)
