"""Cells run beside each other (``--executor ray``): the siblings of a run are measured from the records'
timed windows, and its busy verdict tells them apart from foreign load (bench/analysis/siblings.py)."""

import datetime as dt

import pytest

from bench.analysis import cells_of, comparison_groups, gap_rows
from bench.analysis.siblings import FOREIGN, QUIET, SIBLINGS, UNJUDGED, Overlaps
from bench.records import Record

T0 = 1_700_000_000.0  # the timed steps' clock: epoch seconds


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def rec(loop, window, *, device="cpu", others=0.0, own=1.0, cores=2, node="n1", cpu_cores="0,1", gpus="",
        repeat=0, busy=None, why=(), sps=10.0, status="ok", step=0.1, run_around=(5.0, 5.0)):
    """An ok record of a Ray sweep whose timed steps ran ``window`` seconds after T0, its process
    ``run_around`` seconds before and after them; ``others``: cores the others used over its window, as
    the cell measured it (its own verdict by the rule unless ``busy`` is given)."""
    from bench.records.vocabulary import busy_verdict

    start, end = T0 + window[0], T0 + window[1]
    load = {"cores": cores, "others_cpu_cores": others, "others_cpu_fraction": round(others / cores, 3),
            "timed_window_s": end - start, "timed_start_unix_s": start, "timed_end_unix_s": end,
            "own_cpu_cores": own, "gemm_gflops_before": 100.0, "gemm_gflops_after": 100.0}
    verdict, said = busy_verdict(load)
    run = {"model": "tiny", "batch_size": 8, "max_steps": 10, "timing_warmup": 1}
    return Record(loop=loop, device=device, precision="fp32", status=status, cell_id=f"{loop}-{device}-{repeat}",
                  repeat=repeat, config={"loop": loop, "device": device, "precision": "fp32", "repeat": repeat,
                                         "run": run},
                  started_at=_utc(start - run_around[0]), finished_at=_utc(end + run_around[1]),
                  process_wall_s=end - start + sum(run_around), samples_per_s=sps, step_s=[step] * 10,
                  step_s_p50=step, step_s_mean=step, timing_warmup_steps=1, batch_order_checksum=1,
                  machine_load=load, machine_busy=verdict if busy is None else busy,
                  machine_busy_why=list(said) + list(why), executor="ray", cells_at_once=2, node=node,
                  cpu_cores=cpu_cores, cuda_visible_devices=gpus, env={"torch": "2", "cpu_name": "x"})


def test_the_siblings_of_a_run_are_the_runs_that_overlapped_its_timed_steps_on_its_node():
    a = rec("manual", (100, 110))
    beside = rec("fabric", (112, 130))  # its process began 5 s before its timed steps: during a's
    later = rec("trainer", (200, 210))
    elsewhere = rec("accelerate", (100, 110), node="n2")
    skipped = rec("lightning", (100, 110), status="skipped")
    overlaps = Overlaps([a, beside, later, elsewhere, skipped])
    assert [s.loop for s, _ in overlaps.siblings(a)] == ["fabric"]
    assert overlaps.siblings(later) == [] and overlaps.siblings(elsewhere) == []
    assert overlaps.verdict(later).siblings == 0
    old = rec("manual", (100, 110))
    old.machine_load.timed_start_unix_s = old.machine_load.timed_end_unix_s = None  # schema 4: no window
    assert overlaps.siblings(old) is None and overlaps.verdict(old).siblings is None


def test_a_cpu_cell_sharing_its_cores_with_a_sibling_is_busy_because_of_it_not_foreign_load():
    a = rec("manual", (100, 110), others=1.0)  # 50% of 2 cores: the cell called itself busy
    b = rec("fabric", (95, 115), own=1.0, others=1.0)
    assert a.machine_busy is True
    verdict = Overlaps([a, b]).verdict(a)
    assert verdict.kind == SIBLINGS and verdict.siblings == 1 and verdict.shared == 1
    assert verdict.why == ("shared with 1 sibling cell (fabric cpu fp32 rep 0): about 1.0 of the 2 cores were "
                           "theirs during its timed steps",)
    cells = cells_of([a, b])
    assert all(c.busy and c.busy_kind == SIBLINGS for c in cells)


def test_foreign_load_beyond_the_siblings_share_is_called_busy():
    a = rec("manual", (100, 110), others=1.8)
    b = rec("fabric", (95, 115), own=1.0, others=1.8)
    verdict = Overlaps([a, b]).verdict(a)
    assert verdict.kind == FOREIGN
    assert verdict.why[0] == "other processes than its 1 sibling cell(s) used 40% of the 2 cores during the timed steps"
    assert verdict.why[1].startswith("shared with 1 sibling cell")


