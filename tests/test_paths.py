"""Paths the main job takes on a GPU, checked on the CPU: gradient accumulation, fp16 steps the loss
scaler skips, TF32 set and read through one API, DDP's unused-parameter search, non-blocking copies,
GPU datasheet names, compile, deterministic cuBLAS and the process count against the GPU count."""

import pytest

from bench.cell.main import _reset_process_state, resolve_loop, run_cell
import loops
from bench.config import Cell, ConfigError

LOOPS = loops.available()
PARITY_TOL = 1e-5


# ---- gradient accumulation --------------------------------------------------------------------


@pytest.mark.parametrize("accum", [2, 3])
def test_grad_accum_trains_the_same_in_every_loop(tiny_run, accum):
    # 64 pairs / batch 8 = 8 micro-batches an epoch: with 3, each epoch ends on a short group of 2.
    # Clipping far above the gradients' norm: it changes nothing but makes every loop compute the
    # norm, so that the size of the accumulated gradient is compared too (AdamW hides a scale).
    run = tiny_run(train_samples=64, max_steps=6, grad_accum=accum, timing_warmup=1, parity=True, max_grad_norm=1e6)
    records = {loop: run_cell(Cell(loop, "cpu", "fp32", run), progress=False) for loop in LOOPS}
    assert all(r.status == "ok" for r in records.values()), {k: r.reason for k, r in records.items()}
    manual = records["manual"]
    total = run.total_steps()
    expected = [5e-5 * (total - i) / total for i in range(total)]  # linear decay, one step per optimizer step
    assert manual.step_lrs == pytest.approx(expected)
    for loop, r in records.items():
        assert r.step_lrs == pytest.approx(manual.step_lrs, rel=1e-12), loop
        assert r.settings["grad_accum_steps"] == accum
        assert r.samples_seen == manual.samples_seen and r.batch_order_checksum == manual.batch_order_checksum
        worst = max(abs(a - b) / abs(a) for a, b in zip(manual.step_losses, r.step_losses))
        assert worst <= PARITY_TOL, (loop, worst)
        assert r.step_grad_norms == pytest.approx(manual.step_grad_norms, rel=PARITY_TOL), loop


# ---- fp16: a step the loss scaler skips does not advance the schedule ----------------------------


@pytest.fixture
def cpu_fp16_scaler(monkeypatch):
    """On the CPU, Accelerate (and the HF Trainer through it) makes no loss scaler for fp16, and
    Fabric and the Lightning Trainer switch fp16 to bf16; give each torch's CPU GradScaler, at the
    library's boundary, so its fp16 step path runs here."""
    import accelerate
    import torch

    init = accelerate.Accelerator.__init__

    def with_scaler(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.state.mixed_precision == "fp16" and self.device.type == "cpu":
            self.scaler = torch.amp.GradScaler("cpu")

    monkeypatch.setattr(accelerate.Accelerator, "__init__", with_scaler)
    if "fabric" in LOOPS:
        from lightning.fabric import Fabric
        from lightning.fabric.plugins.precision.amp import MixedPrecision

        fabric_init = Fabric.__init__

        def fabric_with_scaler(self, *args, **kwargs):
            fabric_init(self, *args, **kwargs)
            if kwargs.get("precision") == "16-mixed" and kwargs.get("accelerator") == "cpu":
                self._strategy.precision = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))
                self._precision = self._strategy.precision

        monkeypatch.setattr(Fabric, "__init__", fabric_with_scaler)
    if "lightning" in LOOPS:
        import lightning.pytorch as pl
        from lightning.pytorch.plugins.precision import MixedPrecision as PlMixedPrecision

        pl_init = pl.Trainer.__init__

        def trainer_with_scaler(self, *args, **kwargs):
            pl_init(self, *args, **kwargs)
            if kwargs.get("precision") == "16-mixed" and kwargs.get("accelerator") == "cpu":
                self.strategy.precision_plugin = PlMixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))

        monkeypatch.setattr(pl.Trainer, "__init__", trainer_with_scaler)


