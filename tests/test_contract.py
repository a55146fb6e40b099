"""Every registered loop keeps the contract of ``bench/loop_api.py``: its micro-batches observed,
one meter step per optimizer step, the shared sample order, unwrapped objects returned; and the
registry is the one list of loops the harness, the CLI and the report read."""

import pytest
import torch

import loops
from bench.cell.main import _reset_process_state, resolve_loop
from bench.config import LOOP_NAMES, Cell

AVAILABLE = loops.available()


def _train(loop, run):
    from transformers import set_seed

    from bench.data import prepare
    from bench.meter import StepMeter
    from bench.models import load_model

    cell = Cell(loop, "cpu", "fp32", run)
    _reset_process_state(cell)
    model, tokenizer, _ = load_model(run)
    data = prepare(run, tokenizer)
    meter = StepMeter("cpu", run.timing_warmup, run.total_steps(), progress=False)
    meter.attach(model)  # the phase split, as the harness attaches it
    model.eval()  # as from_pretrained returns it: the loop must put it in training mode itself
    modes = []
    hook = model.bert.encoder.layer[0].register_forward_hook(lambda m, i, o: modes.append(m.training))
    set_seed(run.seed)
    result = resolve_loop(loop)(cell, data, model, meter)
    hook.remove()
    meter.modes = modes
    return model, meter, result


@pytest.fixture(scope="module")
def runs(glue_dir):
    from bench.config import RunConfig

    # 40 pairs / batch 8 = 5 micro-batches an epoch; accumulating 2, each epoch is 2 + 2 + 1:
    # 7 optimizer steps cross two epoch boundaries and two short groups.
    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=40, eval_samples=8, max_steps=7, grad_accum=2,
                    timing_warmup=1)
    return {loop: _train(loop, run) for loop in AVAILABLE}


@pytest.mark.parametrize("loop", AVAILABLE)
def test_every_micro_batch_observed_and_one_step_per_optimizer_step(runs, loop):
    model, meter, result = runs[loop]
    assert meter.samples == [16, 16, 8, 16, 16, 8, 16]  # samples per optimizer step: 2, 2, 1 micro-batches
    param = model.classifier.weight
    assert int(result.optimizer.state[param]["step"]) == len(meter.losses) == 7


@pytest.mark.parametrize("loop", AVAILABLE)
def test_the_model_trains_in_training_mode(runs, loop):
    _, meter, _ = runs[loop]
    assert meter.modes and all(meter.modes)  # dropout on in every forward, whatever mode the model came in


@pytest.mark.parametrize("loop", AVAILABLE)
def test_the_shared_order_and_the_same_schedule_as_manual(runs, loop):
    _, meter, _ = runs[loop]
    _, manual, _ = runs["manual"]
    assert int(meter._checksum) == int(manual._checksum)
    assert meter.lrs == pytest.approx(manual.lrs, rel=1e-12)


@pytest.mark.parametrize("loop", AVAILABLE)
def test_every_step_is_split_into_its_phases(runs, loop):
    """The loop marks its batches and the start of its update; the hooks see every micro-batch's
    forward and backward; the five phases cover each step's time."""
    from bench.records.vocabulary import PHASE_SUM_TOLERANCE as SUM_TOLERANCE, PHASES

    _, meter, _ = runs[loop]
    clock = meter._phases
    assert clock.forward_calls == [2, 2, 1, 2, 2, 1, 2]  # one hooked forward per micro-batch
    for marks in clock.steps:
        entered = [phase for _, phase in marks[:-1]]
        assert entered.count("backward") == entered.count("forward") > 0
        # The fetch comes before the first forward, the update after the last backward.
        assert entered.index("data") < entered.index("forward")
        last_backward = len(entered) - 1 - entered[::-1].index("backward")
        assert "optimizer" in entered[last_backward:] and "forward" not in entered[entered.index("optimizer"):]
    for spent, step_s in zip(clock.step_phase_s(), meter.step_seconds()):
        assert set(spent) == set(PHASES) and all(spent[p] > 0 for p in ("data", "forward", "backward", "optimizer"))
        assert sum(spent.values()) == pytest.approx(step_s, rel=SUM_TOLERANCE)


@pytest.mark.parametrize("loop", AVAILABLE)
def test_unwrapped_objects_are_returned(runs, loop):
    model, _, result = runs[loop]
    assert result.model is model  # the harness's model, no DDP / compile / library wrapper
    assert type(result.optimizer) is torch.optim.AdamW
    assert type(result.scheduler).__module__.startswith("torch.optim")
    assert all(isinstance(k, str) for k in result.extra) and isinstance(result.extra_work, list)


def test_the_registry_is_the_one_list_of_loops():
    from bench import analysis

    assert LOOP_NAMES == tuple(loops.LOOPS)[:len(LOOP_NAMES)] and set(AVAILABLE) <= set(loops.LOOPS)
    assert analysis.LOOP_ORDER == tuple(loops.LOOPS)
    assert AVAILABLE[:3] == ["manual", "accelerate", "trainer"]


def test_a_loop_whose_package_is_missing_is_left_out_of_all_and_refused_by_name(monkeypatch, capsys):
    from bench.commands.run import _installed_loops
    from bench.config import ConfigError

    monkeypatch.setitem(loops.LOOPS, "imaginary", ("loops.imaginary_loop", "no_such_package_here"))
    names = list(loops.LOOPS)
    assert "imaginary" not in _installed_loops(names, explicit=False)
    assert "leaving out imaginary (needs no_such_package_here" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--loops imaginary: needs the package 'no_such_package_here'"):
        _installed_loops(["manual", "imaginary"], explicit=True)
