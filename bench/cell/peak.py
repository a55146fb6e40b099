"""Peak FLOP/s of the device a cell runs on, the denominator of MFU, and the model FLOPs of a
training step, its numerator.

Known GPUs: the datasheet's dense peak for the precision.  CPUs and unknown GPUs: a GEMM measured on
the spot, at the precision's matmul dtype, before training starts.  Each record says which.
"""

from __future__ import annotations

import time

# Dense (no sparsity) peak TFLOP/s from NVIDIA datasheets, by precision.
DATASHEET_TFLOPS = {
    "H100 SXM": {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "fp16": 835.0, "bf16": 835.0},
    "H200 SXM": {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "fp16": 835.0, "bf16": 835.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "fp16": 362.05, "bf16": 362.05},
    "L40": {"fp32": 90.5, "tf32": 90.5, "fp16": 181.05, "bf16": 181.05},
    "L4": {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0},
}
# Where each row comes from: NVIDIA's own datasheet of the part.  A part NVIDIA publishes no datasheet
# for (the A10G, a cloud variant whose measured tensor rate is about half the A10's) has no row: its
# peak is measured on the spot like any unknown GPU's, and its records say so.
DATASHEET_SOURCE = {
    "H100 SXM": "NVIDIA H100 Tensor Core GPU datasheet", "H100 PCIe": "NVIDIA H100 Tensor Core GPU datasheet",
    "H100 NVL": "NVIDIA H100 Tensor Core GPU datasheet", "H200 SXM": "NVIDIA H200 Tensor Core GPU datasheet",
    "H200 NVL": "NVIDIA H200 Tensor Core GPU datasheet", "A100": "NVIDIA A100 Tensor Core GPU datasheet",
    "L40S": "NVIDIA L40S datasheet", "L40": "NVIDIA L40 datasheet", "L4": "NVIDIA L4 Tensor Core GPU datasheet",
}


# Streaming multiprocessors of each whole part: a device with fewer is a slice of one (a MIG
# instance), whose peak is not the datasheet's.
DATASHEET_SMS = {"H100 SXM": 132, "H100 PCIe": 114, "H100 NVL": 132, "H200 SXM": 132, "H200 NVL": 132,
                 "A100": 108, "L40S": 142, "L40": 142, "L4": 58}


def partial_device(gpu_name: str, key: str, sm_count: int | None) -> str | None:
    """Why this GPU is not the whole datasheet part, or None: a MIG instance ("... MIG 3g.40gb", as
    NVML names one) or fewer multiprocessors than the part has (CUDA names a MIG instance like its
    parent GPU and reports the slice's multiprocessors)."""
    import re

    if "MIG" in set(re.findall(r"[A-Z0-9]+", gpu_name.upper())):
        return f"a MIG instance ({gpu_name})"
    whole = DATASHEET_SMS.get(key)
    if sm_count and whole and sm_count < whole:
        return f"{sm_count} of the {key}'s {whole} multiprocessors (a MIG instance?)"
    return None


def datasheet_key(gpu_name: str) -> str | None:
    """The datasheet entry of a GPU name as torch reports it, matched on whole words: "L40S" is not
    an "L4", an "H200 NVL" is not an H200 SXM.  None for a GPU not in the table (then measured)."""
    import re

    words = set(re.findall(r"[A-Z0-9]+", gpu_name.upper()))
    for family in ("H100", "H200"):
        if family in words:
            if "NVL" in words:
                return f"{family} NVL"
            if "PCIE" in words:
                return f"{family} PCIe" if f"{family} PCIe" in DATASHEET_TFLOPS else None
            return f"{family} SXM"  # "NVIDIA H100 80GB HBM3", "NVIDIA H200": the SXM parts
    for key in ("A100", "L40S", "L40", "L4"):
        if key in words:
            return key
    return None




def measure_gemm_tflops(device: str, precision: str, n: int, seconds: float = 1.0) -> float:
    """Best square GEMM throughput at the precision's matmul dtype, over the two paths a model's
    matmuls take: ``a @ b`` (attention) and ``F.linear`` (``nn.Linear``).  They can differ by 20x:
    on a CPU without native bf16 only the Linear path has a tuned bf16 kernel."""
    import torch
    import torch.nn.functional as F

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    from bench.devices import device as device_kind

    kind = device_kind(device)
    dev = torch.device(kind.torch_type)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)

    sync = kind.synchronize

    best = float("inf")
    for op in (lambda: a @ b, lambda: F.linear(a, b)):
        op()  # warm up (kernel selection, oneDNN JIT)
        sync()
        deadline = time.perf_counter() + seconds / 2
        while True:
            t0 = time.perf_counter()
            op()
            sync()
            best = min(best, time.perf_counter() - t0)
            if time.perf_counter() > deadline:
                break
    return 2 * n**3 / best / 1e12


def device_peak(device: str, precision: str) -> tuple[float, str]:
    """(one device's peak TFLOP/s, where it comes from) for MFU: the datasheet's where the device
    table says there is one and the model is known, else a GEMM measured now, at the precision's
    matmul dtype, sized per device (``bench/devices.py``: about a second where bf16 has no fast path)."""
    import torch

    from bench.devices import device as device_kind
    from bench.precision import set_tf32

    kind = device_kind(device)
    where = "this CPU" if kind.host else device
    why_measured = ""
    if kind.datasheet_peaks:
        where = torch.cuda.get_device_name()  # this rank's GPU (set before), not GPU 0
        key = datasheet_key(where)
        sms = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "multi_processor_count", None)
        partial = partial_device(where, key, sms) if key else None
        if key and not partial:
            return (DATASHEET_TFLOPS[key][precision],
                    f"datasheet dense peak, {key} ({where}), {precision}: {DATASHEET_SOURCE[key]}")
        why_measured = f" (not the datasheet's: {partial})" if partial else ""
        set_tf32(precision == "tf32")
    n = kind.gemm_size
    tflops = measure_gemm_tflops(device, precision, n)
    # The probe's n^2 blocks stay in the caching allocator: given back, or they would count in the
    # cell's peak_reserved_mib (the meter resets the peaks to what is reserved when training starts).
    kind.release_cached_memory()
    return tflops, f"measured {n}^3 GEMM on {where}, {precision}{why_measured}"
