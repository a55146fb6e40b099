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
