"""Two processes on the CPU (torchrun, gloo): every loop completes, global samples are the sum over
ranks, evaluation covers exactly the validation pairs, a failing rank fails the cell in time."""

import pytest

pytestmark = pytest.mark.slow  # each cell is a torchrun of two processes

import loops
from bench.config import Cell, RunConfig
from bench.sweep.driver import launch_argv, run_isolated

N_EVAL = 408


@pytest.fixture(scope="module")
def ddp_records(glue_dir):
    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=96, max_steps=4, timing_warmup=1)
    return {loop: run_isolated(Cell(loop, "cpu", "fp32", run, nproc=2), timeout_s=300, progress=False,
                               command="test") for loop in loops.available()}


@pytest.mark.parametrize("loop", loops.available())
def test_every_loop_completes_with_world_size_2(ddp_records, loop):
    r = ddp_records[loop]
    assert r.status == "ok", (r.reason, r.failure)
    assert r.world_size == 2 and len(r.per_rank) == 2
    assert [p["rank"] for p in r.per_rank] == [0, 1]
    assert all(p["steps"] == 4 for p in r.per_rank)
    # No loop searches the autograd graph for unused parameters every step (the Trainer's default would).
    assert r.settings["ddp_find_unused_parameters"] is False


@pytest.mark.parametrize("loop", loops.available())
def test_global_throughput_is_all_samples_over_the_slowest_rank(ddp_records, loop):
    r = ddp_records[loop]
    slowest = max(p["timed_s"] for p in r.per_rank)
    # 3 timed steps x batch 8 on each of the two ranks.
    assert sum(p["samples"] for p in r.per_rank) == 2 * 3 * 8
    assert r.samples_per_s == pytest.approx(48 / slowest)
    assert r.samples_per_s <= sum(p["samples_per_s"] for p in r.per_rank) + 1e-9
    assert r.padded_tokens_per_s >= r.real_tokens_per_s > 0
    assert "per device (2 ranks)" in r.device_peak_source


@pytest.mark.parametrize("loop", loops.available())
def test_evaluation_covers_each_validation_pair_once(ddp_records, loop):
    r = ddp_records[loop]
    assert r.eval_examples == N_EVAL
    assert 0 <= r.eval_f1 <= 1
    # Every rank's pairs, gathered: the record's per-pair predictions cover them all, in order.
    from bench.cell.evaluation import _accuracy_f1

    p = r.eval_predictions
    assert p.index == list(range(N_EVAL)) and len(p.prob_positive) == N_EVAL
    assert _accuracy_f1(p.predicted, p.reference) == (r.eval_accuracy, r.eval_f1)


def test_only_rank_0_wrote_and_settings_name_ddp(ddp_records):
    assert ddp_records["manual"].settings["sampler"] == "DistributedSampler"


def test_torchrun_is_the_launcher_for_several_processes():
    one = launch_argv(Cell("manual", "cpu", "fp32"), "python", "bench.cell.main")
    two = launch_argv(Cell("trainer", "cpu", "fp32", nproc=2), "python", "bench.cell.main")
    assert one == ["python", "-m", "bench.cell.main"]
    assert two[:3] == ["python", "-m", "torch.distributed.run"] and "--standalone" in two
    assert two[-2:] == ["-m", "bench.cell.main"] and two[two.index("--nproc-per-node") + 1] == "2"
    multi = launch_argv(Cell("manual", "cuda", "bf16", nproc=8, nnodes=2), "python", "bench.cell.main",
                        {"node_rank": 1, "master_addr": "10.0.0.1", "master_port": 29501})
    assert multi[multi.index("--nnodes") + 1] == "2" and multi[multi.index("--node-rank") + 1] == "1"
    assert multi[multi.index("--master-addr") + 1] == "10.0.0.1" and "--standalone" not in multi


def test_a_failing_rank_fails_the_cell_without_hanging(failing_rank_cell):
    """Rank 1 raises (seed 5 in the stand-in cell) while rank 0 would wait in a collective."""
    r, seconds = failing_rank_cell  # run once for the session (conftest.py), also read by test_faults
    assert r.status == "failed"
    assert "rank 1 gives up" in " ".join(r.failure.rank_errors) and r.failure.kind == "exit"
    assert not r.reason.startswith("timed out"), r.reason
    assert seconds < 200


@pytest.mark.parametrize("loop", loops.available())
def test_every_loop_trains_lora_with_world_size_2(glue_dir, loop):
    """A PeftModel under each library's DDP: the frozen weights and PEFT's kept original head take
    no part in the all-reduce, and no loop needs to search for unused parameters."""
    pytest.importorskip("peft")
    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=96, max_steps=4, timing_warmup=1, finetune="lora")
    r = run_isolated(Cell(loop, "cpu", "fp32", run, nproc=2), timeout_s=300, progress=False, command="test")
    assert r.status == "ok", (r.reason, r.failure)
    assert r.world_size == 2 and all(p["steps"] == 4 for p in r.per_rank)
    assert r.settings["ddp_find_unused_parameters"] is False
    assert r.model.adapter and r.model.n_params_trainable == r.model.adapter.trainable_params
    assert sum(g["n_params"] for g in r.settings["param_groups"]) == r.model.n_params_trainable
