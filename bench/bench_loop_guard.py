"""Host cost of the loop rule (core/loop_guard.py) per decode step: LoopGuard.add per row and token.

    python bench/bench_loop_guard.py                         # a word-level stand-in tokenizer, no model
    python bench/bench_loop_guard.py --base-model embedded   # Gemma's own tokenizer (converts it once)

Feeds the shipped reference answers (prose) and a long count ("1, 2, 3, …", the rule's slowest case: every
token holds a digit or follows one) token by token through one guard per answer, the rule set so that it
never fires, and prints microseconds per token and per decode step of ``--rows`` rows as one JSON line (the
prose once more without the variant rule, to compare in the same run).
The fast engine pays this on the host once per running row per step (``FastEngine._record``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from mafioso.core.loop_guard import LoopGuard, LoopRule, TokenPieces  # noqa: E402


class WordTokenizer:
    """Words with their leading space, single digits (as Gemma writes numbers), single other characters."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.pieces: list[str] = []

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        ids = [self.vocab.setdefault(p, len(self.vocab)) for p in re.findall(r" ?[^\W\d]+|\d| ?[^\w\s]|\s", text)]
        self.pieces += list(self.vocab)[len(self.pieces):]
        return {"input_ids": ids}

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


def feed(answers: list[list[int]], pieces: TokenPieces, variants: int = LoopRule.variants) -> None:
    """Every answer through a guard of its own, under a rule that never fires: each token pays the whole check
    (``variants`` 0: without the variant rule, for comparison)."""
    rule = LoopRule(span=10**6, count=10**6, variants=variants)
    for ids in answers:
        guard = LoopGuard(rule, pieces)
        for token in ids:
            guard.add(token)


def per_token_us(answers: list[list[int]], pieces: TokenPieces, variants: int = LoopRule.variants) -> float:
    """Microseconds per LoopGuard.add, every piece already known (the steady state of a serving worker); the
    best of five passes, as the CPU may be shared."""
    feed(answers, pieces, variants)  # decodes each piece once
    passes = []
    for _ in range(5):
        started = time.perf_counter()
        feed(answers, pieces, variants)
        passes.append(time.perf_counter() - started)
    return min(passes) / sum(map(len, answers)) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="", help="load this base's tokenizer (default: a stand-in)")
    parser.add_argument("--rows", type=int, default=64, help="running rows per decode step")
    args = parser.parse_args(argv)
    if args.base_model:
        from mafioso.core.base_model import load_tokenizer, resolve_base

        tokenizer = load_tokenizer(resolve_base(args.base_model))
    else:
        tokenizer = WordTokenizer()
    answers = [row["mafia_explanation"] for name in ("train.json", "validation.json")
               for row in json.loads((ROOT / "data" / name).read_text()).values()]
    count = ["It prints " + ", ".join(map(str, range(1, 300)))] * 20
    pieces = TokenPieces(tokenizer)
    result = {"tokenizer": args.base_model or "stand-in", "rows": args.rows}
    for label, texts in (("prose", answers), ("count", count)):
        ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        us = per_token_us(ids, pieces)
        result[f"{label}_us_per_token"] = round(us, 3)
        result[f"{label}_us_per_step"] = round(us * args.rows, 1)
    prose = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in answers]
    result["prose_us_per_token_without_variant_rule"] = round(per_token_us(prose, pieces, variants=0), 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
