"""Building blocks shared by both architectures, and the language-model base class.

No Linear has a bias. Residual output projections are named `out_proj` in attention and
in both MLPs: that name is what `CausalLM.init_weights` scales down, and what the
Hugging Face export maps. The multipliers of the parametrization (attention scale, residual
branch, logits; llm_sweep.models.parametrization) are Python floats fixed at construction:
1.0 (or None) skips them, and a compiled graph holds them as constants.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.size import flops_per_token, param_count
from llm_sweep.models.parametrization import init_std, logit_multiplier, residual_init_std

Rope = tuple[Tensor, Tensor]  # (cos, sin), each (T, head_size / 2), fp32
# Logits per chunk of the memory-bounded fused loss: about 2^26 fp32 values (256 MB) bound its
# working memory at any batch size, while each chunk's matmuls stay large enough to run fast.
LOSS_CHUNK_LOGITS = 2**26
# `linear_cross_entropy(chunks=None)` by device type; a type not listed is memory-bounded.
# CUDA: one chunk per micro-batch (its bf16 logits fit easily, and each further chunk is one
# more read-modify-write of the fp32 (V, C) weight gradient). CPU: memory-bounded. On tiny at
# the cpu batch (2,048 rows, eager fp32, 2 cores) plain, one chunk and two chunks ran within
# noise of each other (median step 639, 660, 665 tokens/s): the head's matmuls dominate, so
# the setting holding the least memory wins.
DEFAULT_LOSS_CHUNKS: dict[str, Optional[int]] = {"cuda": 1}


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in fp32 and cast back to the input dtype, so a
    bf16 activation is normalized as precisely as an fp32 one."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def rotary_tables(max_seq_len: int, head_size: int, theta: float = 10000.0) -> Rope:
    """cos and sin of the angle position * theta^(-2i / head_size), each (max_seq_len, head_size / 2)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (..., T, head_size) with the "rotate-half" pairing: dimension i is paired
    with i + head_size / 2 (Hugging Face Llama's convention, so export copies q and k
    unchanged). Real arithmetic only, in fp32, so it compiles into one fused kernel."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return rotated.type_as(x)


def _matmul_dtype(x: Tensor) -> torch.dtype:
    """The dtype a matmul of x runs in here: autocast's, else x's own."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def loss_chunk_rows(n_rows: int, vocab_size: int) -> int:
    """Rows per chunk: as few equal chunks as LOSS_CHUNK_LOGITS allows, rounded up to 64 rows."""
    n_chunks = -(-n_rows * vocab_size // LOSS_CHUNK_LOGITS)
    rows = -(-n_rows // n_chunks)
    return min(n_rows, -(-rows // 64) * 64)


def _rows_per_chunk(n_rows: int, vocab_size: int, chunks: Optional[int]) -> int:
    """`chunks` equal pieces of the rows (the last may be shorter); None: memory-bounded."""
    if chunks is None:
        return loss_chunk_rows(n_rows, vocab_size)
    return max(1, -(-n_rows // chunks))


def _chunked_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, scale: float, rows: int,
                           with_grads: bool) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Mean cross-entropy of scale * hidden (N, C) @ weight (V, C).T against targets (N,), and
    with with_grads its gradients for hidden and weight, `rows` rows at a time."""
    n = hidden.size(0)
    dtype = _matmul_dtype(hidden)
    h, w = hidden.to(dtype), weight.to(dtype)
    vocab = torch.arange(weight.size(0), device=hidden.device)
    loss = torch.zeros((), device=hidden.device, dtype=torch.float32)
    grad_hidden: list[Tensor] = []
    grad_weight: Optional[Tensor] = None
    for start in range(0, n, rows):
        h_chunk, t_chunk = h[start:start + rows], targets[start:start + rows, None]
        logits = (h_chunk @ w.t()).float()  # (rows, V)
        if scale != 1.0:
            logits.mul_(scale)  # the readout multiplier, on the fp32 logits
        target_logits = logits.gather(1, t_chunk)
        row_max = logits.amax(dim=-1, keepdim=True)
        exp = logits.sub_(row_max).exp_()  # in place: the chunk's one (rows, V) fp32 buffer
        sum_exp = exp.sum(dim=-1, keepdim=True)
        loss += (sum_exp.log() + row_max - target_logits).sum()
        if with_grads:
            # d loss / d (h @ w.T) = scale * (softmax - one_hot(target)) / N. The one-hot is a
            # comparison with the vocabulary ids, not a scatter: compiled, the whole expression
            # is one elementwise pass that writes the gradient straight in the matmul dtype.
            grad = exp.mul_((sum_exp * (n / scale)).reciprocal_()).add_(vocab == t_chunk, alpha=-scale / n)
            grad = grad.to(dtype)
            grad_hidden.append(grad @ w)
            part = grad.t() @ h_chunk  # (V, C)
            grad_weight = part.float() if grad_weight is None else grad_weight.add_(part)
    if not with_grads:
        return loss / n, None, None
    whole = grad_hidden[0] if len(grad_hidden) == 1 else torch.cat(grad_hidden)
    return loss / n, whole.to(hidden.dtype), grad_weight


