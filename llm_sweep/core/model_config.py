"""The `model` config group: one dataclass shared by both architectures.

`parametrization` says how initialization, learning rates and multipliers follow the shape
(llm_sweep.models.parametrization): `sp`, the standard one; `mup`, whose best learning rate
and init do not move with width (Yang et al. 2022, "Tensor Programs V"); `completep`, which
also keeps them across depth (Dey et al. 2025, "Don't be lazy: CompleteP enables
compute-efficient deep transformers"). `base_width` (and `base_depth` for completep) name the
proxy shape the hyperparameters were tuned at; at that shape both reduce to `sp`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

from llm_sweep.core.rules import rule

ARCHS = ("gpt2", "llama")
SP, MUP, COMPLETEP = "sp", "mup", "completep"
PARAMETRIZATIONS = (SP, MUP, COMPLETEP)
VOCAB_MULTIPLE = 64  # embedding and LM-head rows padded to this, for efficient matmuls
GPT2_TOKEN_IDS = 50257  # the default tokenizer's (data.tokenizer=gpt2), for configs without data


def _heads_divide_width(m: "ModelConfig", p: str) -> Optional[str]:
    if m.n_head is None and m.n_embd % m.head_dim:
        return (f"{p}n_embd={m.n_embd} is not a multiple of {p}head_dim={m.head_dim} "
                f"(with {p}n_head=null, heads = n_embd / head_dim)")
    if m.n_head is not None and m.n_embd % m.n_head:
        return f"{p}n_embd={m.n_embd} is not divisible by {p}n_head={m.n_head}"
    return None


def _head_size(m: "ModelConfig", p: str) -> Optional[str]:
    # A multiple of 8 is also even, as rotary embeddings (llama) need.
    size = m.n_embd // m.heads
    if size % 8 == 0:
        return None
    given = (f"{p}head_dim={m.head_dim}" if m.n_head is None
             else f"{p}n_embd={m.n_embd} / {p}n_head={m.n_head}")
    return f"{given} is a head size of {size}, not allowed: must be a multiple of 8"


def _base_shape_given(m: "ModelConfig", p: str) -> Optional[str]:
    needs = {"mup": ("base_width",), "completep": ("base_width", "base_depth")}.get(m.parametrization, ())
    for key in needs:
        if getattr(m, key) is None:
            what = "n_embd" if key == "base_width" else "n_layer"
            return (f"{p}{key} is required with {p}parametrization={m.parametrization}: "
                    f"a positive int, the {what} of the proxy the hyperparameters were tuned at")
    return None


@dataclass
class ModelConfig:
    name: str = "custom"  # preset name, shown in run names and reports
    arch: str = field(default="llama", metadata=rule(choices=ARCHS))
    n_layer: int = field(default=2, metadata=rule(ge=1))
    n_head: Optional[int] = field(default=None, metadata=rule(ge=1))  # None: n_embd // head_dim
    n_embd: int = field(default=256, metadata=rule(ge=8))
    head_dim: int = field(default=64, metadata=rule(ge=8))
    # None: the tokenizer's ids padded to a multiple of 64 (gpt2: 50304, bytes: 320), set by
    # load_config from data.tokenizer (see with_vocab_size); else at least the tokenizer's.
    vocab_size: Optional[int] = field(default=None, metadata=rule(ge=1))
    max_seq_len: int = field(default=1024, metadata=rule(ge=1))
    dropout: float = field(default=0.0, metadata=rule(ge=0, lt=1))
    weight_tying: bool = True
    multiple_of: int = field(default=256, metadata=rule(ge=1))  # SwiGLU hidden size is rounded up to this
    rmsnorm_eps: float = field(default=1e-5, metadata=rule(gt=0))

    # How init, per-layer learning rates and multipliers follow the shape: sp | mup | completep.
    parametrization: str = field(default=SP, metadata=rule(choices=PARAMETRIZATIONS))
    # The n_embd (mup, completep) and n_layer (completep) the hyperparameters were tuned at.
    # Required where used, never guessed: a wrong base silently moves every learning rate.
    # sp ignores both, and mup ignores base_depth, so one sweep can compare parametrizations.
    base_width: Optional[int] = field(default=None, metadata=rule(ge=1))
    base_depth: Optional[int] = field(default=None, metadata=rule(ge=1))
    # The constants the parametrization carries from the base shape to every other, tuned at
    # the base (the defaults are sp's, so they change nothing unless set): the logits'
    # multiplier (muP's output multiplier; mup/completep divide it by n_embd / base_width),
    # the attention logits' multiplier (on q.k / sqrt(d) at the base head size), and the
    # init std of every weight (hidden matrices by fan-in under mup/completep).
    output_mult: float = field(default=1.0, metadata=rule(gt=0))
    attn_mult: float = field(default=1.0, metadata=rule(gt=0))
    init_std: float = field(default=0.02, metadata=rule(gt=0))
    # Where the base's lr and constants come from: the study that tuned them, as the overlay
    # a tuning sweep writes sets it (+mup=base_cpu: mup_base_cpu). None: not known to be
    # tuned. Reports say which comparisons rest on a tuned base (llm_sweep/report).
    base_tuned_by: Optional[str] = None

    cross_field_rules = (_heads_divide_width, _head_size, _base_shape_given)  # not a field: no annotation

    @property
    def heads(self) -> int:
        """The number of attention heads, derived from head_dim when n_head is unset."""
        return self.n_head if self.n_head is not None else self.n_embd // self.head_dim

    @property
    def mlp_hidden(self) -> int:
        """MLP width: 4 x n_embd for GPT-2. SwiGLU has three matrices instead of two, so
        it keeps the parameter count with 2/3 of that width, rounded up to multiple_of."""
        if self.arch == "gpt2":
            return 4 * self.n_embd
        hidden = int(2 * 4 * self.n_embd / 3)
        return -(-hidden // self.multiple_of) * self.multiple_of


def parametrization_label(m: ModelConfig | Any) -> str:
    """`sp`, `mup (base width 256)`, `completep (base 2 x 256)`: what plan and reports show,
    of a model config or of anything with its three fields (a report's run row)."""
    if m.parametrization == MUP:
        return f"mup (base width {m.base_width})"
    if m.parametrization == COMPLETEP:
        return f"completep (base {m.base_depth} x {m.base_width})"
    return m.parametrization


def padded_vocab(token_ids: int) -> int:
    """The vocabulary for a tokenizer of `token_ids` ids, rounded up to VOCAB_MULTIPLE."""
    return -(-token_ids // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def with_vocab_size(config: ModelConfig, token_ids: int = GPT2_TOKEN_IDS) -> ModelConfig:
    """`config` with vocab_size an int: as set, else the tokenizer's `token_ids` padded
    (by default GPT-2's, for a config built without a data config)."""
    if config.vocab_size is not None:
        return config
    return replace(config, vocab_size=padded_vocab(token_ids))
