"""A device is one entry of ``bench/devices.py``'s table: a new entry, and nothing else, is seen
through the command line, the sweep, every loop and the report."""

import dataclasses

import pytest

from bench.records import read_records
from loops import available


def test_a_new_device_entry_runs_every_loop_and_reaches_the_report(glue_dir, tmp_path, monkeypatch):
    import bench.cli
    import bench.config
    import bench.config.flags
    import bench.devices
    from bench.cli import main

    # A device that is the host CPU under another name: every behaviour comes from its fields.
    fake = dataclasses.replace(bench.devices.DEVICES["cpu"], name="fakecpu")
    monkeypatch.setitem(bench.devices.DEVICES, "fakecpu", fake)
    names = tuple(bench.devices.DEVICES)
    monkeypatch.setattr(bench.config, "DEVICES", names)  # what the parser offers, as at import
    monkeypatch.setattr(bench.config.flags, "DEVICES", names)

    out = tmp_path / "out"
    assert main(["run", "--loops", "all", "--device", "fakecpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--max-steps", "3", "--timing-warmup", "1", "--train-samples", "24", "--eval-samples", "8",
                 "--in-process", "--out", str(out), "--no-progress"]) == 0
    records = read_records(out)
    assert [(r.loop, r.device, r.status) for r in records] == [(loop, "fakecpu", "ok") for loop in available()]
    assert all(r.steps == 3 and r.samples_per_s > 0 for r in records)
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "fakecpu" in report and "cpu" not in {r.device for r in records}
    # A name not in the table is refused by the parser, which lists the table's names.
    with pytest.raises(SystemExit) as stop:
        main(["run", "--device", "nosuchdevice", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2
