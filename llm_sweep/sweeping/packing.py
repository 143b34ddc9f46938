"""Several trials on one GPU (`distributed.trials_per_gpu`): what each needs in GPU memory,
whether that many fit, and the GPU-hours packing saves.

A trial's peak memory in training is estimated from its config: fp32 weights, gradients
and two optimizer moments (16 bytes per parameter), the activations one micro-batch keeps
for the backward (34 bytes per token, layer and channel under bf16 autocast with fused
attention: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", without the attention matrix), and the logits with their gradient
(8 bytes per token and vocabulary entry, split by `loss_chunks`). With `sweep.bench` the
estimate is scaled so that the bench's own shape gets the peak the bench measured on the
GPU, and the GPU's memory is the bench's; without it, an A100 80GB, as the throughput
assumes.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from llm_sweep.core.config import BatchConfig, RunConfig
from llm_sweep.core.model_config import ModelConfig, with_vocab_size
from llm_sweep.core.size import param_count

STATE_BYTES_PER_PARAM = 16  # fp32 weights and gradients, and two moments (AdamW, SophiaG)
ACTIVATION_BYTES = 34  # per token, layer and channel kept for the backward (bf16, fused attention)
LOGIT_BYTES = 8  # per token and vocabulary entry: fp32 logits and their gradient
DEFAULT_GPU_BYTES = 80 * 2**30  # an A100 80GB, the GPU the expected throughput assumes
GiB = 2**30


def train_memory_bytes(model: ModelConfig, batch: BatchConfig, loss_chunks: Optional[int] = None) -> float:
    """The estimated peak GPU memory of training this shape at this micro-batch."""
    tokens = batch.micro_batch_size * batch.seq_len
    vocab = with_vocab_size(model).vocab_size
    activations = ACTIVATION_BYTES * tokens * model.n_layer * model.n_embd
    logits = LOGIT_BYTES * tokens * vocab / max(1, loss_chunks or 1)
    return STATE_BYTES_PER_PARAM * param_count(model) + activations + logits


@dataclass(frozen=True)
class GpuMemory:
    """The GPU's memory and how the estimate is calibrated, with where both come from."""

    total_bytes: float
    scale: float  # measured peak / estimate at the bench's shape; 1 without a bench
    source: str

    def need(self, run: RunConfig) -> float:
        return self.scale * train_memory_bytes(run.model, run.batch, run.loss_chunks)


def gpu_memory(bench: Optional[str]) -> GpuMemory:
    """From a bench.json measured on a GPU (its device's memory and its peak at its shape),
    else an A100 80GB's memory and the uncalibrated estimate."""
    if bench is None:
        return GpuMemory(DEFAULT_GPU_BYTES, 1.0, "80 GiB (an A100's), estimated per trial")
    data = json.loads(Path(bench).read_text())
    total, records = data.get("device_memory_bytes"), data.get("records", [])
    if not total or data.get("memory", "").startswith("peak RSS") or not records:
        return GpuMemory(DEFAULT_GPU_BYTES, 1.0, f"80 GiB (an A100's: {bench} holds no GPU memory), estimated per trial")
    model, batch = _fields_of(ModelConfig, data["model"]), _fields_of(BatchConfig, data["batch"])
    measured = max(record["peak_mem_bytes"] for record in records)
    scale = measured / train_memory_bytes(model, batch, data.get("loss_chunks"))
    return GpuMemory(float(total), scale, f"{total / GiB:.0f} GiB ({data.get('device', 'the GPU')} of {bench}), "
                                          f"per trial scaled to the bench's measured peak ({scale:.2f}x the estimate)")


def _fields_of(schema: type, record: dict[str, Any]) -> Any:
    """`schema` from a bench.json's record of it: a key the file was written before keeps its default."""
    return schema(**{f.name: record[f.name] for f in dataclasses.fields(schema) if f.name in record})


def packing_error(needs: list[tuple[int, float]], per_gpu: int, memory: GpuMemory) -> Optional[str]:
    """One line when the costliest of the jobs ({job number, bytes}) cannot have 1/per_gpu of
    the GPU; None when all fit."""
    if per_gpu <= 1 or not needs:
        return None
    num, need = max(needs, key=lambda job: job[1])
    share = memory.total_bytes / per_gpu
    if need <= share:
        return None
    fit = int(memory.total_bytes // need)
    advice = f"at most {fit} such trials fit on one GPU" if fit else "not even one such trial fits on one GPU"
    return (f"distributed.trials_per_gpu={per_gpu}: job #{num} needs about {need / GiB:.2f} GiB of GPU memory, "
            f"more than its 1/{per_gpu} of {memory.total_bytes / GiB:.0f} GiB ({share / GiB:.2f} GiB); {advice}: "
            f"lower distributed.trials_per_gpu (or batch.micro_batch_size)")


@dataclass(frozen=True)
class PackLayout:
    """How hydra/launcher=slurm_packed groups a sweep's trials into Slurm jobs."""

    gpus: int  # per Slurm job (gpus_per_node; 0 on a CPU node)
    per_gpu: int  # distributed.trials_per_gpu
    trials_per_job: Optional[int]  # None: one round

    @property
    def at_once(self) -> int:
        return max(1, self.gpus) * self.per_gpu

    @property
    def size(self) -> int:
        return self.trials_per_job or self.at_once

    def jobs(self, trials: int) -> int:
        return -(-trials // self.size)

    def gpu_hours(self, walls: list[float]) -> float:
        """What the Slurm jobs hold: each job's GPUs for as long as its trials take, round by
        round of `at_once` trials (the longest of a round sets its length)."""
        held = 0.0
        for start in range(0, len(walls), self.size):
            pack = walls[start:start + self.size]
            rounds = [max(pack[i:i + self.at_once]) for i in range(0, len(pack), self.at_once)]
            held += max(1, self.gpus) * sum(rounds)
        return held / 3600
