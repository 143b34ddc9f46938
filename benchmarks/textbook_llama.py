"""A Llama written the plain textbook way, timed against llm_sweep's eager training step.

    python benchmarks/textbook_llama.py                      # model=tiny batch=cpu shapes
    python benchmarks/textbook_llama.py --preset noam --batch-size 4 --seq-len 256

The reference has what a first implementation would: separate q, k, v and gate, up, down
projections, complex-number rotary embeddings, `F.cross_entropy` on the full logits and
`torch.optim.AdamW` with default settings. Both models have the same shapes and parameter
count, train in fp32 eager on random tokens, and take turns step by step in one process
(alternating who goes first), so the load of a shared machine falls on both alike.
Prints the median and best step time of each and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.optim_config import OptimConfig
from llm_sweep.hardware import autocast_for
from llm_sweep.models.build import build_model
from llm_sweep.optim.build import build_optimizer
from llm_sweep.optim.hooks import OptimizerHook
from llm_sweep.plan.presets import load_presets
from llm_sweep.training.steps import forward_backward, optimizer_step


class TextbookRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary_phases(seq_len: int, head_dim: int, theta: float = 10000.0) -> Tensor:
    """e^(i t theta^(-2k/d)) as a complex (T, head_dim / 2) table."""
    freqs = theta ** (-torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(seq_len).float(), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def rotate(x: Tensor, phases: Tensor) -> Tensor:
    """x (B, T, nh, hs): adjacent pairs as complex numbers, multiplied by the phases."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * phases[:, None, :]).flatten(-2).type_as(x)


class TextbookAttention(nn.Module):
    def __init__(self, dim: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, phases: Tensor) -> Tensor:
        B, T, C = x.shape
        q = self.wq(x).view(B, T, self.n_head, -1)
        k = self.wk(x).view(B, T, self.n_head, -1)
        v = self.wv(x).view(B, T, self.n_head, -1)
        q, k = rotate(q, phases), rotate(k, phases)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(B, T, C))


class TextbookFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TextbookBlock(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = TextbookRMSNorm(config.n_embd, config.rmsnorm_eps)
        self.attention = TextbookAttention(config.n_embd, config.heads)
        self.ffn_norm = TextbookRMSNorm(config.n_embd, config.rmsnorm_eps)
        self.feed_forward = TextbookFeedForward(config.n_embd, config.mlp_hidden)

    def forward(self, x: Tensor, phases: Tensor) -> Tensor:
        x = x + self.attention(self.attention_norm(x), phases)
        return x + self.feed_forward(self.ffn_norm(x))


class TextbookLlama(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList(TextbookBlock(config) for _ in range(config.n_layer))
        self.norm = TextbookRMSNorm(config.n_embd, config.rmsnorm_eps)
        self.output = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.output.weight = self.tok_embeddings.weight
        self.register_buffer("phases", rotary_phases(config.max_seq_len, config.n_embd // config.heads))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.tok_embeddings(idx)
        phases = self.phases[:idx.size(1)]
        for layer in self.layers:
            x = layer(x, phases)
        return self.output(self.norm(x))


def textbook_step(model: TextbookLlama, optimizer: torch.optim.Optimizer) -> Callable[[Tensor, Tensor], None]:
    def step(x: Tensor, y: Tensor) -> None:
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def llm_sweep_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                   hook: OptimizerHook) -> Callable[[Tensor, Tensor], None]:
    def step(x: Tensor, y: Tensor) -> None:
        forward_backward(model, [(x, y)], autocast_for(torch.device("cpu"), "fp32"))
        optimizer_step(model, optimizer, hook, 1.0)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="a model preset of conf/model/ (default tiny)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8, help="timed steps of each model (default 8)")
    args = parser.parse_args()

    config = load_presets([args.preset])[0]
    optim = OptimConfig()
    torch.manual_seed(0)
    textbook = TextbookLlama(config)
    ours = build_model(config)
    assert sum(p.numel() for p in textbook.parameters()) == ours.num_params(), "shapes differ"
    ours_optimizer, hook = build_optimizer(ours, optim, args.batch_size * args.seq_len, "cpu")
    steps = {
        "textbook": textbook_step(textbook, torch.optim.AdamW(textbook.parameters(), lr=optim.lr,
                                                              betas=(optim.beta1, optim.beta2))),
        "llm_sweep": llm_sweep_step(ours, ours_optimizer, hook),
    }
    tokens = torch.randint(config.vocab_size, (args.batch_size, args.seq_len + 1))
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(args.rounds + 1):  # round 0 warms up both
        for name in sorted(steps, reverse=round_ % 2 == 1):  # who goes first alternates
            start = time.perf_counter()
            steps[name](x, y)
            if round_:
                times[name].append(time.perf_counter() - start)

    print(f"{config.name}: {ours.num_params():,} params, {args.batch_size} x {args.seq_len} tokens, "
          f"fp32 eager, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, seconds in times.items():
        print(f"{name:10s} median {1000 * statistics.median(seconds):7.1f} ms  "
              f"best {1000 * min(seconds):7.1f} ms per step")
    ratio = statistics.median(times["textbook"]) / statistics.median(times["llm_sweep"])
    print(f"llm_sweep is {ratio:.2f}x the textbook speed (ratio of medians)")


if __name__ == "__main__":
    main()
