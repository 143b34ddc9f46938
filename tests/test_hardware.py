"""Peak FLOP/s by GPU name: dense bf16 from the datasheets, None (never a guess) otherwise."""
from __future__ import annotations

import warnings

import pytest
import torch

from llm_sweep import hardware
from llm_sweep.hardware import gpu_peak_flops, peak_flops


@pytest.fixture(autouse=True)
def fresh_table_cache():
    gpu_peak_flops.cache_clear()  # each test sees its own first warning
    yield
    gpu_peak_flops.cache_clear()


# Names as torch.cuda.get_device_name() reports them.
@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989),  # SXM
    ("NVIDIA H100 PCIe", 756),
    ("NVIDIA H100 NVL", 835),
    ("NVIDIA H200", 989),
    ("NVIDIA H200 NVL", 835),
    ("NVIDIA GH200 480GB", 989),
    ("NVIDIA A100-SXM4-80GB", 312),
    ("NVIDIA A100-SXM4-40GB", 312),
    ("NVIDIA A100-PCIE-40GB", 312),
    ("NVIDIA A100 80GB PCIe", 312),
    ("NVIDIA L40S", 362),
    ("NVIDIA L40", 181),
    ("NVIDIA L4", 121),
    ("NVIDIA A10G", 70),
    ("NVIDIA A10", 125),
    ("NVIDIA GeForce RTX 4090", 165),
])
def test_dense_bf16_peak_of_known_gpus(name, tflops):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gpu_peak_flops(name) == tflops * 1e12


@pytest.mark.parametrize("name", [
    "NVIDIA RTX A1000",  # not an A100
    "NVIDIA GeForce RTX 3080",
    "Tesla V100-SXM2-16GB",  # no bf16 tensor cores
    "NVIDIA H20",  # not an H200
    "AMD Instinct MI300X",
])
def test_an_unknown_gpu_has_no_peak_and_warns_once(name):
    with pytest.warns(UserWarning, match="MFU is left blank"):
        assert gpu_peak_flops(name) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gpu_peak_flops(name) is None  # asked again: no second warning


@pytest.fixture
def fake_gpu(monkeypatch):
    def named(name: str) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    return named


def test_fp32_on_cuda_is_tf32_at_half_the_bf16_rate(fake_gpu):
    fake_gpu("NVIDIA H100 PCIe")
    cuda = torch.device("cuda")
    assert peak_flops(cuda, "bf16") == 756e12
    assert peak_flops(cuda, "fp32") == 378e12


def test_peak_of_an_unknown_gpu_is_none_and_an_override_still_wins(fake_gpu):
    fake_gpu("NVIDIA Future GPU")
    cuda = torch.device("cuda")
    with pytest.warns(UserWarning):
        assert peak_flops(cuda, "bf16") is None
    assert peak_flops(cuda, "fp32") is None
    assert peak_flops(cuda, "bf16", override=5e14) == 5e14


def test_cpu_peak_is_still_the_probe(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_peak_flops", lambda dtype, remeasure=False: 123.0)
    assert peak_flops(torch.device("cpu"), "fp32") == 123.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_device_has_a_known_peak():
    name = torch.cuda.get_device_name()
    assert gpu_peak_flops(name) is not None, f"add {name!r} to GPU_PEAK_FLOPS"
