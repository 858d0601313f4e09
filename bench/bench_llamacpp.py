"""The llama.cpp engine against the torch engine on a CPU, in the same run (issue 21: ">= 45 tokens/s on an idle
2-core machine"; "the exported GGUF answers the README example the same way as the worker").

    mafioso export gguf --adapter default --out dist/ --type f16          # once
    python bench/bench_llamacpp.py --gguf dist/mafioso-f16.gguf            # needs pip install 'mafioso[llamacpp]'
    python bench/bench_llamacpp.py --gguf dist/mafioso-f16.gguf --rounds 3 --torch-dtype int8

Loads the embedded Gemma 3 + shipped adapter twice: ``--engine llamacpp`` on the GGUF and the torch engine in
fp32 (the exact merge the GGUF was written from; ``--torch-dtype`` picks another). Then, round by round, for
``examples/fizzbuzz.py`` (the README's example):

* a warm 120-token answer straight from llama.cpp (prompt, then 119 greedy tokens, EOS ignored, none of the
  worker's per-step rules): llama.cpp's own speed;
* the same with the worker's rules on each step (repetition penalty, n-gram bans, grounded decoding: a numpy pass
  over the 262,144 logits; each token fed to the answer's DecodingRules, whose ### and loop stops are found but
  not obeyed): what ``--engine llamacpp`` decodes at;
* the real answer of each engine (``generate``: stops, post-check): tokens, seconds, tokens/s.

Medians over the rounds. Prints the machine and load, a table, whether the two engines' greedy answers are the
same tokens (and where they first differ), both answers, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso import prompts  # noqa: E402
from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402
from mafioso.worker.control import Control  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fizzbuzz.py"
TOKENS = 120


def uptime() -> str:
    """The load averages, as ``uptime`` prints them."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def raw_answer(engine, ids: list[int], rules: bool) -> float:
    """Seconds for 120 greedy tokens from llama.cpp (EOS ignored), with or without the worker's per-step rules."""
    from mafioso.worker.llamacpp_engine import _AnswerRules

    plain = engine.plain  # the rules are the plain engine's, as LlamaCppEngine.decode uses them
    answer = plain.rules.for_answer() if rules else None  # n-gram bans, fed below; ### and loops found, not obeyed
    grounding = plain.grounding.for_answer(EXAMPLE.read_text(encoding="utf-8")) if rules and plain.grounding else None
    processors = [_AnswerRules(engine.gen, ids, answer, grounding)] if rules else None
    start = time.perf_counter()
    steps = engine.llama.generate(ids, top_k=0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, temp=0.0,
                                  logits_processor=processors)
    for n, token in enumerate(steps, start=1):
        if n == TOKENS:
            break
        if answer is not None:
            answer.add(token)
    steps.close()
    return time.perf_counter() - start


def greedy_tokens(engine, code: str) -> list[int]:
    """The tokens of the engine's real answer (through a control that records each one)."""
    seen: list[int] = []

    class Recorder:
        def push(self, token: int) -> None:
            seen.append(token)

    engine.generate([(code, None)], [Control(sink=Recorder())])
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", required=True, help="the merged GGUF from mafioso export gguf")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per engine, interleaved")
    parser.add_argument("--torch-dtype", default="float32", help="the torch engine's MAFIOSO_DTYPE (default float32)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from mafioso.worker.engines import load_engine
    from mafioso.worker.llamacpp_engine import LlamaCppEngine

    load_before = uptime()
    print(f"# load before: {load_before}")
    gen = GenerationConfig(max_new_tokens=TOKENS)
    llama = LlamaCppEngine.load(WorkerConfig(engine="llamacpp", gguf=args.gguf), gen)
    torch_engine = load_engine(WorkerConfig(device="cpu", dtype=args.torch_dtype, max_batch_size=1), gen)
    print(f"# llama.cpp threads {llama.llama.n_threads if hasattr(llama.llama, 'n_threads') else '?'}")
    code = EXAMPLE.read_text(encoding="utf-8")
    ids = prompts.encode(llama.tokenizer, code, None, persona_name=llama.persona)["input_ids"]
    raw_answer(llama, ids, rules=False)  # warm-up
    raw, ruled, answers = [], [], {"llamacpp": [], "torch": []}
    texts = {}
    for _ in range(args.rounds):
        raw.append(raw_answer(llama, ids, rules=False))
        ruled.append(raw_answer(llama, ids, rules=True))
        for name, engine in (("llamacpp", llama), ("torch", torch_engine)):
            start = time.perf_counter()
            [result] = engine.generate([(code, None)])
            answers[name].append((result.tokens, time.perf_counter() - start))
            texts[name] = result.text
    mine, theirs = greedy_tokens(llama, code), greedy_tokens(torch_engine, code)
    first = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)
    load_after = uptime()
    rows = {"llama.cpp, no rules": TOKENS / statistics.median(raw),
            "llama.cpp + the worker's rules": TOKENS / statistics.median(ruled)}
    print(f"# load after: {load_after}\n")
    print(f"| what | 120-token answer, tokens/s (median of {args.rounds}) |\n|---|---|")
    for name, rate in rows.items():
        print(f"| {name} | {rate:.1f} |")
    print(f"\n| engine | real answer: tokens, s, tokens/s (median of {args.rounds}) |\n|---|---|")
    for name, runs in answers.items():
        tokens, seconds = statistics.median(t for t, _ in runs), statistics.median(s for _, s in runs)
        print(f"| {name} | {tokens}, {seconds:.2f}, {tokens / seconds:.1f} |")
    same = mine == theirs
    print(f"\n# greedy answers: {'the same' if same else 'different'} tokens ({len(mine)} vs {len(theirs)}"
          f"{'' if first is None else f', first difference at token {first}'})")
    for name, text in texts.items():
        print(f"\n{name}: {text}")
    print(json.dumps({"load_before": load_before, "load_after": load_after, "raw_s": raw, "ruled_s": ruled,
                      "answers": answers, "same_tokens": same, "first_difference": first,
                      "tokens": {"llamacpp": mine, "torch": theirs}, "texts": texts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
