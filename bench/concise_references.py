"""A dataset whose references are cut short: each keeps its first sentences and its last (docs/BENCHMARKS.md,
2026-12-06: does a model trained to say less say fewer false things?).

    python bench/concise_references.py data/train.json /tmp/concise.json            # first two + the last
    python bench/concise_references.py data/train.json /tmp/concise.json --first 3

The last sentence stays because the voice sits there (the closing line); the sentences are the claim checks' own
split (:func:`mafioso.core.claims.text.sentences`). Other fields are copied as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso.core.claims.text import sentences  # noqa: E402

FIELD = "mafia_explanation"


def concise(text: str, first: int = 2) -> str:
    """``text`` cut to its first ``first`` sentences and its last (unchanged when that is all of it)."""
    parts = [part.strip() for part in sentences(text.strip()) if part.strip()]
    if len(parts) <= first + 1:
        return " ".join(parts)
    return " ".join([*parts[:first], parts[-1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a dataset file (JSON: id -> row)")
    parser.add_argument("out", type=Path, help="where the cut dataset goes")
    parser.add_argument("--first", type=int, default=2, help="sentences kept from the start (default 2)")
    args = parser.parse_args(argv)
    rows = json.loads(args.data.read_text(encoding="utf-8"))
    cut = {key: {**row, FIELD: concise(row[FIELD], args.first)} for key, row in rows.items()}
    before = sum(len(sentences(row[FIELD])) for row in rows.values())
    after = sum(len(sentences(row[FIELD])) for row in cut.values())
    args.out.write_text(json.dumps(cut, indent=1, ensure_ascii=False), encoding="utf-8")
    shorter = sum(cut[key][FIELD] != rows[key][FIELD].strip() for key in rows)
    print(f"{len(rows)} rows, {shorter} cut; sentences a reference {before / len(rows):.1f} -> {after / len(rows):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
