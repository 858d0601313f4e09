"""int8 weights for answers on a CPU (``MAFIOSO_DTYPE=int8``, issue 21).

Decode on a CPU is bound by reading the weights, and most of Gemma 3 270M's are the LM head (262,144 × 640,
tied to the embedding). Here every linear layer, and the LM head untied from the embedding, keeps its weight as
int8 rows, each with its own fp32 scale (``max |row| / 127``), packed once for fbgemm; each matmul quantizes
its input on the fly, each token's row on its own scale, and runs fbgemm's int8 GEMM with int32 accumulation
(torch's ``quantized::linear_dynamic``, what ``torch.ao.quantization.quantize_dynamic`` builds on). On a 2-core
AVX-512 EPYC the LM head takes 6 ms a token against 24 ms in bf16 and 54 ms in fp32 (docs/BENCHMARKS.md, issue
21). The embedding stays as it is (a lookup reads one row); norms, attention and the KV cache run in fp32.
torch marks its quantized tensors deprecated (2.13 still has them; packing uses one for a moment): a torch that
drops them needs another kernel here.

    model = quantize(model)      # a merged fp32 model: its Linear layers become Int8Linear, in place
    save(model, folder)          # int8 rows and scales (mafioso.core.serving_cache keeps them per settings)
    model = load(folder)         # packs them again in the background, no fp32 weights read

Packing for fbgemm is the slow part of a load (~3 s on 2 cores, most of it the LM head; torch cannot save a
packed weight). So each :class:`Int8Weight` is packed by one background thread, queued when it is made, and a
matmul waits for its own: the tokenizer and the decoder's set-up run meanwhile (packing releases the GIL).

An :class:`Int8Weight` stands where a weight tensor stood for ``F.linear`` (and ``torch.cat``, which the fast
decoder uses to fuse projections), so the fast decode path runs it unchanged. fbgemm is x86 only: elsewhere
:func:`available` is False, ``auto`` never picks int8 and ``MAFIOSO_DTYPE=int8`` is refused.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from mafioso.core.errors import ConfigError

__all__ = ["INT8", "VERSION", "Int8Linear", "Int8Weight", "available", "cast", "check", "is_quantized", "load",
           "quantize", "save"]

#: The ``MAFIOSO_DTYPE`` value (and serving cache key part) for int8 weights.
INT8 = "int8"
#: Bump when the int8 weights are made differently: cached ones are then unused.
VERSION = 1
WEIGHTS_FILE = "int8.safetensors"
ENGINE = "fbgemm"
#: Inputs quantized to 7 bits instead of 8 where the CPU lacks VNNI: without it fbgemm sums pairs of u8 × s8
#: products in int16, which full-range inputs can overflow.
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def available() -> bool:
    """Whether this torch build can run int8 matmuls on this CPU (fbgemm: x86 builds)."""
    return ENGINE in torch.backends.quantized.supported_engines


def check(device: str) -> None:
    """Refuse ``MAFIOSO_DTYPE=int8`` where it cannot run: on a GPU, or with a torch build without fbgemm."""
    if device != "cpu":
        raise ConfigError("MAFIOSO_DTYPE=int8 is for the CPU; on a GPU use MAFIOSO_DTYPE=auto (bf16), or "
                          "MAFIOSO_QUANTIZATION=int8 or nf4 for bitsandbytes weights")
    if not available():
        raise ConfigError(f"MAFIOSO_DTYPE=int8 needs torch's {ENGINE} engine (x86 CPUs), which this torch build "
                          f"lacks ({', '.join(torch.backends.quantized.supported_engines)}); use auto, bfloat16 "
                          "or float32")


def _reduce_range() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # unknown CPU: the safe choice
    return not any(flag in flags.split() for flag in _VNNI_FLAGS)


REDUCE_RANGE = _reduce_range()
_TINY = torch.finfo(torch.float32).tiny


# Packing makes a quantized tensor for a moment, which torch marks deprecated: said once here, not per weight
# (catch_warnings is not thread-safe, and packing runs on its own thread).
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
#: The one thread (per process: a forked child makes its own) that packs and unpacks weights: it alone switches
#: torch's quantized engine to fbgemm (a packed weight keeps its engine), so no other thread sees the switch.
_packer: tuple[int, ThreadPoolExecutor] | None = None
_packer_made = threading.Lock()


def _on_packer(work, *args) -> Future:
    """``work(*args)`` on the packing thread, fbgemm as the engine meanwhile."""
    global _packer
    with _packer_made:
        if _packer is None or _packer[0] != os.getpid():
            _packer = os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="mafioso-int8-pack")

    def run():
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = ENGINE
        try:
            return work(*args)
        finally:
            torch.backends.quantized.engine = previous
    return _packer[1].submit(run)


def _pack(rows: torch.Tensor, scales: torch.Tensor):
    quantized = torch._make_per_channel_quantized_tensor(rows, scales.double(), torch.zeros(len(scales),
                                                                                          dtype=torch.long), 0)
    return torch.ops.quantized.linear_prepack(quantized, None)


def _unpack(packed) -> tuple[torch.Tensor, torch.Tensor]:
    quantized, _ = torch.ops.quantized.linear_unpack(packed)
    return quantized.int_repr(), quantized.q_per_channel_scales().float()


class Int8Weight:
    """An (out, in) weight as int8 rows with one fp32 scale each, packed for fbgemm in the background (see the
    module's doc). Works as the weight of ``F.linear(x, w, bias)`` (fp32 in, fp32 out) and in ``torch.cat``
    along rows; anything else is a TypeError."""

    def __init__(self, rows: torch.Tensor, scales: torch.Tensor):
        if rows.dtype != torch.int8 or rows.dim() != 2 or scales.shape != rows.shape[:1]:
            raise ValueError(f"Int8Weight needs (out, in) int8 rows and one scale per row, not {rows.dtype} "
                             f"{tuple(rows.shape)} with {tuple(scales.shape)} scales")
        self.shape = rows.shape
        self.device = torch.device("cpu")
        self._rows: tuple[torch.Tensor, torch.Tensor] | None = (rows.contiguous(), scales.float())
        #: ``W 1`` of these rows (each row's sum, scaled), what :func:`_matmul` adds back for its inputs' offsets:
        #: made with the packing, in the background, so a load waits for neither (nor a fused copy's parts for theirs)
        self._row_sums: torch.Tensor | None = None
        self._packed = None
        self._packing: Future = _on_packer(self._pack_now)

    def _pack_now(self):
        if self._packed is None:  # (packed already when a put-off packing was asked for twice)
            rows, scales = self._rows
            self._row_sums = rows.sum(dim=1, dtype=torch.int32).float() * scales
            self._packed = _pack(rows, scales)
            self._rows = None  # the packed copy holds them now (unpacked() gets them back)
        return self._packed

    @property
    def packed(self):
        """The weight packed for fbgemm (waits for the background packing, or packs it now if it was put off)."""
        if self._packing.cancelled():  # put off by torch.cat, which made a fused copy of it: needed after all
            self._packing = _on_packer(self._pack_now)
        return self._packing.result()

    @classmethod
    def of(cls, weight: torch.Tensor) -> Int8Weight:
        """``weight`` (any float dtype) quantized per row: scale ``max |row| / 127``, rows rounded to int8."""
        weight = weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        return cls(torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8), scales)

    def unpacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The int8 rows and their fp32 scales."""
        rows = self._rows
        if rows is not None:
            return rows
        return _on_packer(_unpack, self.packed).result()

    def dequantized(self) -> torch.Tensor:
        """The fp32 weight these int8 rows stand for (rows × scales)."""
        rows, scales = self.unpacked()
        return rows.float() * scales[:, None]

    def detach(self) -> Int8Weight:
        """Itself (it holds no autograd history)."""
        return self

    def __repr__(self) -> str:
        return f"Int8Weight(shape={tuple(self.shape)})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            if not isinstance(x, torch.Tensor) or not isinstance(weight, Int8Weight):
                raise TypeError("an Int8Weight multiplies a tensor: F.linear(x, int8_weight)")
            out = _matmul(x.float(), weight.packed, weight._row_sums)  # (packed first: it waits for both)
            return out if bias is None else out + bias
        if func is torch.cat:
            parts = args[0] if args else kwargs["tensors"]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if dim != 0 or not all(isinstance(part, Int8Weight) for part in parts):
                raise TypeError("Int8Weights concatenate along rows only, with each other")
            unpacked = [part.unpacked() for part in parts]
            for part in parts:  # the fused copy is what will be used: pack a part only if it is used on its own
                part._packing.cancel()
            return cls(torch.cat([rows for rows, _ in unpacked]), torch.cat([scales for _, scales in unpacked]))
        raise TypeError(f"{func.__name__} is not defined on an Int8Weight (only F.linear and torch.cat are)")


def _matmul(x: torch.Tensor, packed, row_sums: torch.Tensor) -> torch.Tensor:
    """``x @ W.T`` with fbgemm, each row of its input quantized to 8 bits on its own range. fbgemm quantizes a
    whole input on one range (its minimum to its maximum): over a prompt's tokens, or a batch's rows, the largest
    values (Gemma's first token's activations are hundreds of times the others') would leave the rest a few
    levels, and a row's result would hang on what shares its batch (greedy answers then change with the load).
    So each row is first mapped onto exactly [0, 1] (``u = (x - lo) / (hi - lo)``: its minimum to 0, its maximum
    to 1, both exact), which gives every input the same range, and mapped back after (exact algebra:
    ``W x = (W u) (hi - lo) + lo W 1``, with ``row_sums`` = ``W 1`` of the int8 rows): each row spans the 8 bits,
    and its result is the same alone or in any batch (tests/core/test_cpu_quant.py). The map costs 7-8 % of a
    one-row decode step (docs/BENCHMARKS.md, 2026-12-06: seven small operations beside each fbgemm call)."""
    lo, hi = torch.aminmax(x, dim=-1, keepdim=True)
    span = (hi - lo).clamp_(min=_TINY)  # a constant row: all 0, times a span of nothing
    unit = (x - lo).div_(span)
    return torch.ops.quantized.linear_dynamic(unit, packed, REDUCE_RANGE).mul_(span).addcmul_(lo, row_sums)


class Int8Linear(torch.nn.Module):
    """A bias-optional linear layer over an :class:`Int8Weight`."""

    def __init__(self, weight: Int8Weight, bias: torch.Tensor | None = None):
        super().__init__()
        self.weight = weight  # a plain attribute: the module's state_dict holds the bias only (see save())
        self.out_features, self.in_features = weight.shape
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ weight.T + bias`` in fp32, the weight read as int8."""
        return F.linear(x, self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def is_quantized(model) -> bool:
    """Whether ``model`` went through :func:`quantize`."""
    return any(isinstance(module, Int8Linear) for module in model.modules())


def _linears(model) -> list[tuple[str, torch.nn.Module, str, torch.nn.Linear]]:
    """Every ``nn.Linear`` of ``model`` as (its full name, parent, attribute, module)."""
    return [(f"{path}.{name}" if path else name, parent, name, child) for path, parent in model.named_modules()
            for name, child in parent.named_children() if isinstance(child, torch.nn.Linear)]


def quantize(model):
    """Turn every ``nn.Linear`` of ``model`` (fp32, adapter already merged) into an :class:`Int8Linear`, the LM
    head untied from the embedding (which stays as it is); returns ``model``, changed in place."""
    if not available():
        raise RuntimeError(f"int8 matmuls need torch's {ENGINE} engine (x86 CPUs); this build has "
                           f"{torch.backends.quantized.supported_engines}")
    for _, parent, name, linear in _linears(model):
        setattr(parent, name, Int8Linear(Int8Weight.of(linear.weight), linear.bias))
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.tie_word_embeddings = False  # the head is its own int8 copy now
    return model


def cast(model, dtype: torch.dtype | str):
    """``model`` (fp32) for serving in ``dtype``: :data:`INT8` quantizes it, a torch dtype casts it."""
    return quantize(model) if dtype == INT8 else model.to(dtype)


def save(model, folder: Path) -> None:
    """Write the quantized ``model`` into ``folder``: its configs, and one safetensors file with each int8
    layer's rows (``NAME.rows``), scales (``NAME.scales``) and bias, and every other tensor as it is."""
    tensors = {}
    for name, module in model.named_modules():
        if isinstance(module, Int8Linear):
            tensors[f"{name}.rows"], tensors[f"{name}.scales"] = module.weight.unpacked()
    tensors.update({name: value.contiguous() for name, value in model.state_dict().items()})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "mafioso_int8": str(VERSION)})
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)


