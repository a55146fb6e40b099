"""The read side's contracts: analysis and report read records by attribute, never by a field's
name; every report section is one module listed once; one column registry drives the device
tables, the CSV, the run's summary and ``bench compare``."""

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from bench.analysis import columns
from bench.records import GROUPS, Record
from bench.report.sections import SECTIONS

ROOT = Path(__file__).resolve().parent.parent
RECORD_FIELDS = {f.name for f in dataclasses.fields(Record)} | {
    f.name for group in GROUPS.values() for f in dataclasses.fields(group)}


def _string_lookups(path: Path) -> list[str]:
    """Each `x["field"]`, `x.get("field")` and `getattr(x, "field")` of a record field in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            at = {"get": 0, "getattr": 1, "hasattr": 1}.get(name)
            if at is not None and len(node.args) > at and isinstance(node.args[at], ast.Constant):
                key = node.args[at].value
        if isinstance(key, str) and key in RECORD_FIELDS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {key!r}")
    return found


def test_no_record_field_is_looked_up_by_string_in_analysis_or_report():
    modules = sorted((ROOT / "bench" / "analysis").rglob("*.py")) + sorted((ROOT / "bench" / "report").rglob("*.py"))
    assert len(modules) > 10
    found = [hit for path in modules for hit in _string_lookups(path)]
    assert not found, "record fields looked up by name (read them as attributes):\n" + "\n".join(found)


def test_the_lookup_check_finds_a_lookup(tmp_path):
    """The check above can fail: a module that reads a record as a dict is caught, all three ways."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(r):\n    return r['samples_per_s'], r.get('eval_f1'), getattr(r, 'total_s')\n")
    assert len(_string_lookups_at(bad)) == 3


def _string_lookups_at(path: Path) -> list[str]:
    global ROOT
    saved, ROOT = ROOT, path.parent
    try:
        return _string_lookups(path)
    finally:
        ROOT = saved


def test_every_section_is_one_module_with_its_lines():
    names = [s.__name__ for s in SECTIONS]
    assert len(set(names)) == len(names) and all(n.startswith("bench.report.") for n in names)
    for section in SECTIONS:
        assert callable(section.lines), section.__name__
        assert not hasattr(section, "plots") or callable(section.plots), section.__name__
        assert Path(section.__file__).parent == ROOT / "bench" / "report"


@pytest.fixture
def records(tmp_path):
    from tests.test_report import rec

    out = []
    for loop, sps in (("manual", 10.0), ("trainer", 9.0)):
        r = rec(loop, sps=sps)
        r.padding_fraction, r.step_s_mean = (0.25, 0.8125) if loop == "manual" else (0.5, 0.9)
        out.append(Record.from_dict(json.loads(r.to_json())))
    return out


def test_a_column_for_a_record_field_is_one_registry_line(records, tmp_path, monkeypatch):
    """Adding a column for `step_s_mean` to COLUMNS puts it in the device table and the CSV, with its
    label, format, scale and aggregation, and nowhere else is touched."""
    from bench.report import render
    from bench.report.cells_csv import csv_rows

    mean = columns.Column("step_s_mean", "step mean ms", lambda r: r.step_s_mean, better=columns.LOWER, unit="s",
                          scale=1000, shows=columns.TABLE_CSV)
    before = render(records, tmp_path / "before.md")
    assert "| step mean ms |" not in before
    monkeypatch.setattr(columns, "COLUMNS", columns.COLUMNS + (mean,))
    after = render(records, tmp_path / "after.md")
    header = next(line for line in after.splitlines() if line.startswith("| loop | precision | samples/s"))
    assert header.endswith("| step mean ms |")
    assert any(line.startswith("| manual | fp32 |") and line.endswith("| 812.5 |") for line in after.splitlines())
    assert [row["step_s_mean"] for row in csv_rows(records)] == [0.8125, 0.9]


def test_the_summary_and_compare_draw_their_columns_from_the_registry(records):
    from bench.analysis.compare import ratio_columns
    from bench.report.summary import summary_table

    header = summary_table(records).splitlines()[0]
    for column in columns.shown_in(columns.SUMMARY):
        assert f" {column.label} " in header
    assert {c.name for c in ratio_columns()} == {c.name for c in columns.shown_in(columns.COMPARE)} - {"eval_f1"}
    for column in columns.COLUMNS:  # each declares which way is better where it is a figure to compare
        assert column.better in ("", columns.HIGHER, columns.LOWER)
        assert columns.COMPARE not in column.shows or column.better