class _LinearCrossEntropy(torch.autograd.Function):
    """The LM head and its loss in one op: the gradients are computed in the forward pass,
    chunk by chunk, so the (N, V) logits, their fp32 copy, log-softmax and gradient never
    exist whole. The loss is a scalar, so backward only scales the stored gradients."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, scale: float, rows: int) -> Tensor:
        loss, grad_hidden, grad_weight = _chunked_cross_entropy(hidden, weight, targets, scale, rows,
                                                                with_grads=True)
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor) -> tuple[Tensor, Tensor, None, None, None]:
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def default_loss_chunks(device_type: str) -> Optional[int]:
    """What `chunks=None` means on a device type: a chunk count, or None for memory-bounded
    chunks of about LOSS_CHUNK_LOGITS logits each."""
    return DEFAULT_LOSS_CHUNKS.get(device_type)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, scale: float = 1.0,
                         chunks: Optional[int] = None) -> Tensor:
    """F.cross_entropy(scale * hidden @ weight.T, targets) (mean over rows): hidden (N, C),
    weight (V, C), targets (N,), scale the readout's multiplier (1/m_N under mup). Under
    autocast the matmuls run in its dtype and the softmax (and the scale) in fp32, as
    `F.cross_entropy(logits.float(), ...)` does.

    chunks: 0 computes exactly that, on the whole logits, and autograd keeps them for the
    backward pass; k >= 1 fuses head and loss over k equal pieces of the rows, computing the
    gradients in the forward pass: one piece's fp32 logits exist at a time, and nothing of
    size (N, V) is kept for backward; None is the device type's default (default_loss_chunks)."""
    if chunks is None:
        chunks = default_loss_chunks(hidden.device.type)
    if chunks == 0:
        return F.cross_entropy(scaled(F.linear(hidden, weight).float(), scale), targets)
    rows = _rows_per_chunk(hidden.size(0), weight.size(0), chunks)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, scale, rows)
    return _chunked_cross_entropy(hidden, weight, targets, scale, rows, with_grads=False)[0]


def scaled(x: Tensor, multiplier: float) -> Tensor:
    """x * multiplier; x itself when the multiplier is 1 (sp's path stays bit-identical)."""
    return x if multiplier == 1.0 else x * multiplier


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention: one fused qkv projection, then SDPA (flash on CUDA).
    `scale` is the softmax scale; None is SDPA's 1/sqrt(head size)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, scale: Optional[float] = None) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.scale = scale
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.out_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, rope: Optional[Rope] = None) -> Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        qk, v = qkv[:2], qkv[2]  # (2, B, nh, T, hs), (B, nh, T, hs)
        if rope is not None:
            qk = apply_rotary(qk, *rope)  # q and k in one pass
        q, k = qk.unbind(0)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True, scale=self.scale)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.out_proj(y))


