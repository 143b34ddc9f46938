"""SophiaG: Sophia with the Gauss-Newton-Bartlett Hessian estimate (Liu et al., 2023)."""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_sweep.models.build import unwrap
from llm_sweep.models.layers import loss_chunk_rows
from llm_sweep.optim.hooks import Autocast, OptimizerHook

_TINY = 1e-15  # keeps the ratio finite where the Hessian estimate is still zero


class SophiaG(torch.optim.Optimizer):
    """Clipped, Hessian-preconditioned momentum.

    Every coordinate moves by at most `lr` per step:
        p <- p * (1 - lr * weight_decay)
        m <- beta1 * m + (1 - beta1) * g
        p <- p - lr * clip(m / (rho * bs * h + 1e-15), -1, 1)
    where `h` is an EMA (beta2) of the diagonal Hessian estimate, refreshed by
    `update_hessian()` every few steps (see `SophiaHessianHook`), and `bs` is the
    number of tokens in the batch that produced `g`.

    `win_rate` is the fraction of coordinates whose last update was not clipped,
    kept as a 0-d tensor on the parameters' device so reading it costs no host sync.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.965, 0.99), rho: float = 0.04,
                 weight_decay: float = 0.1, *, maximize: bool = False):
        if lr < 0:
            raise ValueError(f"SophiaG: lr={lr} must be >= 0")
        if not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"SophiaG: betas={betas} must be in [0, 1)")
        if rho < 0:
            raise ValueError(f"SophiaG: rho={rho} must be >= 0")
        if weight_decay < 0:
            raise ValueError(f"SophiaG: weight_decay={weight_decay} must be >= 0")
        defaults = dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)
        self.win_rate = torch.tensor(float("nan"))  # NaN until the first step

    def _param_state(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state[p]
        if not state:
            # A CPU float step counter, as torch's own optimizers keep it: no device sync.
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def update_hessian(self) -> None:
        """Folds the squared current gradients into the Hessian EMA."""
        for group in self.param_groups:
            beta2 = group["betas"][1]
            for p in group["params"]:
                if p.grad is None:
                    continue
                hessian = self._param_state(p)["hessian"]
                hessian.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None, *, bs: int) -> Optional[float]:
        """One update; `bs` is the number of tokens behind the current gradients."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        unclipped: list[Tensor] = []
        numel = 0
        for group in self.param_groups:
            lr, rho, decay = group["lr"], group["rho"], group["weight_decay"]
            beta1 = group["betas"][0]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = -p.grad if group["maximize"] else p.grad
                state = self._param_state(p)
                state["step"] += 1
                p.mul_(1 - lr * decay)
                exp_avg = state["exp_avg"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                ratio = exp_avg.abs().div_(state["hessian"] * (rho * bs) + _TINY)
                unclipped.append((ratio < 1).sum())
                numel += ratio.numel()
                p.addcmul_(exp_avg.sign(), ratio.clamp_(max=1), value=-lr)
        if numel:
            self.win_rate = torch.stack(unclipped).sum() / numel
        return loss


def sample_next_tokens(hidden: Tensor, weight: Tensor, seeds: Optional[Sequence[int]] = None,
                       scale: float = 1.0) -> Tensor:
    """One token id per row of hidden (N, C), drawn from softmax(scale * hidden @ weight.T):
    `scale` is the model's logit multiplier (CausalLM.logit_multiplier).

    Gumbel-max: argmax(logits - log E), E ~ Exp(1) per logit, is distributed as
    Categorical(softmax(logits)); it needs no normalized probabilities and no host sync, and
    runs over rows in chunks of about LOSS_CHUNK_LOGITS logits, so the (N, V) fp32 logits
    never exist whole. Under autocast the logits are rounded as the LM head's are.

    The noise comes from torch's default generator of hidden's device, or, with `seeds`, from
    one generator per equal group of rows seeded by its entry (one per sequence: its labels
    then depend on that sequence alone, not on which process samples it or what it sampled
    before).
    """
    n = hidden.size(0)
    labels = torch.empty(n, dtype=torch.long, device=hidden.device)
    if seeds is None:
        groups = [(0, n, None)]
    else:
        rows = n // len(seeds)
        groups = [(i * rows, rows, torch.Generator(hidden.device).manual_seed(seed))
                  for i, seed in enumerate(seeds)]
    for first, count, generator in groups:
        step = loss_chunk_rows(count, weight.size(0))
        for start in range(first, first + count, step):
            stop = min(start + step, first + count)
            logits = F.linear(hidden[start:stop], weight).float()  # (rows, V)
            if scale != 1.0:
                logits.mul_(scale)
            noise = torch.empty_like(logits).exponential_(generator=generator)
            noise.clamp_min_(torch.finfo(torch.float32).tiny)
            labels[start:stop] = logits.sub_(noise.log_()).argmax(dim=-1)
    return labels


def sequence_seeds(seed: int, step: int, first_row: int, rows: int) -> list[int]:
    """The label-noise seed of each sequence (row) of a micro-batch: a pure function of the
    run's seed, the step and the sequence's row in the step's global micro-batch."""
    step %= 2**64  # the bench's warm-up counts steps below 0
    return [int(np.random.SeedSequence([seed, step, row]).generate_state(1, np.uint64)[0] >> 1)
            for row in range(first_row, first_row + rows)]


class SophiaHessianHook(OptimizerHook):
    """Passes the batch size to `SophiaG.step` and refreshes its Hessian estimate.

    Gauss-Newton-Bartlett: with labels sampled from the model's own predictive
    distribution, the squared gradient of the cross-entropy estimates the diagonal of
    the Gauss-Newton matrix. The gradient of a mean over `bs` tokens carries a 1/bs
    factor, which `SophiaG.step` undoes by scaling the Hessian with `bs`.

    The estimate is taken on the step's last micro-batch, whatever the number of
    processes: over several, those holding its rows (the training loop passes each one's
    `first_row` and `weight`) take the gradient of their rows' loss scaled so that DDP's
    mean over processes is the whole micro-batch's gradient, and the others add zero. With
    labels seeded per sequence (`sequence_seeds`), the estimate is the one process's.

    The model is a CausalLM (`features`, `lm_head`, `forward(idx, targets,
    return_logits=False)`, and `logit_multiplier` where its logits are not plainly
    lm_head(features)) or torch.compile and DDP wrappers of one: the gradient pass goes
    through the wrappers, as a training micro-batch does.
    """

    def __init__(self, optimizer: SophiaG, tokens_per_step: int, hessian_interval: int, seed: int = 0):
        self.optimizer = optimizer
        self.tokens_per_step = tokens_per_step
        self.hessian_interval = hessian_interval
        self.seed = seed

    def step_kwargs(self) -> dict[str, int]:
        return {"bs": self.tokens_per_step}

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, autocast: Autocast,
                   first_row: int = 0, weight: float = 1.0) -> dict[str, Tensor | float]:
        if (step + 1) % self.hessian_interval == 0:
            self._refresh_hessian(step, model, inputs, autocast, first_row, weight)
        return {"optim/win_rate": self.optimizer.win_rate}

    def _refresh_hessian(self, step: int, model: nn.Module, inputs: Tensor, autocast: Autocast,
                         first_row: int, weight: float) -> None:
        """Sample labels in a no-grad pass, then take the gradient of the loss on them
        through the same call as a training micro-batch: a compiled model reuses its
        training graph (no recompilation), and the refresh needs no more memory than a
        training micro-batch plus the sampling's chunk. At the seed's batch (one 64 x 512
        micro-batch, V = 50304, C = 1024, bf16) the sampling holds the features (32768 x
        1024 fp32, 128 MiB) and per chunk of 1344 rows its bf16 logits, their fp32 copy and
        the fp32 noise (about 0.7 GiB); the no-grad pass frees each layer's activations as
        it goes, and no (B*T, V) tensor is ever whole (in fp32 it would be 6.6 GB)."""
        # Gradients left over from the training step must not leak into the estimate.
        self.optimizer.zero_grad(set_to_none=True)
        labels = inputs  # any ids, for a process whose share of the gradient is zero
        if weight:
            module = unwrap(model)  # its own layers, eagerly, outside compile and DDP
            seeds = sequence_seeds(self.seed, step, first_row, inputs.size(0))
            with torch.no_grad(), autocast():
                hidden = module.features(inputs).flatten(0, 1)  # (B*T, C)
                labels = sample_next_tokens(hidden, module.lm_head.weight, seeds,
                                            getattr(module, "logit_multiplier", 1.0)).view_as(inputs)
            del hidden
        with autocast():
            _, loss = model(inputs, labels, return_logits=False)
        (loss * weight).backward()
        self.optimizer.update_hessian()
        self.optimizer.zero_grad(set_to_none=True)
