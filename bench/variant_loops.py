"""How often the loop rule's variant half fires (core/loop_guard.py): on the data's reference answers, which it
must never cut, and on the shipped adapters' stored eval answers, at the shipped threshold and looser ones.

    python bench/variant_loops.py                                    # Gemma's and Qwen's tokenizers
    python bench/variant_loops.py --base-model embedded --variants 3 4 6

Only the variant half runs (the other rules are off), so an exact repeat of a sentence counts too. Prints one
JSON line per tokenizer: for each number of sentences in a row, how many references, tuned adapters' answers
and untuned bases' answers it finds, with the first two of each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from mafioso.core.loop_guard import LoopRule, TokenPieces, find_loop  # noqa: E402


def texts() -> dict[str, list[str]]:
    """Reference answers of every shipped data set, and the stored eval answers (before any cut) of the shipped
    adapters and of their untuned bases (``eval/base``)."""
    references = []
    for path in sorted((ROOT / "data").rglob("*.json")):
        rows = json.loads(path.read_text())
        references += [row.get("mafia_explanation") or row.get("explanation") or ""
                       for row in (rows.values() if isinstance(rows, dict) else rows)]
    answers = {"tuned": [], "bases": []}
    for path in sorted((ROOT / "mafioso").glob("adapter*/eval/**/predictions.jsonl")):
        answers["bases" if path.parent.name == "base" else "tuned"] += [
            row.get("raw_prediction") or row["prediction"] for row in map(json.loads, path.read_text().splitlines())]
    return {"references": references, **answers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", nargs="+", default=["embedded", "qwen2.5-coder-0.5b"])
    parser.add_argument("--variants", nargs="+", type=int, default=[3, 4, LoopRule.variants])
    parser.add_argument("--variant-tokens", type=int, default=LoopRule.variant_tokens)
    args = parser.parse_args(argv)
    from mafioso.core.base_model import load_tokenizer, resolve_base

    groups = texts()
    for base in args.base_model:
        tokenizer = load_tokenizer(resolve_base(base))
        pieces = TokenPieces(tokenizer)
        encoded = {name: [tokenizer(t, add_special_tokens=False)["input_ids"] for t in group]
                   for name, group in groups.items()}
        result = {"tokenizer": base, **{name: len(group) for name, group in groups.items()}}
        for variants in args.variants:
            rule = LoopRule(span=0, count=0, variants=variants, variant_tokens=args.variant_tokens)
            for name, group in encoded.items():
                found = [tokenizer.decode(ids)[:160] for ids in group if find_loop(ids, rule, pieces)]
                result[f"{name}_flagged_at_{variants}"] = len(found)
                result[f"{name}_examples_at_{variants}"] = found[:2]
        print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
