"""The CUDA paths, checked on the CPU: each test fakes what it needs of CUDA (``torch.cuda`` patched)
or drives the library code a GPU run would reach with CPU tensors.  One test per defect found by
reading the CUDA paths against the installed torch, transformers, accelerate and lightning."""

import json
import os
import types

import pytest
import torch

from bench.config import Cell, ConfigError, RunConfig


class EnterLog:
    """A stand-in meter that keeps what the code under test told it."""

    def __init__(self):
        self.log, self.norms = [], []

    def enter(self, phase):
        self.log.append(f"enter {phase}")

    def observe_grad_norm(self, norm):
        self.norms.append(float(norm))


@pytest.fixture
def two_gpus(monkeypatch):
    """A host with two CUDA devices, as far as device discovery goes."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


# -- 1. a single-process cell gets one GPU -------------------------------------------------------
def test_the_trainer_gets_one_gpu_on_a_two_gpu_host(two_gpus, tmp_path):
    from loops.trainer_loop import training_arguments

    args = training_arguments(Cell("trainer", "cuda", "fp32", RunConfig(model="tiny")), str(tmp_path))
    assert args.n_gpu == 1 and args.train_batch_size == 8  # no nn.DataParallel, 8 pairs a step


def test_the_sweep_pins_a_single_process_gpu_cell_to_one_gpu(monkeypatch, tmp_path):
    from bench.sweep import driver as sweep

    seen = {}

    class NoProcess:  # what Popen gave the cell's process: its environment
        def __init__(self, argv, env, **kwargs):
            seen["env"], self.pid = env, os.getpid()
            self.stdout = types.SimpleNamespace(read1=lambda n: b"")

        def wait(self, timeout=None):
            return 2

    monkeypatch.setattr("subprocess.Popen", NoProcess)  # how bench.sweep.launch starts the cell
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    sweep.run_isolated(Cell("trainer", "cuda", "fp32", RunConfig(model="tiny")), None, False, "test")
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    sweep.run_isolated(Cell("trainer", "cuda", "fp32", RunConfig(model="tiny")), None, False, "test")
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "3"
    # torchrun's ranks each take their own GPU; no GPU visible stays none; the CPU is left alone.
    assert sweep.single_process_devices(Cell("trainer", "cuda", "fp32", nproc=2), {}) == {}
    assert sweep.single_process_devices(Cell("trainer", "cuda", "fp32"), {"CUDA_VISIBLE_DEVICES": ""}) == {}
    assert sweep.single_process_devices(Cell("trainer", "cpu", "fp32"), {}) == {}


# -- 2. Fabric: clipping neither raises on a non-finite norm nor refuses a fused AdamW -------------
def test_a_nan_under_fabric_clipping_is_recorded_as_divergence(tiny_run):
    from bench.cell.main import run_cell

    r = run_cell(Cell("fabric", "cpu", "fp32", tiny_run(max_grad_norm=1.0, lr=1e36)), progress=False)
    assert r.status == "failed" and r.failure.kind == "diverged", (r.reason, r.failure)
    assert r.reason.startswith("diverged at step ")


def _scaled_grads(fused=True, scale=2.0**16):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    x = torch.randn(16, 8)
    scaler.scale(model(x).pow(2).mean()).backward()
    true = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad / scale) for p in model.parameters()]))
    return model, optimizer, scaler, float(true)


def test_fabric_clips_the_true_gradients_of_a_fused_adamw_under_fp16():
    from loops.fabric_loop import clip_gradients

    model, optimizer, scaler, true = _scaled_grads()
    refusing = types.SimpleNamespace(clip_gradients=lambda *a, **k: pytest.fail("Fabric refuses a fused AdamW"))
    norm = clip_gradients(refusing, model, optimizer, scaler, max_norm=0.01)
    assert float(norm) == pytest.approx(true, rel=1e-4)
    clipped = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    assert float(clipped) == pytest.approx(0.01, rel=1e-3)
    scaler.step(optimizer)  # the fused kernel takes the gradients as unscaled
    scaler.update()


# -- 3. Lightning: a fused AdamW under fp16 is clipped on unscaled gradients -----------------------
def _module(meter, scaler):
    from loops.lightning_loop import MRPCModule

    model = torch.nn.Linear(8, 4)
    module = MRPCModule(model, types.SimpleNamespace(grad_accum=1), meter)
    module._trainer = types.SimpleNamespace(precision_plugin=types.SimpleNamespace(scaler=scaler))
    return module


def test_lightning_clips_unscaled_gradients_with_a_scaling_aware_optimizer():
    model, optimizer, scaler, true = _scaled_grads()
    meter = EnterLog()
    module = _module(meter, scaler)
    module.model = model
    assert optimizer._step_supports_amp_scaling  # Lightning skips its unscale_ for this one
    module.configure_gradient_clipping(optimizer, gradient_clip_val=1e-3)
    assert meter.norms == [pytest.approx(true, rel=1e-4)]  # not 65536 times the norm
    scaler.step(optimizer)
    scaler.update()


# -- 4. fp16 skip detection: one read of the scale per optimizer step ---------------------------
class CountingScaler:
    """A GradScaler stand-in that counts get_scale() reads between update() calls."""

    def __init__(self, device="cpu", enabled=True, **kwargs):
        self._init_scale, self.reads, self.per_update = 65536.0, 0, []

    def is_enabled(self):
        return True

    def scale(self, x):
        return x

    def unscale_(self, optimizer):
        pass

    def step(self, optimizer):
        optimizer.step()

    def update(self):
        self.per_update.append(self.reads)
        self.reads = 0

    def get_scale(self):
        self.reads += 1
        return 65536.0


def test_skip_detection_reads_the_scale_once_per_step():
    from loops.common import ScaleWatch

    scaler = CountingScaler()
    watch = ScaleWatch(scaler)
    for _ in range(5):
        scaler.update()
        assert not watch.skipped()
    scaler.update()
    assert scaler.per_update == [0, 1, 1, 1, 1, 1]  # none before the first step, then one per step


def test_the_manual_loop_reads_the_scale_at_most_once_per_step(tiny_run, monkeypatch):
    from bench.cell.main import run_cell

    made = []

    def scaler(*args, **kwargs):
        made.append(CountingScaler())
        return made[-1]

    monkeypatch.setattr(torch.amp, "GradScaler", scaler)
    run_cell(Cell("manual", "cpu", "fp32", tiny_run()), progress=False)
    # Reads between one update() and the next: the step's own skip check and the next step's scale.
    assert len(made[0].per_update) == 6 and max(made[0].per_update) <= 1


# -- 5. MIG slices and partial GPUs: a measured peak, not the whole GPU's datasheet ----------------
@pytest.mark.parametrize("name,sms,source", [
    ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", 60, "measured"),
    ("NVIDIA H100 80GB HBM3", 66, "measured"),  # CUDA names a MIG instance like its parent
    ("NVIDIA H200", 132, "datasheet"),
])
def test_a_mig_slice_gets_a_measured_peak(monkeypatch, name, sms, source):
    from bench.cell import peak

    freed = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: types.SimpleNamespace(multi_processor_count=sms))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    monkeypatch.setattr(peak, "measure_gemm_tflops", lambda device, precision, n: 123.0)
    tflops, where = peak.device_peak("cuda", "bf16")
    assert where.startswith(source), where
    if source == "measured":
        assert tflops == 123.0 and "not the datasheet's" in where
        assert freed == [True]  # 11: the probe's blocks given back before training (peak_reserved_mib)
    else:
        assert tflops == 989.4 and freed == []


# -- 6. which clock the phase split is on (and the GPU fields of a CPU record, --peak-tflops) -------
@pytest.fixture(scope="module")
def cli_record(glue_dir, tmp_path_factory):
    """One manual cell run through the real parser, with --peak-tflops."""
    from bench.cli import main
    from bench.records import read_records

    out = tmp_path_factory.mktemp("peak") / "out"
    code = main(["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--train-samples", "64", "--eval-samples", "48", "--max-steps", "6", "--timing-warmup", "2",
                 "--peak-tflops", "0.5", "--in-process", "--no-progress", "--out", str(out)])
    assert code == 0
    (record,) = read_records(out)
    return out, record


def test_records_say_which_clock_the_split_is_on(cli_record, tmp_path):
    from bench.devices import DEVICES
    from bench.meter.phase_clock import PhaseClock
    from bench.records import read_records
    from bench.report import render
    from bench.report.phases import HEADING as PHASE_HEADING

    out, r = cli_record
    assert r.status == "ok" and r.phase_clock == "host"
    assert PhaseClock(DEVICES["cuda"]).clock_name() == "device-timeline"
    # The report says what the device timeline means for `data`, where a cell is on it, and shows
    # the GPU's energy per sample where a cell has it.
    gpu = dict(r.to_dict(), device="cuda", phase_clock="device-timeline", cell_id="manual-cuda-fp32-0",
               joules_per_sample=0.25, config=dict(r.config, device="cuda"))
    (tmp_path / "results.jsonl").write_text((out / "results.jsonl").read_text())
    cpu_only = render(read_records(tmp_path), tmp_path / "cpu.md")
    assert "device-timeline" not in cpu_only.split(f"## {PHASE_HEADING}")[1] and "J/sample" not in cpu_only
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write(json.dumps(gpu) + "\n")
    both = render(read_records(tmp_path), tmp_path / "both.md")
    phases = both.split(f"## {PHASE_HEADING}")[1].split("\n## ")[0]
    assert "`phase_clock: device-timeline`" in phases and "`data` there is the time the GPU waited for a batch" in phases
    cuda_table = both.split("\n## cuda")[1].split("\n## ")[0]
    assert "| MFU | J/sample |" in cuda_table and "| 0.250 |" in cuda_table


def test_a_cpu_record_has_the_gpu_fields_null_with_the_reason(cli_record):
    _, r = cli_record
    for name in ("gpu_start", "gpu_end", "gpu_other_processes", "gpu_energy_j", "joules_per_sample"):
        assert getattr(r, name) is None, name
    assert r.gpu_facts_why == "not a CUDA cell: no GPU facts"


def test_peak_tflops_is_recorded_as_an_override_and_mfu_uses_it(cli_record):
    from bench.analysis import mfu

    _, r = cli_record
    assert r.run.peak_tflops == 0.5 and r.device_peak_tflops == 0.5
    assert r.device_peak_override is True and r.device_peak_source.startswith("override: --peak-tflops 0.5")
    assert r.setup_s.harness_peak_probe_s < 0.05  # no GEMM measured
    assert mfu(r) == pytest.approx(mfu(r, peak_tflops=0.5)) and mfu(r) == pytest.approx(2 * mfu(r, peak_tflops=1.0))


def test_a_bad_peak_tflops_is_one_line(capsys):
    from bench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--peak-tflops", "-3"])
    assert exc.value.code == 2 and "--peak-tflops" in capsys.readouterr().err


class FakeNVML(types.ModuleType):
    """pynvml as a CUDA machine answers it: one GPU, another process on it, an energy counter."""
    NVML_CLOCK_SM, NVML_TEMPERATURE_GPU = 1, 0

    def __init__(self, energy=True):
        super().__init__("pynvml")
        self.energy_mj, self.has_energy = 1_000_000, energy

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid != "GPU-1234":
            raise RuntimeError("not found")
        return "handle"

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x4 | 0x20  # sw power cap, sw thermal slowdown

    def nvmlDeviceGetTemperature(self, h, kind):
        return 61

    def nvmlDeviceGetPowerUsage(self, h):
        return 412_500  # mW

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=85, memory=40)

    def nvmlDeviceGetComputeRunningProcesses(self, h):  # nvidia-ml-py 13's name
        return [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=2**30),
                types.SimpleNamespace(pid=999_999, usedGpuMemory=3 * 2**30)]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.has_energy:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        self.energy_mj += 50_000  # 50 J between two reads
        return self.energy_mj


@pytest.mark.parametrize("energy", [True, False])
def test_gpu_facts_through_nvml(monkeypatch, energy):
    import sys

    from bench.cell.gpu_facts import GpuWatch

    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(energy))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="1234"))
    gpu = GpuWatch("cuda")
    gpu.start()
    gpu.timed_start()
    gpu.timed_end()
    f = gpu.fields(gpu.energy_j(), timed_samples=200)
    assert f["gpu_start"] == {"sm_clock_mhz": 1980, "throttle_reasons": ["sw_power_cap", "sw_thermal_slowdown"],
                              "temperature_c": 61, "power_w": 412.5, "utilization_pct": 85}
    assert f["gpu_other_processes"] == [{"pid": 999_999, "used_mib": 3072}]  # this process is not "other"
    assert "1 other process(es) on the GPU" in gpu.busy_why()
    if energy:
        assert f["gpu_energy_j"] == 50.0 and f["joules_per_sample"] == 0.25 and f["gpu_facts_why"] == ""
    else:  # a MIG instance: no counter of its own
        assert f["gpu_energy_j"] is None and f["joules_per_sample"] is None and "energy counter" in f["gpu_facts_why"]


class OlderNVML(FakeNVML):
    """An older pynvml: the processes under their former name."""
    nvmlDeviceGetComputeProcesses = FakeNVML.nvmlDeviceGetComputeRunningProcesses

    def __getattribute__(self, name):
        if name == "nvmlDeviceGetComputeRunningProcesses":
            raise AttributeError(name)
        return super().__getattribute__(name)


class StrangeNVML(FakeNVML):
    """A pynvml that answers in a shape this code does not know."""

    def nvmlDeviceGetUtilizationRates(self, h):
        return 85  # no .gpu


@pytest.mark.parametrize("nvml", [OlderNVML, StrangeNVML])
def test_a_pynvml_of_another_shape_never_fails_a_cell(monkeypatch, nvml):
    import sys

    from bench.cell.gpu_facts import GpuWatch

    monkeypatch.setitem(sys.modules, "pynvml", nvml())
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="1234"))
    gpu = GpuWatch("cuda")
    gpu.start()
    gpu.timed_start()
    gpu.timed_end()
    f = gpu.fields(gpu.energy_j(), timed_samples=200)
    if nvml is OlderNVML:
        assert f["gpu_other_processes"] == [{"pid": 999_999, "used_mib": 3072}] and f["gpu_facts_why"] == ""
    else:
        assert f["gpu_start"] is None and f["gpu_facts_why"].startswith("NVML not read: AttributeError")


def test_without_nvml_a_cuda_cell_says_so(monkeypatch):
    import sys

    from bench.cell.gpu_facts import NO_NVML, GpuWatch

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    gpu = GpuWatch("cuda")
    gpu.start()
    assert gpu.fields(gpu.energy_j(), 10)["gpu_facts_why"] == NO_NVML and gpu.busy_why() is None


# -- 7. the machine-load probe: IEEE fp32 both times, the device timed rather than launches ---------
def test_the_load_probe_runs_in_fp32_in_a_tf32_cell(monkeypatch):
    from bench.cell import load as machine
    from bench.devices import DEVICES
    from bench.precision import set_tf32, tf32_state

    seen, timed_gemm = [], machine._timed_gemm
    monkeypatch.setattr(machine, "_timed_gemm", lambda *a: seen.append(tf32_state()["cuda_matmul_tf32"]) or 1.0)
    set_tf32(True)  # a tf32 cell: TF32 on while training
    try:
        watch = machine.LoadWatch("cpu")
        watch.probe("before")
        watch.probe("after")
        assert seen == [False, False] and tf32_state()["cuda_matmul_tf32"] is True  # and restored after
    finally:
        set_tf32(False)
    cuda = DEVICES["cuda"]
    assert cuda.probe_size >= 2048 and cuda.probe_products >= 10
    freed = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    monkeypatch.setattr(machine, "_timed_gemm", lambda *a: 1.0)
    machine.gemm_probe_gflops("cuda")
    assert freed == [True]  # its blocks given back before training
    # A GPU idles at a fraction of its clock: untimed products first, for probe_warmup_s, then the
    # best timing of probe_products products per sync over probe_seconds.
    assert cuda.probe_warmup_s >= 0.1 and cuda.probe_seconds >= 0.1
    import dataclasses
    import time

    kind = dataclasses.replace(DEVICES["cpu"], probe_size=64, probe_products=5, probe_seconds=0.03,
                               probe_warmup_s=0.03)
    syncs, t0 = [], time.perf_counter()
    assert timed_gemm("cpu", kind, lambda: syncs.append(time.perf_counter() - t0)) > 0
    assert len(syncs) >= 3  # the first product's, the warm-up's (at least one), the timings'
    assert syncs[-1] >= 0.06  # the warm-up and the timed window, one after the other


# -- 8. the manual loop's DDP skips the all-reduce on accumulating micro-batches -------------------
@pytest.mark.slow
def test_manual_ddp_with_grad_accum_uses_no_sync(glue_dir):
    from bench.sweep.driver import run_isolated

    run = RunConfig(model="tiny", glue_dir=glue_dir, train_samples=96, max_steps=3, timing_warmup=1, grad_accum=2)
    r = run_isolated(Cell("manual", "cpu", "fp32", run, nproc=2), timeout_s=300, progress=False, command="test")
    assert r.status == "ok", (r.reason, r.failure)
    assert r.settings["ddp_no_sync_micro_batches"] == 3  # one of the two micro-batches of each of 3 steps


# -- 9. --parity in one process: cuBLAS's workspace set before its first use -----------------------
def test_an_in_process_sweep_sets_the_parity_environment_before_its_first_cell(monkeypatch, tmp_path):
    import bench.cell.main
    from bench.records import Record
    from bench.sweep.driver import run_sweep

    seen = []

    def fake_run_cell(cell, progress=True, command="", peak=None):
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        return Record(loop=cell.loop, device=cell.device, precision=cell.precision, status="ok", cell_id=cell.cell_id)

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(bench.cell.main, "run_cell", fake_run_cell)
    monkeypatch.setattr(bench.cell.main, "skipped_record", lambda cell, command: None)
    cells = [Cell("manual", "cuda", "fp32", RunConfig(model="tiny")),
             Cell("trainer", "cuda", "fp32", RunConfig(model="tiny", parity=True))]
    run_sweep(cells, tmp_path / "out", isolate=False, progress=False)
    assert seen == [":4096:8", ":4096:8"]


def test_parity_after_the_device_was_used_is_refused(monkeypatch):
    from bench.cell.main import _reset_process_state

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(ConfigError, match="CUBLAS_WORKSPACE_CONFIG must be set before"):
        _reset_process_state(Cell("manual", "cuda", "fp32", RunConfig(model="tiny", parity=True)))
    torch.use_deterministic_algorithms(False)


# -- 10. TF32: every view of the switch agrees after a library's legacy write ----------------------
def test_tf32_off_after_accelerates_legacy_write_reads_off_everywhere():
    from bench.precision import _new_tf32_api, set_tf32, tf32_state

    if not _new_tf32_api():
        pytest.skip("this torch has only the legacy TF32 flags")
    torch.backends.cuda.matmul.allow_tf32 = True  # what Accelerate writes for a compiled fp32 model
    set_tf32(False)
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cuda.matmul.allow_tf32 is False  # readable: no "mix of the legacy and new APIs"
    assert tf32_state()["cuda_matmul_tf32"] is False
    set_tf32(True)
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cuda.matmul.allow_tf32 is True
    assert tf32_state()["cpu_matmul_fp32_precision"] == "ieee"  # TF32 is CUDA's, the CPU's matmuls stay fp32
    set_tf32(False)


# -- 11. the smaller ones ----------------------------------------------------------------------
def test_lightnings_fp16_unscale_is_timed_as_optimizer():
    """Lightning's own fp16 plugin, driving the harness's callback: the closure's backward, then the
    update begins (the meter enters `optimizer`), then the plugin's unscale_, then the step."""
    from lightning.pytorch.plugins.precision import MixedPrecision
    from lightning.pytorch.profilers import PassThroughProfiler

    from loops.lightning_loop import MeterCallback

    meter = EnterLog()

    class LoggingScaler(CountingScaler):
        def unscale_(self, optimizer):
            meter.log.append("unscale_")

        def step(self, optimizer):
            meter.log.append("step")

    scaler = LoggingScaler()
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    timer = MeterCallback(meter, grad_accum=1)
    module = _module(meter, scaler)
    trainer = types.SimpleNamespace(callbacks=[timer], lightning_module=module, profiler=PassThroughProfiler(),
                                    num_training_batches=4, gradient_clip_val=None, gradient_clip_algorithm=None,
                                    precision_plugin=plugin)
    module._trainer = trainer
    timer.on_train_batch_start(trainer, module, None, 3)  # the epoch's last batch: a group's last
    meter.log.clear()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)

    def closure():
        meter.log.append("forward+backward")
        plugin.post_backward(torch.zeros(()), module)  # where Lightning calls on_after_backward
        return torch.zeros(())

    plugin.optimizer_step(optimizer, model=module, closure=closure)
    assert meter.log == ["forward+backward", "enter optimizer", "unscale_", "step"]