class GeluMLP(nn.Module):
    """GPT-2's MLP: Linear, GELU (tanh approximation, as in GPT-2), Linear."""

    def __init__(self, n_embd: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.out_proj = nn.Linear(hidden, n_embd, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.out_proj(F.gelu(self.fc(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """silu(gate) * up, then down. Gate and up share one Linear (`gate_up`, gate rows
    first) so the input is read once."""

    def __init__(self, n_embd: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.gate_up = nn.Linear(n_embd, 2 * hidden, bias=False)
        self.out_proj = nn.Linear(hidden, n_embd, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.drop(self.out_proj(F.silu(gate) * up))


class Block(nn.Module):
    """Pre-norm transformer block: x + r attn(norm(x)), then x + r mlp(norm(x)), with r the
    residual branch multiplier (1 but under completep)."""

    def __init__(self, attn_norm: nn.Module, attn: CausalSelfAttention,
                 mlp_norm: nn.Module, mlp: nn.Module, residual: float = 1.0) -> None:
        super().__init__()
        self.attn_norm, self.attn = attn_norm, attn
        self.mlp_norm, self.mlp = mlp_norm, mlp
        self.residual = residual

    def forward(self, x: Tensor, rope: Optional[Rope] = None) -> Tensor:
        x = x + scaled(self.attn(self.attn_norm(x), rope), self.residual)
        return x + scaled(self.mlp(self.mlp_norm(x)), self.residual)


class CausalLM(nn.Module):
    """What both architectures share: the LM head and loss, sampling, parameter and
    FLOP counts, and GPT-2 initialization scaled by the parametrization. A subclass defines
    `tok_emb`, `blocks`, `norm`, `lm_head` and `features(idx)`, the final normalized hidden
    states; the logits are `logit_multiplier` x lm_head(features)."""

    tok_emb: nn.Embedding
    lm_head: nn.Linear

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # The training loss's `chunks` (linear_cross_entropy): None is the device's default.
        self.loss_chunks: Optional[int] = None
        self.logit_multiplier = logit_multiplier(config)

    def features(self, idx: Tensor) -> Tensor:
        raise NotImplementedError

    def position_table(self) -> Optional[nn.Parameter]:
        """The learned position-embedding table, if the architecture has one."""
        return None

    def forward(self, idx: Tensor, targets: Optional[Tensor] = None, return_logits: bool = True
                ) -> Tensor | tuple[Optional[Tensor], Tensor]:
        """Logits (B, T, V) of idx (B, T); with targets, (logits, mean cross-entropy in fp32).
        With targets and return_logits=False, (None, loss): the training path, head and loss
        as `self.loss_chunks` says (fused, it never holds the (B, T, V) logits)."""
        if idx.size(1) > self.config.max_seq_len:
            raise ValueError(f"sequence length {idx.size(1)} exceeds max_seq_len={self.config.max_seq_len}")
        hidden = self.features(idx)  # (B, T, C)
        if targets is not None and not return_logits:
            return None, linear_cross_entropy(hidden.flatten(0, 1), self.lm_head.weight, targets.flatten(),
                                              self.logit_multiplier, chunks=self.loss_chunks)
        logits = scaled(self.lm_head(hidden), self.logit_multiplier)  # (B, T, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    def init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02) for Linear and Embedding weights; residual output
        projections N(0, 0.02 / sqrt(2 n_layer)) so the residual stream's variance
        does not grow with depth. Norm weights keep their ones. Under mup and completep
        the matrices inside blocks take their fan-in's share (models.parametrization);
        the draws come in sp's order, so sp's weights are the same numbers as ever."""
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = init_std(self.config, module.weight, is_hidden=name.startswith("blocks."))
                nn.init.normal_(module.weight, mean=0.0, std=std)
        for name, param in self.named_parameters():
            if name.endswith("out_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_init_std(self.config, param))

    def tie_weights(self) -> None:
        self.lm_head.weight = self.tok_emb.weight

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, tied weights once (see models.size.param_count)."""
        return param_count(self.config, non_embedding)

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token (see models.size.flops_per_token)."""
        return flops_per_token(self.config, seq_len)

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: Optional[int] = None) -> Tensor:
        """Append max_new_tokens sampled tokens to idx (B, T); the context is cropped to
        the last max_seq_len tokens. Call model.eval() first to disable dropout."""
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.max_seq_len:]
            logits = self.lm_head(self.features(context)[:, -1]).float()
            logits = scaled(logits, self.logit_multiplier) / temperature
            if top_k is not None:
                kth_largest = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth_largest, float("-inf"))
            next_token = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, next_token), dim=1)
        return idx
