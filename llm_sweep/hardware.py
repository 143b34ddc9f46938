"""Device selection, numeric modes and the peak FLOP/s that MFU is measured against."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from pathlib import Path
from typing import Callable, ContextManager

import torch

from llm_sweep.errors import ConfigError

# Dense bf16 tensor-core peaks (FLOP/s), matched against torch.cuda.get_device_name().
GPU_PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def configure_backends(device: torch.device) -> None:
    """TF32 for the fp32 matmuls that remain under bf16 autocast (A100/H100 tensor cores)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matmul instructions (AMX or AVX512-BF16); elsewhere bf16 is emulated
    and several times slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(device: torch.device, dtype: str) -> str:
    """`auto` is bf16 on CUDA and on CPUs with native bf16, else fp32."""
    if dtype != "auto":
        return dtype
    return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"


def autocast_for(device: torch.device, dtype: str) -> Callable[[], ContextManager]:
    """A factory of autocast contexts: bf16 autocast on CPU and CUDA, or nothing for fp32."""
    if dtype == "bf16":
        return functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def peak_flops(device: torch.device, dtype: str, override: float | None = None,
               remeasure: bool = False) -> float:
    """FLOP/s that 100% MFU means on this device: a table on CUDA, a measured probe on CPU."""
    if override:
        return float(override)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAK_FLOPS.items():
            if key in name:
                return flops if dtype == "bf16" else flops / 2  # TF32 is half the bf16 rate
        raise ConfigError(f"unknown GPU {name!r} for MFU; set peak_flops=<FLOP/s>")
    return cpu_peak_flops(dtype, remeasure)


def _probe_cache() -> Path:
    root = Path(os.environ.get("LLM_SWEEP_CACHE", Path.home() / ".cache" / "llm_sweep"))
    return root / "cpu_peak_flops.json"


def cpu_peak_flops(dtype: str, remeasure: bool = False) -> float:
    """The best matmul rate this CPU has reached, per thread count. Measured once and cached;
    `remeasure` (the benchmark) probes again and keeps the best value ever seen, so a probe
    taken while the machine was busy does not stay the reference."""
    cache = _probe_cache()
    key = f"{dtype}-{torch.get_num_threads()}threads-torch{torch.__version__}"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known or remeasure:
        measured = measure_matmul_flops(torch.bfloat16 if dtype == "bf16" else torch.float32)
        known[key] = max(measured, known.get(key, 0.0))
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, cache)
    return float(known[key])


def measure_matmul_flops(dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of repeated square matmuls on the CPU (best of several timed rounds)."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - t0))
    return best