def test_the_trainers_nan_inf_log_filter_is_off_under_tutorial_defaults(tmp_path):
    from loops.trainer_loop import training_arguments

    tutorial = training_arguments(Cell("trainer", "cpu", "fp32", RunConfig(model="tiny")), str(tmp_path))
    native = training_arguments(Cell("trainer", "cpu", "fp32", RunConfig(model="tiny", defaults="native")),
                                str(tmp_path))
    assert tutorial.logging_nan_inf_filter is False and native.logging_nan_inf_filter is True


def test_a_cell_process_leaves_its_process_group(monkeypatch, tmp_path):
    import torch.distributed as dist

    import bench.cell.main
    from bench.records import Record

    def trains_with_a_group(cell, **kwargs):
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        return Record(loop=cell.loop, device=cell.device, precision=cell.precision, status="ok")

    monkeypatch.setattr(bench.cell.main, "run_cell", trains_with_a_group)
    monkeypatch.setattr("bench.cell.dist.die_with_parent", lambda: None)  # main asks it first; not of pytest
    cell_path, result_path = tmp_path / "cell.json", tmp_path / "record.json"
    cell_path.write_text(json.dumps(Cell("manual", "cpu", "fp32").to_dict()))
    try:
        assert bench.cell.main.main([str(cell_path), str(result_path), "--no-progress"]) == 0
        assert result_path.exists() and not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_peak_device_memory_is_read_before_the_after_probe(tiny_run, monkeypatch):
    """A 4096^2 fp32 GEMM probe allocates 192 MiB: were the peaks read after the post-training load
    probe, a small model's peak would be the probe's.  A CPU cell with a faked CUDA counter: the
    probe raises the counter, the record keeps the training's peak."""
    import dataclasses

    from bench import devices
    from bench.cell import load as machine
    from bench.cell.main import run_cell

    state = {"peak": 0}
    monkeypatch.setitem(devices.DEVICES, "cpu", dataclasses.replace(devices.DEVICES["cpu"], memory_counters=True))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: state.update(peak=10 * 2**20))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: state["peak"])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a: state["peak"])
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    real_probe = machine.LoadWatch.probe

    def probe(self, when):
        real_probe(self, when)
        if when == "after":
            state["peak"] = 192 * 2**20  # what the probe's own product holds

    monkeypatch.setattr(machine.LoadWatch, "probe", probe)
    record = run_cell(Cell("manual", "cpu", "fp32", tiny_run()), progress=False)
    assert record.status == "ok", record.reason
    assert record.peak_alloc_mib == 10.0 and record.peak_reserved_mib == 10.0
    assert state["peak"] == 192 * 2**20  # the probe did run, after the peaks were read
