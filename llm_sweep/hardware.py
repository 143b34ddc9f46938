"""Device selection, numeric modes and the peak FLOP/s that MFU is measured against."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import json
import os
import re
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, ContextManager

import torch

from llm_sweep.core.errors import ConfigError

# Dense bf16 tensor-core peaks (FLOP/s, no 2:4 sparsity) by the name torch reports, e.g.
# "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB". The first key
# found in the name wins, as whole words: "A100" is not in "RTX A1000", nor "H200" in "GH200".
# From NVIDIA's datasheets, whose headline tensor figures are with sparsity, halved here.
GPU_PEAK_FLOPS = {
    "GH200": 989e12,  # GH200 datasheet: its Hopper GPU, 1,979 TFLOPS with sparsity
    "H200 NVL": 835e12,  # H200 datasheet, NVL: 1,671 with sparsity
    "H200": 989e12,  # H200 datasheet, SXM: 1,979 with sparsity
    "H100 NVL": 835e12,  # H100 datasheet, NVL: 1,671 with sparsity
    "H100 PCIe": 756e12,  # H100 datasheet, PCIe: 1,513 with sparsity
    "H100": 989e12,  # H100 datasheet, SXM (named "H100 80GB HBM3"): 1,979 with sparsity
    "A100": 312e12,  # A100 datasheet, SXM4 and PCIe, 40 and 80 GB: 312 dense
    "L40S": 362e12,  # L40S datasheet: 362.05 dense
    "L40": 181e12,  # L40 datasheet: 181.05 dense
    "L4": 121e12,  # L4 datasheet: 242 with sparsity
    # No NVIDIA datasheet covers the A10G (AWS G5). Its 80 SMs at 1,710 MHz run tensor math
    # at GeForce Ampere's rate, 512 dense bf16 FLOP per SM and clock with fp32 accumulation:
    # 70 TFLOPS, as AWS-focused comparisons give (the A10 datasheet's 125 is another part).
    "A10G": 70e12,
    "A10": 125e12,  # A10 datasheet: 125 dense
    # Ada whitepaper: 165.2 with fp32 accumulation, as torch's bf16 matmuls accumulate
    # (330 is the fp16-accumulate rate).
    "RTX 4090": 165e12,
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
    return torch.device(name)  # auto, cpu or cuda: the rule of `device` in llm_sweep.core.config


def configure_backends(device: torch.device) -> None:
    """TF32 for the fp32 matmuls that remain under bf16 autocast (A100/H100 tensor cores)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def share_gpu_memory(device: torch.device, trials_per_gpu: int) -> float | None:
    """With `distributed.trials_per_gpu` = k > 1 trials on one GPU, cap this process's caching
    allocator at 1/k of the GPU's memory (an allocation beyond it is an out-of-memory error
    in this trial instead of in a neighbour). The fraction set; None, doing nothing, on a CPU
    or for a GPU of its own."""
    if device.type != "cuda" or trials_per_gpu <= 1:
        return None
    fraction = 1.0 / trials_per_gpu
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    return fraction


def resolve_dtype(device: torch.device, dtype: str) -> str:
    """`auto` is the faster of the two on this machine: bf16 on CUDA; on a CPU, bf16 where
    its measured matmul peak beats fp32's (AMX, AVX512-BF16), fp32 where bf16 is emulated."""
    if dtype != "auto":
        return dtype
    if device.type == "cuda":
        return "bf16"
    return "bf16" if cpu_peak_flops("bf16") > cpu_peak_flops("fp32") else "fp32"


def compile_enabled(device: torch.device, setting: bool | str) -> bool:
    """`compile`: true or false as set; `auto` compiles wherever inductor can generate code,
    on CUDA and on a CPU with a C++ compiler (measured on CPUs with and without native
    bf16, the compiled step was 1.2-2x faster than eager: docs/performance.md)."""
    if setting != "auto":
        return bool(setting)
    return device.type == "cuda" or cpp_compiler() is not None


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would use for CPU code, None when there is none."""
    from torch._inductor import config  # inductor loads only when compiling is considered

    names = [name for name in config.cpp.cxx if name] or ["g++"]
    return next((shutil.which(name) for name in names if shutil.which(name)), None)


def autocast_for(device: torch.device, dtype: str) -> Callable[[], ContextManager]:
    """A factory of autocast contexts: bf16 autocast on CPU and CUDA, or nothing for fp32."""
    if dtype == "bf16":
        return functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=None)
def gpu_peak_flops(name: str) -> float | None:
    """Dense bf16 FLOP/s of the GPU that torch.cuda.get_device_name() calls `name`, or None
    (with one warning per name) for a GPU GPU_PEAK_FLOPS does not know: MFU is then left
    blank rather than measured against a guess."""
    for key, flops in GPU_PEAK_FLOPS.items():
        words = r"[\s_-]+".join(map(re.escape, key.split()))
        if re.search(rf"(?<![A-Za-z0-9]){words}(?![A-Za-z0-9])", name, flags=re.IGNORECASE):
            return flops
    warnings.warn(f"no peak FLOP/s known for GPU {name!r}: MFU is left blank; "
                  "set peak_flops=<dense bf16 FLOP/s> to report it", stacklevel=2)
    return None


def peak_flops(device: torch.device, dtype: str, override: float | None = None,
               remeasure: bool = False) -> float | None:
    """FLOP/s that 100% MFU means on this device: a table on CUDA (None for a GPU it does
    not know), a measured probe on CPU. Callers report MFU only when this is not None."""
    if override:
        return float(override)
    if device.type == "cuda":
        bf16 = gpu_peak_flops(torch.cuda.get_device_name(device))
        if bf16 is None:
            return None
        return bf16 if dtype == "bf16" else bf16 / 2  # fp32 matmuls run as TF32: half the rate
    if dtype == "bf16":  # where bf16 is emulated, the CPU's peak is still its fp32 rate
        return max(cpu_peak_flops("bf16", remeasure), cpu_peak_flops("fp32", remeasure))
    return cpu_peak_flops(dtype, remeasure)


def reset_peak_memory(device: torch.device) -> None:
    """Start a mode's peak from what is live now, not from what earlier modes held."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: hand freed heap pages back (glibc keeps them), then reset ru_maxrss to now
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak since the process started stands


def peak_memory_bytes(device: torch.device) -> int:
    """The process's peak memory: CUDA's allocated bytes on a GPU, the peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else 1024 * peak  # bytes on macOS, KiB on Linux


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


def measure_matmul_flops(dtype: torch.dtype, max_size: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of repeated square matmuls on the CPU (best of several timed rounds).

    The size grows from 256 while one product stays well inside the time allowed, up to
    `max_size`: where a dtype is emulated (bf16 without AMX runs at well under 1 GFLOP/s on
    some CPUs) one 2048^2 product alone would take a minute.
    """
    size, generator = 256, torch.Generator().manual_seed(0)  # never the global RNG a run seeds
    while True:
        a = torch.randn(size, size, generator=generator).to(dtype)
        b = torch.randn(size, size, generator=generator).to(dtype)
        t0 = time.perf_counter()
        a @ b  # warm-up, and the time one product takes
        one = time.perf_counter() - t0
        if size >= max_size or 8 * one > seconds / 8:  # the next size costs 8x as much
            break
        size *= 2
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - t0))
    return best
