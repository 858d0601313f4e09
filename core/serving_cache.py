"""The merged serving weights, kept on disk so that a second start skips the merge (issue 21, cold start).

Loading the base in fp32, merging the LoRA adapter into it (PEFT) and casting to the serving dtype takes ~30 s
on 2 cores; the result depends only on the base, the adapter, the dtype and this code. So the first start saves
it under ``cache_dir()/merged/`` and every later one loads it directly:

    folder = entry(base, adapter, dtype)     # where it is (or will be), keyed by what it is made of
    model = load(folder, device, dtype)      # None when absent or broken (then merge and save())
    save(model, folder)                      # atomically: a temp folder renamed into place

The key hashes the base (its name, and for a local folder each weights file's size and time), the adapter's
weights file and config (sha256), the dtype and :data:`VERSION` (for int8 weights also
:data:`mafioso.core.cpu_quant.VERSION`: an entry then holds the quantized weights, so a start does not quantize
again). An entry is complete only with its
``mafioso-merged.json`` (written last, with every file's size); a partial or corrupt one is removed and rebuilt.
Only the unquantized path uses it (the CPU, or CUDA with quantization none): there the merged model is plain
dense weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError

from mafioso.core import cpu_quant
from mafioso.core.files import cache_dir, sha256_file

__all__ = ["VERSION", "entry", "key", "load", "save"]

log = logging.getLogger(__name__)

#: Bump when the merged weights are built differently (merge, cast, saved files): old entries are then unused.
VERSION = 1
MARK = "mafioso-merged.json"


def _base_facts(base: str) -> list:
    """The base's name and, for a local folder, its weights and config files' sizes and times (a changed copy in
    the same place is a new key; hashing ~0.5-1 GB of weights on every start would cost what the cache saves)."""
    folder = Path(base).expanduser()
    if not folder.is_dir():
        return [base]  # a Hugging Face id: its files do not change under one name
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
    return [str(folder.resolve()), *[(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]]


def _adapter_files(adapter: Path) -> list[Path]:
    return [p for p in (adapter / "adapter_model.safetensors", adapter / "adapter_model.bin",
                        adapter / "adapter_config.json") if p.is_file()]


def key(base: str, adapter: Path, dtype: torch.dtype | str) -> str:
    """What the merged weights are made of, hashed: base, adapter weights and config, dtype (a torch dtype or
    ``"int8"``), code version."""
    facts = {"base": _base_facts(base), "adapter": {p.name: sha256_file(p) for p in _adapter_files(adapter)},
             "dtype": str(dtype), "version": VERSION}
    if dtype == cpu_quant.INT8:
        facts["int8_version"] = cpu_quant.VERSION
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def entry(base: str, adapter: Path, dtype: torch.dtype | str) -> Path:
    """The cache folder for the merged ``base`` + ``adapter`` in ``dtype`` (it may not exist yet)."""
    name = Path(base.rstrip("/")).name or "base"
    return cache_dir() / "merged" / f"{name}-{str(dtype).removeprefix('torch.')}-{key(base, adapter, dtype)}"


def _complete(folder: Path) -> bool:
    """Whether every file the mark lists is there at its recorded size (a copy cut short is not complete)."""
    try:
        sizes = json.loads((folder / MARK).read_text(encoding="utf-8"))["files"]
        return all((folder / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def load(folder: Path, device: str, dtype: torch.dtype | str):
    """The cached merged model on ``device`` (int8 weights: on the CPU), or None when there is no complete,
    loadable entry (a broken one is removed, so the caller rebuilds it)."""
    from transformers import AutoModelForCausalLM

    if not folder.is_dir():
        return None
    if _complete(folder):
        try:
            if dtype == cpu_quant.INT8:
                return cpu_quant.load(folder)
            return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa",
                                                        device_map={"": device})
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            log.warning("the cached merged model %s does not load (%s): merging again", folder, exc)
    else:
        log.warning("the cached merged model %s is incomplete: merging again", folder)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def save(model, folder: Path) -> None:
    """Save the merged ``model`` as ``folder``: written in a temp folder beside it, marked, then renamed into
    place, so a start that is killed half-way leaves no entry that looks complete. A failure (a full disk) only
    costs the next start the merge."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if cpu_quant.is_quantized(model):
            cpu_quant.save(model, partial)
        else:
            model.save_pretrained(partial, safe_serialization=True)
        sizes = {p.name: p.stat().st_size for p in partial.iterdir()}
        (partial / MARK).write_text(json.dumps({"files": sizes, "version": VERSION}), encoding="utf-8")
        partial.rename(folder)
    except OSError as exc:  # includes the rename losing to another start that saved the same entry first
        if not _complete(folder):
            log.warning("cannot save the merged model in %s: %s (the next start merges again)", folder, exc)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