def _train_with_inf_grads_at(loop, run, skip_step):
    """The loop itself on the CPU in fp16 (which a sweep skips for Accelerate's sake), with the
    gradients of one optimizer step made inf: the scaler must skip that step."""
    from transformers import set_seed

    from bench.data import prepare
    from bench.meter import StepMeter
    from bench.models import load_model

    cell = Cell(loop, "cpu", "fp16", run)
    _reset_process_state(cell)
    model, tokenizer, _ = load_model(run)
    data = prepare(run, tokenizer)
    calls = {"n": 0}

    def poison(grad):
        calls["n"] += 1
        return grad * float("inf") if calls["n"] == skip_step else grad

    model.classifier.weight.register_hook(poison)
    meter = StepMeter("cpu", run.timing_warmup, run.total_steps(), progress=False, grad_scaler=True)
    set_seed(run.seed)
    result = resolve_loop(loop)(cell, data, model, meter)
    assert result.grad_scaler is not None and result.grad_scaler.is_enabled()
    return meter.lrs, float(result.grad_scaler.get_scale())


@pytest.mark.parametrize("adamw", ["torch-default", "fused"])
@pytest.mark.parametrize("loop", LOOPS)
def test_a_skipped_fp16_step_holds_the_schedule(cpu_fp16_scaler, tiny_run, loop, adamw):
    run = tiny_run(train_samples=48, max_steps=5, timing_warmup=1, adamw=adamw)
    lrs, scale = _train_with_inf_grads_at(loop, run, skip_step=2)
    assert scale < 65536.0  # the scaler saw the inf and lowered its scale: step 2 was skipped
    # Step 3 runs at step 2's learning rate; then the decay goes on from there.
    assert lrs[2] == pytest.approx(lrs[1]) and lrs[1] < lrs[0]
    assert lrs == pytest.approx([5e-5, 4e-5, 4e-5, 3e-5, 2e-5])


# ---- TF32 through one API ---------------------------------------------------------------------


def test_tf32_is_set_and_read_through_one_api():
    import torch

    from bench.precision import precision_plan, set_tf32, tf32_state
    from bench.cell.settings import precision_mismatch

    set_tf32(True)
    assert tf32_state()["cuda_matmul_tf32"] is True
    torch.backends.cuda.matmul.allow_tf32 = True  # a library on the legacy flag (Accelerate under compile)
    state = tf32_state()  # read without the "mix of the legacy and new APIs" error
    assert state["cuda_matmul_tf32"] is True
    assert "TF32 matmuls were on" in precision_mismatch(precision_plan("fp32"), {"device": "cuda", "autocast_dtype": None,
                                                                      "grad_scaler": False, **state})
    set_tf32(False)
    assert tf32_state()["cuda_matmul_tf32"] is False and tf32_state()["cudnn_conv_tf32"] is False
    from transformers.utils.import_utils import enable_tf32

    enable_tf32(True)  # what TrainingArguments(tf32=True) calls: it cannot override the harness's setting
    assert tf32_state()["cuda_matmul_tf32"] is False
    enable_tf32(False)


def test_the_trainer_leaves_tf32_to_the_harness(tiny_run):
    from loops.trainer_loop import training_arguments

    for precision in ("fp32", "tf32", "bf16"):
        args = training_arguments(Cell("trainer", "cpu", precision, tiny_run()), "/tmp/unused")
        assert args.tf32 is None
    r = run_cell(Cell("trainer", "cpu", "fp32", tiny_run(max_steps=2, timing_warmup=1)), progress=False)  # settings only
    assert r.status == "ok", r.reason
    assert r.settings["cuda_matmul_tf32"] is False


# ---- non-blocking copies, DDP's defaults ------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_copies_are_non_blocking_and_ddp_settings_are_read_back(tiny_run, loop):
    r = run_cell(Cell(loop, "cpu", "fp32", tiny_run(pin_memory=False, max_steps=2, timing_warmup=1)),  # settings only
                 progress=False)
    assert r.status == "ok", r.reason
    # The Lightning loops copy with non_blocking on accelerators only (from CPU to CPU nothing moves).
    assert r.settings["h2d_non_blocking"] is (loop not in ("fabric", "lightning"))
    assert r.settings["ddp_find_unused_parameters"] is None  # one process: no DDP wrapper


