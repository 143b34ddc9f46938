"""How initialization, per-parameter learning rates and forward multipliers follow the shape.

`model.parametrization` (core.model_config) picks the rules; m_N = n_embd / base_width and
m_L = n_layer / base_depth measure the shape against the proxy the hyperparameters were
tuned at. The sources, cited at each rule:

  [TP5] Yang et al. 2022, "Tensor Programs V", Table 3 and its Table 8 form with an output
        multiplier; Section on attention (logits q.k / d instead of q.k / sqrt(d)).
  [mup] microsoft/mup: MuReadout (readout input times output_mult / width_mult), MuAdam
        (hidden lr / width_mult, weight decay x width_mult unless decoupled; width_mult is a
        parameter's fan_in / base fan_in), set_base_shapes (base shape == standard model).
  [CP]  Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep
        transformers", Table 1 (pre-LN transformer; alpha = 1 is CompleteP).

| layer kind              | sp          | mup                          | completep (alpha = 1)             |
| ----------------------- | ----------- | ---------------------------- | --------------------------------- |
| embeddings              | N(0, s)     | unchanged                    | unchanged                         |
| hidden matrices init    | N(0, s)     | std s / sqrt(m_fan_in)       | same                              |
| residual out_proj init  | s/sqrt(2L)  | s / sqrt(2 L m_fan_in)       | s / sqrt(2 L_base m_fan_in)       |
| readout (untied) init   | N(0, s)     | unchanged                    | unchanged                         |
| hidden Adam lr          | lr          | lr / m_fan_in                | lr / m_fan_in (x m_L^(alpha-1))   |
| hidden weight decay     | wd          | wd x m_fan_in                | wd x m_fan_in                     |
| Adam eps, block params  | eps         | eps / m_N                    | eps / m_N / m_L^alpha             |
| logits                  | h W^T       | h W^T / m_N                  | h W^T / m_N                       |
| attention softmax scale | 1/sqrt(d)   | sqrt(d_base) / d             | sqrt(d_base) / d                  |
| residual branches       | x + f(x)    | x + f(x)                     | x + f(x) / m_L^alpha              |

At the base shape (n_embd == base_width, and n_layer == base_depth for completep) every
factor is exactly 1 and each rule is skipped, so the model, its loss and its optimizer are
bit-identical to sp's. Norm gains, the final norm and every embedding keep sp's lr.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

from torch import Tensor, nn

from llm_sweep.core.model_config import ModelConfig

DEPTH_ALPHA = 1.0  # [CP]: residual branches scaled by m_L^-alpha; alpha = 1 is CompleteP


def width_mult(config: ModelConfig) -> float:
    """m_N = n_embd / base_width; 1 under sp, which has no base."""
    if config.parametrization == "sp":
        return 1.0
    return config.n_embd / config.base_width


def depth_mult(config: ModelConfig) -> float:
    """m_L = n_layer / base_depth under completep; 1 otherwise (mup does not scale depth)."""
    if config.parametrization != "completep":
        return 1.0
    return config.n_layer / config.base_depth


def fan_in_mult(config: ModelConfig, fan_in: int) -> float:
    """A hidden matrix's fan_in over its fan_in at the base width: [mup]'s width_mult. For
    matrices reading the residual stream this is m_N; a SwiGLU down projection reads the MLP
    width, which multiple_of rounds, so it gets its own ratio."""
    if config.parametrization == "sp":
        return 1.0
    base = replace(config, n_embd=config.base_width)
    base_fan_in = {config.n_embd: base.n_embd, config.mlp_hidden: base.mlp_hidden}[fan_in]
    return fan_in / base_fan_in


def logit_multiplier(config: ModelConfig) -> float:
    """The readout's output_mult / m_N ([TP5] Table 8 output multiplier 1/fan_in, anchored at
    the base width as [mup]'s MuReadout is, times its output_mult; [CP] Table 1 "Unembed
    Fwd.")."""
    return config.output_mult / width_mult(config)


def residual_multiplier(config: ModelConfig) -> float:
    """m_L^-alpha on each attention and MLP branch ([CP] Table 1 "MHA/MLP Residual")."""
    return depth_mult(config) ** -DEPTH_ALPHA


def attention_scale(config: ModelConfig) -> Optional[float]:
    """The attention softmax scale; None is SDPA's own 1/sqrt(d) (d: head size).

    [TP5] scales attention logits by 1/d so they stay O(1) once q and k correlate; anchored
    at the base as sqrt(d_base) / d, which is 1/sqrt(d) at d == d_base (as [mup]'s README
    writes 8/d, equal to 1/sqrt(64) at d = 64). The head size grows with width only when
    n_head is fixed; with n_head null the heads multiply at head_dim, d stays d_base and the
    scale stays SDPA's. attn_mult multiplies it under every parametrization."""
    head_size = config.n_embd / config.heads
    if config.parametrization == "sp" or config.n_head is None:
        base_head_size = head_size
    else:
        base_head_size = config.base_width / config.n_head
    if head_size == base_head_size and config.attn_mult == 1.0:
        return None
    return config.attn_mult * math.sqrt(base_head_size) / head_size


