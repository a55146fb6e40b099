"""Records both ways: written as strict JSON, read back through Record.from_dict with a schema check."""

import json

import pytest

from bench.records import SCHEMA, Record, ResultsFileError, read_records


def test_a_record_round_trips_and_reads_older_schemas():
    r = Record(loop="manual", device="cpu", precision="fp32", status="failed", reason="x",
               failure={"kind": "exception", "message": "x", "last_lines": ["a"]}, step_losses=[0.5, float("nan")])
    d = json.loads(r.to_json())
    assert d["step_losses"] == [0.5, None] and d["schema"] == SCHEMA
    assert Record.from_dict(d).failure.kind == "exception"
    old = {k: v for k, v in d.items() if k not in ("failure", "machine_load", "machine_busy", "machine_busy_why")}
    assert Record.from_dict(dict(old, schema=1, env={"output_tail": ["b"]})).env == {"output_tail": ["b"]}


def test_a_newer_schema_or_an_unknown_field_is_refused(tmp_path):
    d = json.loads(Record(loop="manual", device="cpu", precision="fp32", status="ok").to_json())
    with pytest.raises(ResultsFileError, match=f"newer than this bench reads \\({SCHEMA}\\)"):
        Record.from_dict(dict(d, schema=SCHEMA + 1))
    (tmp_path / "results.jsonl").write_text(json.dumps(dict(d, new_metric=1.0)) + "\n")
    with pytest.raises(ResultsFileError, match=r"results\.jsonl:1: .*unknown field\(s\) new_metric"):
        read_records(tmp_path)


def test_a_summary_key_without_a_record_field_is_an_error_not_a_drop():
    from bench.cell.main import _record_fields

    assert _record_fields({"steps": 3}) == {"steps": 3}
    with pytest.raises(RuntimeError, match="meter summary keys with no Record field: new_metric"):
        _record_fields({"steps": 3, "new_metric": 1.0})