def test_a_sibling_on_its_own_cores_is_not_shared_and_its_cpu_is_not_foreign():
    a = rec("manual", (100, 110), others=1.0, cpu_cores="0")
    b = rec("fabric", (100, 110), own=1.0, cpu_cores="1")
    verdict = Overlaps([a, b]).verdict(a)
    assert verdict.kind == QUIET and verdict.siblings == 1 and verdict.shared == 0


def test_a_gpu_cell_is_not_busy_because_a_sibling_uses_another_gpu():
    gpu_why = "1 other process(es) on the GPU when the cell started (pid 7), the GPU 90% utilized"
    a = rec("manual", (100, 110), device="cuda", gpus="0", others=1.0, cores=8)  # 12.5%: its own rule said busy
    b = rec("fabric", (100, 110), device="cuda", gpus="1", own=1.0, cores=8)
    assert a.machine_busy is True
    assert Overlaps([a, b]).verdict(a).kind == QUIET
    same_gpu = rec("fabric", (100, 110), device="cuda", gpus="0", own=1.0, cores=8)
    assert Overlaps([a, same_gpu]).verdict(a).kind == SIBLINGS
    cpu_sibling = rec("trainer", (100, 110), own=1.0, cores=8, cpu_cores="0,1")  # a CPU cell on its cores
    a_cores = rec("manual", (100, 110), device="cuda", gpus="0", others=1.0, cores=8, cpu_cores="0,1,2,3")
    assert Overlaps([a_cores, cpu_sibling]).verdict(a_cores).kind == SIBLINGS
    # Another process on its own GPU is foreign load, whatever its siblings on other GPUs do.
    a_busy_gpu = rec("manual", (100, 110), device="cuda", gpus="0", others=1.0, cores=8, why=(gpu_why,))
    verdict = Overlaps([a_busy_gpu, b]).verdict(a_busy_gpu)
    assert verdict.kind == FOREIGN and verdict.why == (gpu_why,)


def test_records_without_a_timed_window_read_as_before():
    old = [rec("manual", (100, 110), others=1.0), rec("fabric", (100, 110), others=0.0)]
    for r in old:
        r.machine_load.timed_start_unix_s = r.machine_load.timed_end_unix_s = None
        r.sibling_cells, r.cells_at_once = 1, 0  # schema 4 said the configured figure here
    busy = {c.loop: (c.busy, c.busy_kind) for c in cells_of(old)}
    assert busy == {"manual": (True, FOREIGN), "fabric": (False, "")}
    short = rec("manual", (100, 100.2), others=0.0)
    assert Overlaps([short]).verdict(short).kind == UNJUDGED


def test_the_gap_and_the_report_say_the_runs_were_shared_not_busy(tmp_path):
    from bench.report import render
    from bench.report.summary import summary_table

    records = [rec("manual", (100, 110), others=1.0), rec("fabric", (95, 115), others=1.0, step=0.2, sps=5.0)]
    rows = gap_rows(next(iter(comparison_groups(cells_of(records)).values())))
    assert rows[0].busy == SIBLINGS and rows[0].kind.value == "shared"
    assert "measured beside other cells of its sweep" in rows[0].verdict and "busy" not in rows[0].verdict
    text = render(records, tmp_path / "report.md")
    assert "| manual ⚠ shared |" in text and "⚠ busy" not in text
    assert "⚠ shared: 2 cell(s) had a run measured beside other cells of their sweep" in text
    assert "shared with 1 sibling cell (fabric cpu fp32 rep 0)" in text
    assert "ok (shared with 1 sibling cell)" in summary_table(records)


def test_the_csv_says_which_load_a_busy_cell_had():
    from bench.report.cells_csv import csv_rows

    shared = [rec("manual", (100, 110), others=1.0), rec("fabric", (95, 115), others=1.0)]
    assert {(r["loop"], r["busy"], r["busy_kind"]) for r in csv_rows(shared)} == {
        ("manual", True, SIBLINGS), ("fabric", True, SIBLINGS)}
    loaded = [rec("manual", (100, 110), others=1.8), rec("trainer", (200, 210), others=0.0)]
    assert {(r["loop"], r["busy"], r["busy_kind"]) for r in csv_rows(loaded)} == {
        ("manual", True, FOREIGN), ("trainer", False, "")}


def test_compare_says_which_kind_of_busy():
    from bench.analysis.compare import verdict

    assert "beside other cells of its sweep" in verdict(0.7, [0.7, 0.7], SIBLINGS)
    assert "busy machine" in verdict(0.7, [0.7, 0.7], FOREIGN)