def init_std(config: ModelConfig, weight: nn.Parameter, is_hidden: bool) -> float:
    """The std of a Linear or Embedding weight before the residual rule: hidden matrices by
    fan-in (variance sigma^2 / m_fan_in: [TP5] Table 3 "hidden weights 1/fan_in", [CP] Table
    1 "Hidden Init. Var."); embeddings and the readout keep sigma_base ([TP5] Table 8 and [CP]
    Table 1: the 1/m_N of the logits is a multiplier, not an init)."""
    if not is_hidden:
        return config.init_std
    return config.init_std / math.sqrt(fan_in_mult(config, weight.size(1)))


def residual_init_std(config: ModelConfig, weight: nn.Parameter) -> float:
    """A residual output projection's std: GPT-2's sigma / sqrt(2 n_layer), by fan-in as any
    hidden matrix. Under completep the depth in it is the base depth: its init variance must
    not depend on n_layer ([CP] Table 1), the branch multiplier handles depth, and at the
    base shape it is sp's."""
    layers = config.base_depth if config.parametrization == "completep" else config.n_layer
    return config.init_std / math.sqrt(2 * layers * fan_in_mult(config, weight.size(1)))


@dataclass(frozen=True)
class GroupScales:
    """Factors on the optimizer's lr, weight decay and Adam eps for one kind of parameter."""

    lr: float = 1.0
    weight_decay: float = 1.0
    eps: float = 1.0


def optimizer_scales(config: ModelConfig, name: str, param: nn.Parameter) -> GroupScales:
    """Adam-family factors for parameter `name` (its state_dict key).

    Hidden matrices (every 2-D weight in a block): lr / m_fan_in ([TP5] Table 3 Adam LR
    1/fan_in; [mup] MuAdam) and weight decay x m_fan_in, so AdamW's decay per step, lr x wd,
    does not move with width ([mup] MuAdam without decoupled_wd; [CP] Table 1 "Hidden WD").
    Adam eps / m_N on every block parameter, / m_L^alpha more under completep ([CP] Table 1
    "AdamW eps (residual blocks)"): gradients there shrink as 1/m_N and eps must stay below
    them. Depth leaves block lrs alone at alpha = 1 ([CP] m_L^(alpha-1) = 1). Embeddings,
    the readout and the final norm keep every base value ([CP] Table 1)."""
    if not name.startswith("blocks."):
        return GroupScales()
    eps = 1.0 / (width_mult(config) * depth_mult(config) ** DEPTH_ALPHA)
    depth_lr = depth_mult(config) ** (DEPTH_ALPHA - 1)
    if param.dim() < 2:
        return GroupScales(lr=depth_lr, eps=eps)
    fan_in = fan_in_mult(config, param.size(1))
    return GroupScales(lr=depth_lr / fan_in, weight_decay=fan_in, eps=eps)


def folded_state(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """The weights of a standard (sp) model that computes exactly this model's logits, for
    a checkpoint format without multipliers (Hugging Face's). Every multiplier here folds:

    - logits x 1/m_N into the final norm's gain (logits = norm(x) W^T is linear in the gain),
      not into the head, which may be the embedding itself (weight tying);
    - residual branches x m_L^-alpha into each branch's output projection (the branch ends
      in that bias-free Linear), tied weights or not;
    - the attention scale s into the query rows of qkv, x s sqrt(d), so that the standard
      1/sqrt(d) gives s q.k (rotary embeddings rotate q linearly, so they commute).
    `state` is left as it is; the model's own checkpoints keep the unfolded weights."""
    folded = dict(state)
    if logit_multiplier(config) != 1.0:
        folded["norm.weight"] = state["norm.weight"] * logit_multiplier(config)
    residual = residual_multiplier(config)
    scale = attention_scale(config)
    for i in range(config.n_layer):
        prefix = f"blocks.{i}."
        if residual != 1.0:
            for key in ("attn.out_proj.weight", "mlp.out_proj.weight"):
                folded[prefix + key] = state[prefix + key] * residual
        if scale is not None:
            qkv = state[prefix + "attn.qkv.weight"].clone()  # rows: q, k, v
            qkv[:config.n_embd] *= scale * math.sqrt(config.n_embd / config.heads)
            folded[prefix + "attn.qkv.weight"] = qkv
    return folded