# ---- GPU names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,key", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"), ("NVIDIA L40S", "L40S"), ("NVIDIA L40", "L40"), ("NVIDIA L4", "L4"),
    ("NVIDIA A10G", None), ("Tesla T4", None), ("NVIDIA GH200 480GB", None),
])
def test_gpu_names_match_whole_words(name, key):
    from bench.cell.peak import DATASHEET_TFLOPS, datasheet_key

    from bench.cell.peak import DATASHEET_SOURCE

    assert datasheet_key(name) == key
    if key:
        assert set(DATASHEET_TFLOPS[key]) == {"fp32", "tf32", "fp16", "bf16"}
    assert set(DATASHEET_SOURCE) == set(DATASHEET_TFLOPS)  # every row says where it comes from


def test_mfu_takes_one_device_peak_whatever_the_world_size():
    from bench.analysis import device_peak_of, mfu

    import dataclasses

    from bench.records import Record

    model = {"n_params_non_embedding": 10**6, "num_layers": 2, "hidden_size": 64}
    one = Record(loop="manual", device="cpu", precision="fp32", status="ok", device_peak_tflops=1.0,
                 device_peak_source="datasheet", world_size=1, timed_s=1.0, timing_warmup_steps=0, step_samples=[8],
                 step_padded_tokens=[512], model=model)
    two = dataclasses.replace(one, world_size=2, device_peak_source="datasheet, per device (2 ranks)")
    old = dataclasses.replace(two, device_peak_tflops=2.0, device_peak_source="datasheet, summed over 2 ranks")  # schema 1
    assert device_peak_of(two) == device_peak_of(old) == 1.0
    # Twice the devices doing rank 0's work each: the same utilisation.
    assert mfu(two) == pytest.approx(mfu(one)) == pytest.approx(mfu(old))


# ---- compile ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_compile_has_dynamic_dims_and_counts_its_compilations(tiny_run):
    r = run_cell(Cell("manual", "cpu", "fp32", tiny_run(compile=True, max_steps=6, timing_warmup=2)), progress=False)
    assert r.status == "ok", r.reason
    assert r.settings["compiled"] is True
    # Six batches of six lengths, and no compilation once the timed steps began.
    assert len(set(p // s for p, s in zip(r.step_padded_tokens, r.step_samples))) > 2
    assert r.settings["compile_frames_in_timed_steps"] == 0
    assert r.settings["compile_graphs"] >= 1


def test_the_accelerate_loop_evaluates_the_uncompiled_model(monkeypatch, tiny_run):
    """unwrap_model keeps the compile wrapper unless told not to: the loop tells it."""
    import accelerate

    seen = {}
    unwrap = accelerate.Accelerator.unwrap_model

    def spy(self, model, *args, **kwargs):
        seen.update(kwargs)
        return unwrap(self, model, *args, **kwargs)

    monkeypatch.setattr(accelerate.Accelerator, "unwrap_model", spy)
    r = run_cell(Cell("accelerate", "cpu", "fp32", tiny_run(max_steps=2, timing_warmup=1)), progress=False)
    assert r.status == "ok" and seen.get("keep_torch_compile") is False


# ---- determinism, process count ---------------------------------------------------------------


def test_parity_on_cuda_fixes_the_cublas_workspace(monkeypatch, tiny_run):
    import os

    import torch

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        _reset_process_state(Cell("manual", "cuda", "fp32", tiny_run(parity=True)))
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_more_processes_than_gpus_is_refused_up_front(monkeypatch):
    import torch

    from bench.cell.main import skip_reason
    from bench.sweep.driver import refuse_explicit

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    with pytest.raises(ConfigError, match=r"--nproc 2: one process per GPU, and this node has 1 GPU\(s\)"):
        refuse_explicit(["cuda"], ["bf16"], True, True, skip_reason, nproc=2)
    refuse_explicit(["cuda"], ["bf16"], True, True, skip_reason, nproc=1)
    refuse_explicit(["cpu"], ["fp32"], True, True, skip_reason, nproc=2)  # CPU processes need no GPU