def load(folder: Path):
    """The model :func:`save` wrote into ``folder``, on the CPU, its int8 layers packing in the background (the
    LM head first: it is most of the work) while the model around them is built."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.initialization import no_init_weights

    tensors = load_file(str(folder / WEIGHTS_FILE))
    names = sorted((key.removesuffix(".rows") for key in tensors if key.endswith(".rows")),
                   key=lambda name: -tensors[f"{name}.rows"].numel())
    weights = {name: Int8Weight(tensors.pop(f"{name}.rows"), tensors.pop(f"{name}.scales")) for name in names}
    config = AutoConfig.from_pretrained(folder)
    with no_init_weights():  # every weight is overwritten below: skip the random initialisation
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    for prefix, parent, name, _ in _linears(model):
        if prefix not in weights:
            raise ValueError(f"{folder / WEIGHTS_FILE} has no int8 weight for {prefix}")
        # the bias stays in ``tensors``: it is the Int8Linear's buffer, which load_state_dict below assigns
        setattr(parent, name, Int8Linear(weights.pop(prefix), tensors.get(f"{prefix}.bias")))
    # assign: the loaded tensors become the parameters (no copy of the 0.67 GB embedding)
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    if missing or unexpected or weights:
        raise ValueError(f"{folder / WEIGHTS_FILE} does not match the model: missing {missing[:3]}, "
                         f"unexpected {(unexpected + list(weights))[:3]}")
    model.generation_config = GenerationConfig.from_pretrained(folder)
    return model.eval()
