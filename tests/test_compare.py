"""``bench compare A B``: cells matched on loop, device, precision and training settings, ratios
B/A with a noise-aware verdict, a CI gate, and a refusal to compare what nobody said differs."""


from bench.records import append_record
from tests.test_cli import run_cli
from tests.test_report import rec


def _run(folder, sps_by_repeat, lr=5e-5, torch_version="2.13"):
    for loop in ("manual", "trainer"):
        for repeat, sps in enumerate(sps_by_repeat):
            r = rec(loop, sps=sps, repeat=repeat)
            r.config["run"]["lr"] = lr
            r.env = {**r.env, "torch": torch_version}
            r.setup_s = {"total_s": 2.0}
            append_record(folder, r)
    return folder


def test_the_same_run_twice_compares_as_the_same_speed(tmp_path):
    a = _run(tmp_path / "a", [10.0, 10.2, 9.9])
    b = _run(tmp_path / "b", [10.1, 10.0, 10.0], torch_version="2.14")
    result = run_cli("compare", str(a), str(b), "--fail-above", "10")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("# bench compare")
    assert "torch: `2.13` → `2.14`" in out  # what differs besides the code, said first
    assert out.count("same speed (within 5%)") == 2 and "| manual | cpu | fp32 |" in out
    assert "No cell is more than 10% slower in B." in out


def test_a_slower_run_fails_the_gate_and_is_called_real_when_every_pair_says_so(tmp_path):
    a = _run(tmp_path / "a", [10.0, 10.2, 9.9])
    b = _run(tmp_path / "b", [8.0, 8.1, 7.9])
    result = run_cli("compare", str(a), str(b), "--fail-above", "10")
    assert result.returncode == 1, result.stderr
    assert "20% slower in B in every one of 3 paired runs: real" in result.stdout
    assert "**Slower than the 10% limit:** manual/cpu/fp32 (20.0% fewer samples/s)" in result.stdout
    # Without a limit, a comparison is a comparison: exit 0.
    assert run_cli("compare", str(a), str(b)).returncode == 0


def test_a_training_setting_nobody_named_is_refused(tmp_path):
    a = _run(tmp_path / "a", [10.0])
    b = _run(tmp_path / "b", [10.0], lr=1e-4)
    result = run_cli("compare", str(a), str(b))
    assert result.returncode == 2 and result.stdout == ""
    assert "lr (5e-05 in A, 0.0001 in B)" in result.stderr and "--differ lr" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    named = run_cli("compare", str(a), str(b), "--differ", "lr", "-o", str(tmp_path / "c.md"))
    assert named.returncode == 0, named.stderr
    text = (tmp_path / "c.md").read_text()
    assert "settings named with --differ: lr" in text and "in one pair of runs" not in text  # same speed


def test_compare_never_writes_over_a_file_it_did_not_write(tmp_path):
    a = _run(tmp_path / "a", [10.0])
    mine = tmp_path / "notes.md"
    mine.write_text("# my notes\n")
    result = run_cli("compare", str(a), str(a), "-o", str(mine))
    assert result.returncode == 2 and mine.read_text() == "# my notes\n"


def test_env_says_what_a_figure_needs():
    result = run_cli("env")
    assert result.returncode == 0, result.stderr
    for key in ("- torch: ", "- transformers: ", "- CPU: ", "family/model", "- cores: ", "- memory: ", "- GPU",
                "- load: ", "- regression class: cpu-"):
        assert key in result.stdout


def test_report_csv_is_the_flat_per_cell_table(tmp_path):
    import csv

    a = _run(tmp_path / "a", [10.0, 12.0, 11.0])
    result = run_cli("report", str(a), "--csv", str(tmp_path / "cells.csv"))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "cells.csv")))
    assert [(r["loop"], r["repeats_ok"]) for r in rows] == [("manual", "3"), ("trainer", "3")]
    assert float(rows[0]["samples_per_s"]) == 11.0 and float(rows[0]["setup_total_s"]) == 2.0
    # A file the report did not write is never overwritten.
    mine = tmp_path / "mine.csv"
    mine.write_text("x,y\n")
    assert run_cli("report", str(a), "--csv", str(mine)).returncode == 2 and mine.read_text() == "x,y\n"