@pytest.mark.parametrize("text", ["2024-01-01T00:00:00+00:00", ""])
def test_a_record_without_a_finish_time_has_no_span(text):
    from bench.analysis.siblings import run_span

    r = rec("manual", (100, 110))
    r.finished_at = ""
    r.started_at = text
    assert run_span(r) is None


def _gpu(loop, window, node, gpu, model="NVIDIA H100", sps=100.0, step=0.01, repeat=0):
    r = rec(loop, window, device="cuda", gpus=gpu, node=node, cores=16, sps=sps, step=step, repeat=repeat)
    r.env = {"torch": "2", "cpu_name": "x", "gpu_name": model}
    return r


def test_runs_of_two_nodes_are_two_machines_and_a_run_without_a_node_matches_either():
    from bench.analysis.machines import machine_count, same_machine

    a, b = _gpu("manual", (100, 110), "a", "0"), _gpu("manual", (100, 110), "b", "0")
    sequential = _gpu("manual", (300, 310), "", "0")
    assert not same_machine([a, b]) and machine_count([a, b]) == 2
    assert same_machine([a, sequential]) and same_machine([b, sequential])


def test_the_report_groups_time_figures_by_node_and_gpu_model(tmp_path):
    from bench.report import render

    # one cell per loop, two repeats: one on each node
    records = [_gpu("manual", (100, 110), "node-a", "0"), _gpu("fabric", (100, 110), "node-a", "1", sps=90.0),
               _gpu("manual", (100, 110), "node-b", "0", model="NVIDIA A100", sps=50.0, repeat=1),
               _gpu("fabric", (100, 110), "node-b", "1", model="NVIDIA A100", sps=45.0, step=0.02, repeat=1)]
    text = render(records, tmp_path / "report.md")
    device = text.split("\n## cuda\n")[1].split("\n## ")[0]
    assert "Runs from 2 nodes or GPU models" in device
    a = device.split("### cuda, node node-a, NVIDIA H100")[1].split("###")[0]
    b = device.split("### cuda, node node-b, NVIDIA A100")[1]
    assert "| manual | fp32 | 100.0 |" in a.replace("**", "") and "| manual | fp32 | 50.0 |" in b.replace("**", "")
    # no ratio across the nodes: fabric's repeats pair with manual's on its own node only
    rows = gap_rows(next(iter(comparison_groups(cells_of(records)).values())))
    assert rows[0].sps_ratio is None and rows[0].other_machine
    concurrency = text.split("## Cells run at the same time")[1]
    assert "| manual | cuda | fp32 | 0 | node-a | 1 | 0,1 | 0 | host | quiet |" in concurrency
    assert "GPU cells on one node shared its host" in concurrency and "ran on several nodes" in concurrency


def test_the_concurrency_section_counts_the_siblings_that_overlapped(tmp_path):
    from bench.report import concurrency
    from bench.report.context import Context

    records = [rec("manual", (100, 110), others=1.0), rec("fabric", (95, 115), others=1.0),
               rec("trainer", (300, 310), cores=2)]
    text = "\n".join(concurrency.lines(Context.of(records, tmp_path / "r.md")))
    assert "2 of 3 ok cells ran beside other cells" in text
    assert "| manual | cpu | fp32 | 0 | n1 | 1 | 0,1 | - | CPU cores | ⚠ shared |" in text
    assert "| trainer |" not in text  # alone in its time: configured 2 at once, but nothing beside it
    assert "CPU cells that shared cores with other cells contended for them" in text


def test_the_concurrency_rows_name_the_seed_and_recipe_that_tell_cells_apart(tmp_path):
    """Two seeds of one loop ran side by side: the rows say which seed each is, as the device tables do."""
    from bench.report import concurrency
    from bench.report.context import Context

    a, b = rec("manual", (100, 110), others=1.0), rec("manual", (95, 115), others=1.0)
    for r, seed in ((a, 1), (b, 2)):
        r.config["run"] = {**r.config["run"], "seed": seed}
        r.cell_id += f"-seed{seed}"
    a, b = (Record.from_dict(__import__("json").loads(r.to_json())) for r in (a, b))
    text = "\n".join(concurrency.lines(Context.of([a, b], tmp_path / "r.md")))
    assert "| loop | device | precision | variant | rep |" in text
    assert "| manual | cpu | fp32 | seed 1 | 0 | n1 | 1 | 0,1 | - | CPU cores | ⚠ shared |" in text
    assert "| manual | cpu | fp32 | seed 2 | 0 | n1 | 1 | 0,1 | - | CPU cores | ⚠ shared |" in text
