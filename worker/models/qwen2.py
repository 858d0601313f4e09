"""Qwen2's model math for the fast decoder (Qwen2.5-Coder): RMSNorm, RoPE with the config's ``rope_theta``,
grouped-query attention whose q, k and v projections have biases, a SwiGLU MLP, two norms a layer, and a tied or
untied LM head (whatever ``lm_head`` holds). Layers the config marks as sliding attend within its window.

Computed exactly as transformers' ``Qwen2ForCausalLM`` does (tests/worker/test_fast_decode_qwen2.py holds it to
``generate``); q, k and v run in one matmul, gate and up in another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mafioso.worker.models.common import Layer, apply_rope, default_rope, fuse, read_decoder

MODEL_TYPE = "qwen2"


def supports(cfg) -> bool:
    """Whether this maths computes the model of text config ``cfg``: Qwen2 with SiLU and default RoPE."""
    return (getattr(cfg, "model_type", "") == MODEL_TYPE and cfg.hidden_act == "silu"
            and cfg.rope_parameters.get("rope_type", "default") == "default")


class Qwen2:
    """The forward pieces of a (merged, unquantized) ``Qwen2ForCausalLM`` on one device."""

    def __init__(self, model):
        core = read_decoder(self, model, supports,
                            "the Qwen2 fast path supports Qwen2 models with SiLU and default RoPE only")
        cfg = self.cfg
        self.scaling = self.head_dim ** -0.5
        self.final_norm = core.norm.weight.detach()
        self.layers = []
        for kind, layer in zip(cfg.layer_types, core.layers):
            attn, mlp = layer.self_attn, layer.mlp
            wqkv, bqkv = fuse(attn.q_proj, attn.k_proj, attn.v_proj)
            gate_up, _ = fuse(mlp.gate_proj, mlp.up_proj)
            self.layers.append(Layer(rope="default", window=cfg.sliding_window if kind == "sliding_attention" else None,
                                     weights={
                "wqkv": wqkv, "bqkv": bqkv, "wo": attn.o_proj.weight,
                "in_norm": layer.input_layernorm.weight.detach(),
                "post_attn_norm": layer.post_attention_layernorm.weight.detach(),
                "gate_up": gate_up, "down": mlp.down_proj.weight,
            }))

    def rope_tables(self, max_len: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """One RoPE table for every layer."""
        return {"default": default_rope(self.cfg.rope_parameters, self.head_dim, max_len, self.device, self.dtype)}

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # Qwen2RMSNorm: normalised in fp32, cast back, then scaled by the weight (in the weight's dtype)
        xf = x.float()
        return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings (unscaled)."""
        return F.embedding(tokens, self.embed_weight)

    def qkv(self, x: torch.Tensor, layer: Layer, cos: torch.Tensor, sin: torch.Tensor):
        """Input norm, q/k/v projections with their biases, RoPE."""
        w = layer.weights
        h = self._norm(x, w["in_norm"])
        lead = h.shape[:-1]
        q, k, v = F.linear(h, w["wqkv"], w["bqkv"]).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = apply_rope(q.reshape(*lead, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(k.reshape(*lead, self.n_kv, self.head_dim), cos, sin)
        return q, k, v.reshape(*lead, self.n_kv, self.head_dim)

    def finish(self, x: torch.Tensor, layer: Layer, attn: torch.Tensor) -> torch.Tensor:
        """Output projection and residual; post-attention norm, SwiGLU MLP, residual."""
        w = layer.weights
        x = x + F.linear(attn, w["wo"])
        gate, up = F.linear(self._norm(x, w["post_attn_norm"]), w["gate_up"]).split(self.ff_size, dim=-1)
        return x + F.linear(F.silu(gate) * up, w["down"])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, LM head, fp32."""
        return F.linear(self._norm(x, self.final_norm), self.lm_head).float()
