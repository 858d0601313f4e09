"""What every architecture's model math shares: the interface the fast decoder calls, fused projections, RoPE.

The fast decoder (:mod:`mafioso.worker.fast_decode`) owns the KV cache, the attention over it, CUDA graphs and
scheduling; an architecture's module (``gemma3.py``, ``qwen2.py``) owns only the maths on either side of the
attention: the embedding, a layer's queries, keys and values before it, everything after it, and the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Layer:
    """One decoder layer as the fast decoder sees it: its weights (read only by the architecture's maths), the
    RoPE table it reads, and its attention window (None: it attends to every earlier position)."""

    weights: dict[str, torch.Tensor]
    rope: str
    window: int | None


class DecoderModel(Protocol):
    """The model math of one architecture, on the (merged, unquantized) weights of a transformers model.

    Shapes: ``x`` is the hidden state (..., hidden); ``q`` (..., n_heads, head_dim), ``k`` and ``v``
    (..., n_kv, head_dim); ``attn`` the attention's output with the heads flattened (..., n_heads * head_dim).
    """

    device: torch.device
    dtype: torch.dtype
    n_heads: int
    n_kv: int
    head_dim: int
    scaling: float  # the attention scores' factor
    vocab: int
    layers: list[Layer]

    def rope_tables(self, max_len: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """RoPE cos and sin (max_len, head_dim) for positions [0, max_len), per table a layer names."""

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """The hidden state of ``tokens`` before the first layer."""

    def qkv(self, x: torch.Tensor, layer: Layer, cos: torch.Tensor,
            sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A layer's queries, keys and values of ``x``, RoPE applied at the positions of ``cos``/``sin``."""

    def finish(self, x: torch.Tensor, layer: Layer, attn: torch.Tensor) -> torch.Tensor:
        """The layer's output: ``x`` with the attention's output projected and the MLP added."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The next-token logits (fp32) of the last layer's hidden state."""


def read_decoder(arch, model, supports, refusal: str):
    """Check ``model``'s text config with ``supports`` (ValueError ``refusal`` if it fails), set on ``arch`` what
    every architecture reads the same way (cfg, device, dtype, head counts and sizes, eps, embedding, LM head,
    vocab, projection sizes) and return the decoder stack (``embed_tokens``, ``layers``, ``norm``)."""
    cfg = model.config.get_text_config()
    if not supports(cfg):
        raise ValueError(refusal)
    core = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    arch.cfg = cfg
    arch.device, arch.dtype = core.embed_tokens.weight.device, core.embed_tokens.weight.dtype
    arch.n_heads, arch.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    arch.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    arch.eps = cfg.rms_norm_eps
    arch.embed_weight = core.embed_tokens.weight
    arch.lm_head = model.lm_head.weight  # the embedding itself when the config ties them
    arch.vocab = arch.lm_head.shape[0]
    arch.q_size, arch.kv_size = arch.n_heads * arch.head_dim, arch.n_kv * arch.head_dim
    arch.ff_size = core.layers[0].mlp.gate_proj.weight.shape[0]
    return core


def fuse(*linears: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias, if they have biases) for several projections of the same input; each module's
    weight and bias become views into it, so the model (still used for over-long prompts) and the decoder share
    one copy."""
    biases = [linear.bias is not None for linear in linears]
    if any(biases) and not all(biases):
        raise ValueError("fused projections need a bias on every one or on none")
    fused = torch.cat([linear.weight.detach() for linear in linears])
    bias = torch.cat([linear.bias.detach() for linear in linears]) if all(biases) else None
    if not isinstance(fused, torch.Tensor):  # int8 weights (mafioso.core.cpu_quant): a fused copy, no views
        return fused, bias
    start = 0
    for linear in linears:
        rows = linear.weight.shape[0]
        linear.weight = torch.nn.Parameter(fused[start:start + rows], requires_grad=False)
        if bias is not None:
            linear.bias = torch.nn.Parameter(bias[start:start + rows], requires_grad=False)
        start += rows
    return fused, bias


def default_rope(params: dict, head_dim: int, max_len: int, device: torch.device,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's default kind (``rope_theta`` from the config's rope parameters) for positions
    [0, max_len), computed as transformers does: in fp32, then cast."""
    if params.get("rope_type", "default") != "default":
        raise ValueError(f"the fast decode path supports default RoPE only, not {params['rope_type']}")
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = (1.0 / params["rope_theta"] ** exponent).to(device)
    angles = torch.arange(max_len, device=device).float()[:, None] * inv_freq
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., heads, head_dim) by RoPE; ``cos``, ``sin``: (..., head_dim) for x's positions."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
