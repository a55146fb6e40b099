"""What each precision means on each device, whether this machine can run it, and what was
actually in force during a run (read back from torch, not assumed).

fp32  plain float32; on CUDA with TF32 matmuls explicitly *off*, so fp32 means fp32.
tf32  float32 storage, TF32 tensor-core matmuls and convolutions (CUDA, compute capability >= 8.0).
fp16  float16 autocast with a dynamic loss scaler (GradScaler).
bf16  bfloat16 autocast, no loss scaler (bf16 has fp32's exponent range).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrecisionPlan:
    precision: str
    autocast_dtype: str | None  # "bfloat16" / "float16" / None
    grad_scaler: bool
    tf32: bool

    @property
    def accelerate_mixed_precision(self) -> str:
        return {"bfloat16": "bf16", "float16": "fp16"}.get(self.autocast_dtype, "no")

    def torch_dtype(self):
        import torch

        return getattr(torch, self.autocast_dtype) if self.autocast_dtype else None


def precision_plan(precision: str) -> PrecisionPlan:
    return {
        "fp32": PrecisionPlan("fp32", None, False, False),
        "tf32": PrecisionPlan("tf32", None, False, True),
        "fp16": PrecisionPlan("fp16", "float16", True, False),
        "bf16": PrecisionPlan("bf16", "bfloat16", False, False),
    }[precision]


def _new_tf32_api() -> bool:
    """torch >= 2.9 has ``fp32_precision`` per backend; reading the legacy ``allow_tf32`` flags after
    anything set the new API raises ("mix of the legacy and new APIs"), so only one API is used."""
    import torch

    return hasattr(torch.backends.cuda.matmul, "fp32_precision")


def set_tf32(enabled: bool) -> None:
    """TF32 is a process-wide switch; set it both ways so no earlier default (or a library's:
    Accelerate writes the legacy ``allow_tf32 = True`` for compiled fp32 models on CUDA) leaks into a
    cell.  With the new API, every view of the switch is written so that all read the same: the
    global precision (``set_float32_matmul_precision``, which the legacy views and inductor's caches
    read), the per-backend ``fp32_precision``, then the legacy flags.  Writing only the per-backend
    one after a legacy write leaves ``get_float32_matmul_precision()`` saying "high" with TF32 off,
    and makes reading the legacy flag raise ("mix of the legacy and new APIs")."""
    import torch

    if _new_tf32_api():
        mode = "tf32" if enabled else "ieee"
        torch.set_float32_matmul_precision("high" if enabled else "highest")
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
        torch.backends.cudnn.rnn.fp32_precision = mode
        cpu_matmul = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
        if cpu_matmul is not None and hasattr(cpu_matmul, "fp32_precision"):
            cpu_matmul.fp32_precision = "ieee"  # TF32 is CUDA's: the global "high" must not reach the CPU's
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
    else:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


class fp32_matmul:
    """IEEE fp32 matmuls inside, the TF32 switch as it was after (the machine-load probe's)."""

    def __enter__(self):
        self._was = tf32_state()["cuda_matmul_tf32"]
        set_tf32(False)
        return self

    def __exit__(self, *exc):
        set_tf32(self._was)
        return False


def tf32_state() -> dict:
    """What is in force, read through the same API (the new one maps the legacy flags' values)."""
    import torch

    if _new_tf32_api():
        def resolved(value: str) -> str:  # "none" inherits the global setting, whose "none" is full fp32
            return value if value != "none" else torch.backends.fp32_precision

        matmul = resolved(torch.backends.cuda.matmul.fp32_precision)
        conv = resolved(torch.backends.cudnn.conv.fp32_precision)
        mkldnn = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
        return {"cuda_matmul_tf32": matmul == "tf32", "cudnn_conv_tf32": conv == "tf32",
                "cpu_matmul_fp32_precision": resolved(mkldnn.fp32_precision) if mkldnn is not None else None}
    return {
        "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_conv_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cpu_matmul_fp32_precision": None,
    }


def device_unavailable(device: str) -> str | None:
    """Why this device cannot be used here, or None (``bench/devices.py`` decides)."""
    from bench.devices import DEVICES

    return DEVICES[device].unavailable() if device in DEVICES else f"unknown device {device!r}"


def precision_unsupported(device: str, precision: str) -> str | None:
    """Why this precision cannot run on this (available) device, or None (``bench/devices.py``)."""
    from bench.devices import device as device_kind

    return device_kind(device).precision_unsupported(precision)


def too_many_processes(device: str, nproc: int) -> str | None:
    """Why ``nproc`` processes per node cannot each have a device of their own here, or None."""
    from bench.devices import device as device_kind

    return device_kind(device).too_many_processes(nproc)


def cpu_features() -> dict:
    """Matrix-unit features of this CPU that decide bf16 speed (AMX, AVX512-BF16)."""
    flags: set[str] = set()
    name = ""
    ids: dict = {}  # cpu family / model: a virtual machine often names only "AMD EPYC"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith(("cpu family", "model\t")) and line.split(":", 1)[0].strip() not in ids:
                    ids[line.split(":", 1)[0].strip()] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu_name": name,
        "cpu_family_model": f"{ids.get('cpu family', '?')}/{ids.get('model', '?')}",
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "avx512f": "avx512f" in flags,
    }