def _seeded(loop, seed, step_s_mean, flip="", **run):
    from tests.test_report import rec

    r = rec(loop, sps=10.0)
    r.config["run"].update(defaults="native", seed=seed, flip=flip, **run)
    r.seed, r.step_s_mean = seed, step_s_mean
    r.cell_id = f"{loop}-{seed}-{flip}"
    return Record.from_dict(json.loads(r.to_json()))


def test_explain_pairs_each_flip_with_the_base_cells_of_its_own_seed(tmp_path):
    """Under --seeds, a flip at seed 2 is measured against seed 2's cells, never seed 1's: each seed
    gets its own explanation, said per seed in the report."""
    from bench.analysis.explain import explain_rows, flip_label
    from bench.report import render

    flip = flip_label("manual", "trainer", "max_grad_norm")
    records = []
    for seed, (base, flipped) in ((1, (0.100, 0.110)), (2, (0.200, 0.260))):
        records += [_seeded("manual", seed, base), _seeded("trainer", seed, base + 0.05, max_grad_norm=1.0),
                    _seeded("manual", seed, flipped, flip=flip, max_grad_norm=1.0)]
    found = explain_rows(records)
    assert [(e.seed, e.cell_a.seed, e.cell_b.seed) for e in found] == [(1, 1, 1), (2, 2, 2)]
    assert [round(e.effects[0].effect_s, 6) for e in found] == [0.01, 0.06]
    text = render(records, tmp_path / "report.md")
    assert "### cpu / fp32 / seed 1: manual → trainer" in text and "### cpu / fp32 / seed 2: manual → trainer" in text


def test_compare_says_the_seed_of_each_row_of_a_seeds_sweep(tmp_path):
    from bench.report.compare import render

    records = [_seeded(loop, seed, 0.1) for loop in ("manual", "trainer") for seed in (1, 2)]
    text, cmp = render(records, records, ("a", "b"), set(), None)
    assert [(r.loop, r.seed) for r in cmp.rows] == [("manual", 1), ("trainer", 1), ("manual", 2), ("trainer", 2)]
    assert "| loop | device | precision | seed |" in text and "| manual | cpu | fp32 | 2 |" in text
    one_seed = [r for r in records if r.seed == 1]
    assert "| seed |" not in render(one_seed, one_seed, ("a", "b"), set(), None)[0]


def test_a_new_section_is_one_file_and_one_line_in_sections(records, tmp_path, monkeypatch):
    from bench.report import render, sections
    from tests.helpers import sample_section

    for r in records:
        r.timed_steps = 2
    monkeypatch.setattr(sections, "SECTIONS", sections.SECTIONS[:-1] + (sample_section, sections.SECTIONS[-1]))
    text = render(records, tmp_path / "report.md")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[-2:] == [f"## {sample_section.HEADING}", "## Skipped and failed cells"]
    assert "- manual: 2\n- trainer: 2" in text


def test_explain_pairs_cells_only_at_every_field_of_the_plan(tmp_path):
    """manual at batch 8 beside trainer at batch 4 is no pair (a batch_size "flip" 4 → 4 came of it);
    with both batch sizes each pairs with its own, and each is explained under its own heading."""
    from bench.analysis.explain import base_pairs, explain_rows, flip_label
    from bench.analysis.cells import cells_of
    from bench.config import ConfigError
    from bench.report import render

    lopsided = [_seeded("manual", 1, 0.1, batch_size=8), _seeded("trainer", 1, 0.2, batch_size=4)]
    with pytest.raises(ConfigError, match="same device, precision and run config"):
        base_pairs(cells_of(lopsided), "manual", "trainer")

    flip = flip_label("manual", "trainer", "max_grad_norm")
    records = []
    for bs, base in ((4, 0.100), (8, 0.200)):
        records += [_seeded("manual", 1, base, batch_size=bs), _seeded("trainer", 1, base + 0.05, batch_size=bs, max_grad_norm=1.0),
                    _seeded("manual", 1, base + 0.01 * bs, flip=flip, batch_size=bs, max_grad_norm=1.0)]
    for r in records:
        r.cell_id += f"-bs{r.run.batch_size}"
    pairs = base_pairs(cells_of(records), "manual", "trainer")
    assert sorted((a.run.batch_size, b.run.batch_size) for a, b in pairs) == [(4, 4), (8, 8)]
    found = explain_rows(records)
    assert sorted((e.cell_a.run.batch_size, e.cell_b.run.batch_size, round(e.effects[0].effect_s, 6)) for e in found) \
        == [(4, 4, 0.04), (8, 8, 0.08)]
    assert all(not any(row.setting == "batch_size" for row in e.effects) for e in found)
    text = render(records, tmp_path / "report.md")
    assert "### cpu / fp32 / bs 4: manual → trainer" in text and "### cpu / fp32 / bs 8: manual → trainer" in text
