"""Gemma 3's model math for the fast decoder: embedding scaled by sqrt(hidden), RMSNorm scaling by ``1 + weight``
in fp32, q/k norms, RoPE per layer kind (sliding and full attention), four norms around attention and a GELU MLP.

Computed exactly as transformers' ``Gemma3ForCausalLM`` does (tests/worker/test_fast_decode.py holds it to
``generate``); q, k and v run in one matmul, gate and up in another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mafioso.worker.models.common import Layer, apply_rope, default_rope, fuse, read_decoder

MODEL_TYPE = "gemma3_text"


def supports(cfg) -> bool:
    """Whether this maths computes the model of text config ``cfg``: plain Gemma 3 text models only."""
    return (getattr(cfg, "model_type", "") == MODEL_TYPE and not cfg.final_logit_softcapping
            and not cfg.attn_logit_softcapping and not getattr(cfg, "use_bidirectional_attention", False)
            and not getattr(cfg, "attention_bias", False))


def _norm_weight(norm: torch.nn.Module) -> torch.Tensor:
    """Gemma's RMSNorm scales by ``1 + weight`` in fp32: precompute it once."""
    return 1.0 + norm.weight.detach().float()


class Gemma3:
    """The forward pieces of a (merged, unquantized) ``Gemma3ForCausalLM`` on one device."""

    def __init__(self, model):
        core = read_decoder(self, model, supports, "the Gemma 3 fast path supports plain Gemma 3 text models only")
        cfg = self.cfg
        self.scaling = cfg.query_pre_attn_scalar ** -0.5
        self.embed_scale = torch.tensor(cfg.hidden_size ** 0.5).to(self.dtype)
        self.final_norm = _norm_weight(core.norm)
        self.layers = []
        for kind, layer in zip(cfg.layer_types, core.layers):
            attn, mlp = layer.self_attn, layer.mlp
            wqkv, _ = fuse(attn.q_proj, attn.k_proj, attn.v_proj)  # bias-free (supports() checks)
            gate_up, _ = fuse(mlp.gate_proj, mlp.up_proj)
            self.layers.append(Layer(rope=kind, window=cfg.sliding_window if kind == "sliding_attention" else None,
                                     weights={
                # q, k and v in one matmul, gate and up in another: fewer, larger kernels per step
                "wqkv": wqkv,
                "wo": attn.o_proj.weight, "q_norm": _norm_weight(attn.q_norm), "k_norm": _norm_weight(attn.k_norm),
                "in_norm": _norm_weight(layer.input_layernorm),
                "post_attn_norm": _norm_weight(layer.post_attention_layernorm),
                "pre_ff_norm": _norm_weight(layer.pre_feedforward_layernorm),
                "post_ff_norm": _norm_weight(layer.post_feedforward_layernorm),
                "gate_up": gate_up, "down": mlp.down_proj.weight,
            }))

    def rope_tables(self, max_len: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """RoPE cos/sin per layer kind: sliding and full attention layers have their own theta."""
        return {kind: default_rope(self.cfg.rope_parameters[kind], self.head_dim, max_len, self.device, self.dtype)
                for kind in dict.fromkeys(layer.rope for layer in self.layers)}

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * weight).type_as(x)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings scaled by sqrt(hidden), in the model's dtype."""
        return F.embedding(tokens, self.embed_weight) * self.embed_scale

    def qkv(self, x: torch.Tensor, layer: Layer, cos: torch.Tensor, sin: torch.Tensor):
        """Input norm, q/k/v projections, q/k norms, RoPE."""
        w = layer.weights
        h = self._norm(x, w["in_norm"])
        lead = h.shape[:-1]
        q, k, v = F.linear(h, w["wqkv"]).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = apply_rope(self._norm(q.reshape(*lead, self.n_heads, self.head_dim), w["q_norm"]), cos, sin)
        k = apply_rope(self._norm(k.reshape(*lead, self.n_kv, self.head_dim), w["k_norm"]), cos, sin)
        return q, k, v.reshape(*lead, self.n_kv, self.head_dim)

    def finish(self, x: torch.Tensor, layer: Layer, attn: torch.Tensor) -> torch.Tensor:
        """Output projection, post-attention norm, residual; pre-FF norm, GELU MLP, post-FF norm, residual."""
        w = layer.weights
        x = x + self._norm(F.linear(attn, w["wo"]), w["post_attn_norm"])
        gate, up = F.linear(self._norm(x, w["pre_ff_norm"]), w["gate_up"]).split(self.ff_size, dim=-1)
        mlp = F.linear(F.gelu(gate, approximate="tanh") * up, w["down"])
        return x + self._norm(mlp, w["post_ff_norm"])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, LM head, fp32."""
        return F.linear(self._norm(x, self.final_norm), self.lm_head).float()
