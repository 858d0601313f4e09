"""Printed values without a run, held against real runs: is every static flag one a run would confirm?

    python bench/check_printable.py                      # every dataset file and every stored eval's answers
    python bench/check_printable.py data/validation.json mafioso/adapter/eval/predictions.jsonl

:func:`mafioso.core.claims.outputs.false_prints` refutes "it prints X" from the syntax tree alone (chat input is
never run). For each text given (a dataset file's reference answers, an eval's ``predictions.jsonl`` answers) it is
run on the text; where it flags a value and the snippet runs on its own in the sandbox
(:mod:`mafioso.trainer.sandbox`, as ``mafioso eval`` runs the dataset's snippets), the real output must confirm the
flag: the value is not in it. Prints each flag with its verdict, then how many codes had every output in sight, how
many texts were flagged and how many flags a run contradicts (the last line, JSON); exits 1 if any.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso.core.claims.outputs import false_outputs, false_prints  # noqa: E402
from mafioso.core.claims.printable import printable  # noqa: E402
from mafioso.trainer.dataset import load_samples  # noqa: E402
from mafioso.trainer.grounding import repeatable  # noqa: E402
from mafioso.trainer.sandbox import SnippetRunner  # noqa: E402

DEFAULT = ["data/train.json", "data/validation.json", "data/personas/*/*.json",
           "mafioso/adapter*/eval/**/predictions.jsonl"]


def _texts(path: str) -> list[tuple[str, str, str]]:
    """(key, code, answer) of a dataset file's rows or an eval's predictions."""
    if path.endswith("predictions.jsonl"):
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        return [(row["key"], row["code"], row.get("raw_prediction") or row["prediction"]) for row in rows]
    return [(sample.key, sample.code, sample.explanation) for sample in load_samples([path])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="dataset files and predictions.jsonl files (globs; default: all)")
    args = parser.parse_args(argv)
    paths = sorted({found for pattern in args.paths or DEFAULT for found in glob.glob(pattern, recursive=True)})
    runner, outputs = SnippetRunner(), {}
    texts = in_sight = flagged = contradicted = 0
    for path in paths:
        for key, code, answer in _texts(path):
            texts += 1
            in_sight += printable(code) is not None
            claims = false_prints(code, answer)
            if not claims:
                continue
            flagged += 1
            if code not in outputs:
                run = runner.run(code)
                outputs[code] = run.output if run.output is not None and repeatable(code) else None
            output = outputs[code]
            refuted = None if output is None else {claim["claim"] for claim in false_outputs(answer, output)}
            for claim in claims:
                value = claim["claim"]
                confirmed = refuted is not None and (value in refuted or value == "None" and "None" not in output)
                verdict = "no run" if refuted is None else "confirmed by the run" if confirmed else "CONTRADICTED"
                contradicted += verdict == "CONTRADICTED"
                print(f"{path} {key} [{verdict}] {value!r}: {claim['text'][:160]}")
    print(json.dumps({"texts": texts, "codes_in_sight": in_sight, "texts_flagged": flagged,
                      "contradicted": contradicted}))
    return 1 if contradicted else 0


if __name__ == "__main__":
    sys.exit(main())
