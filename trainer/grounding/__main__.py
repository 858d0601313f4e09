"""``python -m mafioso.trainer.grounding FILE...``: score dataset files' own reference answers (the ceiling of the
``grounded`` metric) and list every failing row with its reasons. It runs the files' snippets in the sandbox,
like ``mafioso eval``; chat input never comes here."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from mafioso.core.claims import claim_kind
from mafioso.trainer.dataset import load_samples
from mafioso.trainer.grounding import summarize_claims, unsupported_claims
from mafioso.trainer.sandbox import SnippetRunner, isolation


def main(argv: list[str] | None = None) -> int:
    """Score each dataset file's reference answers and list every failing row with its reasons."""
    parser = argparse.ArgumentParser(prog="python -m mafioso.trainer.grounding", description=main.__doc__)
    parser.add_argument("files", nargs="+", metavar="FILE", help="dataset file(s), each scored on its own")
    parser.add_argument("--no-run", action="store_true", help="do not run the snippets (no output check)")
    args = parser.parse_args(argv)
    runner = SnippetRunner()
    print(f"snippets run with isolation: {'(not run)' if args.no_run else isolation()}")
    for path in args.files:
        samples = load_samples([path])
        failing, reasons = [], Counter()
        for sample in samples:
            run = None if args.no_run else runner.run(sample.code)
            claims = unsupported_claims(sample.code, sample.explanation, run and run.output, run and run.raised)
            if claims:
                failing.append((sample, claims, run))
                reasons.update(f"{claim_kind(c)}: {c['claim']}" for c in claims)
        score = summarize_claims([[]] * (len(samples) - len(failing)) + [c for _, c, _ in failing])
        print(f"\n== {path}: grounded {score['grounded']:.3f} ({len(samples) - len(failing)}/{len(samples)}), "
              f"unsupported claims {score['unsupported']}")
        print("most common: " + ", ".join(f"{reason} x{n}" for reason, n in reasons.most_common(15)))
        for sample, claims, run in failing:
            ran = ("not run" if run is None else f"not runnable: {run.reason} {run.raised or ''}".rstrip()
                   if run.output is None else f"ran, output {run.output[:120]!r}")
            print(f"\n-- {sample.key} ({ran})")
            for claim in claims:
                print(f"   {claim_kind(claim)}: {claim['claim']!r} in: {claim['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
