"""A hostile record (its loop, device, precision, model and reason crafted to break Markdown, inject
HTML, or run as a spreadsheet formula) through every report section, ``compare`` and the CSV: no raw
``|``, ``<``, newline or leading ``=`` from it reaches the output."""

import csv
import json

from bench.records import Record
from tests.test_report import rec

LOOP = "a|b</table><script>alert(1)</script>\n=HYPERLINK(\"http://x\")"
DEVICE = "cpu|<img src=x onerror=alert(2)>\n# injected"
PRECISION = "=cmd|' /C calc'!A0"
MODEL = "m|odel\n## <b>x</b>"
REASON = "boom|<i>\n=SUM(1)"
PAYLOADS = (LOOP, DEVICE, PRECISION, MODEL, REASON)


def _records():
    good = [rec("manual", sps=10), rec("trainer", sps=9)]
    evil = rec(LOOP, sps=8, device=DEVICE, precision=PRECISION)
    evil.config["run"]["model"] = MODEL
    failed = rec(LOOP, status="failed", reason=REASON, device=DEVICE, precision=PRECISION)
    failed.cell_id += "-failed"
    return [Record.from_dict(json.loads(r.to_json())) for r in good + [evil, failed]]


def _raw_pieces():
    """The dangerous fragments of each payload, as they would appear unescaped."""
    pieces = []
    for payload in PAYLOADS:
        for line in payload.splitlines():
            pieces += [frag for frag in ("a|b", "</table>", "<script>", "<img", "<b>", "<i>", "cpu|", "m|odel", "boom|")
                       if frag in line]
    return set(pieces)


def _assert_clean(text: str, where: str):
    """Each dangerous fragment, outside inline code (where a reader shows it as typed), is escaped:
    its ``|`` or ``<`` has a backslash before it, or it was made plain text (``¦``, ``‹``)."""
    import re

    prose = "\n".join(re.sub(r"(`+)(.+?)\1", "", line) for line in text.splitlines())
    for frag in _raw_pieces():
        special = frag.find("|") if "|" in frag else frag.find("<")
        for m in re.finditer(re.escape(frag), prose):
            i = m.start() + special
            assert i > 0 and prose[i - 1] == "\\", f"{where}: raw {frag!r} from a record: ...{prose[max(0, i - 40):i + 40]!r}"
    for line in text.splitlines():
        assert not line.startswith(("=HYPERLINK", "# injected", "## <b>", "=SUM", "=cmd")), f"{where}: {line!r}"


def test_a_hostile_record_cannot_change_any_section_of_the_report(tmp_path):
    from bench.report import render, sections

    text = render(_records(), tmp_path / "report.md")
    _assert_clean(text, "report.md")
    assert "a¦b‹/table›" in text  # the loop is there, as plain text, not dropped
    # Each section alone, too (a section that shows nothing of the record passes trivially).
    from bench.report.markdown import shown
    from bench.report.context import Context

    ctx = Context.of(shown(_records()), tmp_path / "r2.md")
    for section in sections.SECTIONS:
        _assert_clean("\n".join(section.lines(ctx)), section.__name__)


def test_a_hostile_record_cannot_change_compare(tmp_path):
    from bench.report.compare import render

    a = _records()[:2]
    text, _ = render(a, _records(), ("a", "b"), set(), None)  # the hostile cells are "Only in B"
    assert "Only in B" in text
    _assert_clean(text, "compare")


def test_a_hostile_record_cannot_run_as_a_formula_in_the_csv(tmp_path):
    from bench.report.cells_csv import write_csv

    path = tmp_path / "cells.csv"
    write_csv(_records(), path)
    raw = path.read_text(encoding="utf-8")
    rows = list(csv.reader(raw.splitlines()))
    assert len(rows) == len(raw.splitlines())  # no field spans lines
    for row in rows:
        for field in row:
            assert not field.startswith(("=", "+", "@", "\t", "\r")) and not (field.startswith("-") and not _number(field))
    assert any(field.startswith("a|b</table>") for row in rows for field in row)  # kept, as text
    assert any(field == "'" + PRECISION for row in rows for field in row)  # a formula made text


def _number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def test_a_long_device_string_gets_bounded_plot_names(tmp_path):
    """A 300-character device: the report is written, its plots named within the file system's limit
    (a bounded name with a hash), nothing blamed on the folder, no file left half-written."""
    from bench.cli import main
    from bench.records import append_record

    out = tmp_path / "out"
    out.mkdir()
    for loop in ("manual", "trainer"):
        append_record(out, rec(loop, device="cpu" + "x" * 300))
    assert main(["report", str(out)]) == 0
    names = [p.name for p in out.iterdir()]
    assert "report.md" in names and all(len(n) < 140 for n in names)
    assert not [n for n in names if n.endswith(".tmp")]


def test_hostile_adapter_settings_cannot_change_the_lora_section(tmp_path):
    """The adapter's strings come from the live model (module names a model file chose): shown
    escaped in the LoRA comparison and the fine-tuning line."""
    import dataclasses

    from bench.records.groups import Adapter
    from bench.report import render

    full = rec("manual", sps=10)
    lora = rec("manual", sps=20)
    lora.cell_id += "-lora"
    lora.config["run"] = {**lora.config["run"], "finetune": "lora", "lr": 5e-4}
    lora.model = dataclasses.replace(full.model, finetune="lora", adapter=Adapter(
        r=8, alpha=8.0, target_modules=["q|uery</td>", "`v`"], targets_source="peft|<b>x</b>",
        modules_to_save=["classifier\n## injected"], trainable_params=10, total_params=1000))
    records = [Record.from_dict(json.loads(r.to_json())) for r in (full, lora)]
    text = render(records, tmp_path / "report.md")
    assert "## LoRA beside full fine-tuning" in text
    section = text.split("## LoRA beside full fine-tuning")[1].split("\n## ")[0]
    assert not any(line.startswith("## injected") for line in text.splitlines())
    import re

    for line in section.splitlines():
        outside = re.sub(r"(`+)(.+?)\1", "", line)  # inline code shows its text as typed
        assert not re.search(r"(?<!\\)<", outside), line  # every < from a record escaped
        if line.startswith("| "):
            assert len(re.findall(r"(?<!\\)\|", outside)) == 11, line  # the table's own 10 columns


def test_an_adapter_of_the_wrong_types_is_not_a_bench_record():
    """The report formats the adapter's numbers as numbers: a record holding text there is refused as
    it is read, in one line, never half-rendered."""
    import pytest

    from bench.records import ResultsFileError

    for bad in ({"r": "8|<b>x</b>"}, {"alpha": "8"}, {"adapted_layers": True}, {"target_modules": "query"},
                {"modules_to_save": [1]}):
        d = json.loads(rec("manual").to_json())
        d["model"]["adapter"] = {"r": 8, "alpha": 8.0, **bad}
        with pytest.raises(ResultsFileError, match="model.adapter's"):
            Record.from_dict(d)
