"""bench/bench_llamacpp.py runs end to end against the current engine API: through the llama.cpp stand-in over the
tiny model (tests/worker/torch_llama.py), so a renamed rule class or engine attribute breaks a test, not the bench
the next time someone measures with it."""

import json
import sys

from mafioso.worker.engine import GenerateEngine
from mafioso.worker.llamacpp_engine import LlamaCppEngine
from tests.bench import load
from tests.worker.torch_llama import TorchLlama


def test_the_bench_runs_through_the_engines_it_measures(tiny_model_dir, monkeypatch, capsys):
    bench = load("bench_llamacpp")
    from mafioso.core.config import WorkerConfig
    from mafioso.worker import engines

    base = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                        fast_decode=False)
    loaded = engines.load_model_for(base)
    loads = []

    def plain(gen):
        return GenerateEngine(loaded.model, loaded.tokenizer, gen, "cpu", loaded.persona)

    def llama_load(cfg, gen, *args):
        loads.append(cfg)
        return LlamaCppEngine(TorchLlama(loaded.model, n_ctx=2048), plain(gen))  # the example is long

    monkeypatch.setattr(bench, "TOKENS", 6)
    monkeypatch.setattr(LlamaCppEngine, "load", llama_load)
    monkeypatch.setattr(engines, "load_engine", lambda cfg, gen: plain(gen))
    monkeypatch.setattr(sys, "argv", ["bench_llamacpp.py", "--gguf", "model.gguf", "--rounds", "1"])
    assert bench.main() == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert loads[0].engine == "llamacpp" and loads[0].gguf == "model.gguf"
    assert len(report["raw_s"]) == len(report["ruled_s"]) == 1
    assert report["same_tokens"] and report["tokens"]["llamacpp"], report  # one model behind both: one answer
