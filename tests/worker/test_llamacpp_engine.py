"""The llama.cpp engine (worker/llamacpp_engine.py, issue 21): the plain engine's prompt, per-step rules, stops
and post-check around llama.cpp's decode. Driven through a stand-in for ``llama_cpp.Llama`` over the tiny torch
model (tests/worker/torch_llama.py), its greedy answers must be the reference engine's token for token; the real
llama.cpp, where installed, is held to the torch engine on the real model in the slow test at the end."""

import asyncio
import sys
import types

import pytest

from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.core.errors import ConfigError
from mafioso.worker.control import Control
from mafioso.worker.engines import load_engine
from mafioso.worker.llamacpp_engine import INSTALL, LlamaCppEngine
from mafioso.worker.runtime import build_worker
from tests.helpers import SNIPPETS
from tests.worker.torch_llama import TorchLlama

CODES = [code for _, code, _ in SNIPPETS[:4]] + ["def f(x):\n    return x * 2\n"]


def _reference(tiny_model_dir, **gen):
    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                       fast_decode=False)  # the stand-in decodes the fp32 model; auto may pick int8 on a busy CPU
    return load_engine(cfg, GenerationConfig(**{"max_new_tokens": 12, **gen}))


@pytest.mark.parametrize("gen", [{}, {"no_repeat_ngram": 2, "repetition_penalty": 1.3},
                                 {"penalize_prompt": True, "grounded_decoding": False}],
                         ids=["defaults", "ngram-and-penalty", "prompt-penalty"])
def test_greedy_answers_are_the_reference_engines(tiny_model_dir, gen):
    reference = _reference(tiny_model_dir, **gen)
    engine = LlamaCppEngine(TorchLlama(reference.model), reference)
    want = reference.generate([(code, None) for code in CODES])
    got = engine.generate([(code, None) for code in CODES])
    assert [(g.text, g.tokens, g.finished, g.looped) for g in got] == \
           [(w.text, w.tokens, w.finished, w.looped) for w in want]
    assert engine.llama.calls[0]["repeat_penalty"] == 1.0  # the rules are ours, not llama.cpp's own penalty


def test_a_request_s_limit_cancel_and_stream(tiny_model_dir):
    reference = _reference(tiny_model_dir)
    engine = LlamaCppEngine(TorchLlama(reference.model), reference)
    emitted = []
    short = Control(max_tokens=3, sink=types.SimpleNamespace(push=emitted.append))  # the worker's token sink
    [answer] = engine.generate([(CODES[0], None)], [short])
    assert answer.tokens == 3 and not answer.finished and len(emitted) == 3
    assert engine.text_so_far(CODES[0], emitted) == answer.text
    cancelled = Control()
    cancelled.cancel()
    [answer] = engine.generate([(CODES[0], None)], [cancelled])
    assert answer.tokens == 0
    assert engine.prompt_tokens(CODES[0]) == reference.prompt_tokens(CODES[0])
    assert engine.max_prompt_tokens == 512 - 12 - 1  # the context llama.cpp was given, less a whole answer


@pytest.fixture
def fake_llama_cpp(monkeypatch, tiny_model_dir):
    """A ``llama_cpp`` module whose Llama is the tiny torch model (and records what it was asked to load)."""
    from transformers import AutoModelForCausalLM

    loaded = []

    def llama(model_path, **settings):
        loaded.append((model_path, settings))
        return TorchLlama(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), n_ctx=settings["n_ctx"])

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=llama))
    return loaded


def test_the_worker_serves_the_gguf_through_llama_cpp(tiny_model_dir, tmp_path, fake_llama_cpp):
    gguf = tmp_path / "mafioso-f16.gguf"
    gguf.write_bytes(b"GGUF")  # opened by the stand-in only by name
    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", engine="llamacpp",
                       gguf=str(gguf))
    notes = []
    worker = build_worker(cfg, GenerationConfig(max_new_tokens=8), note=notes.append)
    assert isinstance(worker.engine, LlamaCppEngine) and notes == ["loading mafioso-f16.gguf with llama.cpp…"]
    [(path, settings)] = fake_llama_cpp
    assert path == str(gguf) and settings["n_threads"] >= 1

    async def ask():
        await worker.start()
        try:
            return await worker.explain(CODES[0])
        finally:
            await worker.stop()

    answer = asyncio.run(ask())
    assert answer.text == _reference(tiny_model_dir, max_new_tokens=8).generate([(CODES[0], None)])[0].text
    worker.engine.close()
    assert worker.engine.llama.closed


def test_load_engine_chooses_llama_cpp_and_passes_the_persona(tiny_model_dir, tmp_path, fake_llama_cpp):
    """eval scores an adapter in a voice: load_engine hands that persona to the llama.cpp engine too."""
    gguf = tmp_path / "mafioso-f16.gguf"
    gguf.write_bytes(b"GGUF")
    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", engine="llamacpp",
                       gguf=str(gguf))
    for persona in (None, "noir"):
        engine = load_engine(cfg, GenerationConfig(max_new_tokens=4), persona=persona)
        assert isinstance(engine, LlamaCppEngine) and engine.persona == (persona or "mafioso")
        engine.close()


def test_refusals_say_what_to_do(tiny_model_dir, tmp_path, monkeypatch, fake_llama_cpp):
    with pytest.raises(ConfigError, match="MAFIOSO_GGUF"):
        WorkerConfig(engine="llamacpp")
    with pytest.raises(ConfigError, match="MAFIOSO_ENGINE must be torch or llamacpp"):
        WorkerConfig(engine="vllm")
    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", engine="llamacpp",
                       gguf=str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="is not a file; write the tuned model as one with: mafioso export gguf"):
        LlamaCppEngine.load(cfg, GenerationConfig())
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # not installed: importing it fails
    with pytest.raises(ConfigError) as refused:
        LlamaCppEngine.load(cfg, GenerationConfig())
    assert str(refused.value) == INSTALL and "mafioso[llamacpp]" in INSTALL


@pytest.mark.slow
def test_real_llama_cpp_answers_the_readme_example_as_the_torch_engine_does(tmp_path):
    """With llama-cpp-python installed (the llamacpp extra): the merged F16 GGUF that `mafioso export gguf` writes
    loads, and its greedy answer to the README's example is the fp32 torch engine's, token for token, over the
    first tokens (F16 weights round a near-tie further on; docs/BENCHMARKS.md has the measured length)."""
    pytest.importorskip("llama_cpp")
    from pathlib import Path

    from mafioso.cli import main

    assert main(["export", "gguf", "--adapter", "default", "--out", str(tmp_path), "--type", "f16"]) == 0
    code = (Path(__file__).resolve().parents[2] / "examples" / "fizzbuzz.py").read_text(encoding="utf-8")
    gen = GenerationConfig(max_new_tokens=40)
    llama = LlamaCppEngine.load(WorkerConfig(engine="llamacpp", gguf=str(tmp_path / "mafioso-f16.gguf")), gen)
    reference = load_engine(WorkerConfig(device="cpu", dtype="float32", max_batch_size=1), gen)
    answers = {}
    for name, engine in (("llamacpp", llama), ("torch", reference)):
        tokens = []
        [answers[name]] = engine.generate([(code, None)], [Control(sink=types.SimpleNamespace(push=tokens.append))])
        answers[name + " tokens"] = tokens
    assert answers["llamacpp"].text and answers["llamacpp tokens"][:16] == answers["torch tokens"][:16]
    llama.close()
