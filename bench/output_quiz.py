"""What does this print? Each snippet that runs is asked so, and the values its answer says are printed are held
against a real run: an automated check of what a model says a snippet prints (docs/BENCHMARKS.md, 2026-12-06).

Its reach is what the answers name: the shipped adapters learned from data that tells outputs through names and
conditions ("it prints the best student's name"), so 5 of Gemma's 128 answers and 11 of Qwen's 129 named a printed
value at all (2026-12-06); it reads more of a model, or data, that states values.

    python bench/output_quiz.py                                     # Gemma + its shipped adapter
    python bench/output_quiz.py --base-model qwen2.5-coder-0.5b     # Qwen + its shipped adapter
    python bench/output_quiz.py --adapter DIR --out quiz.jsonl      # a candidate, every answer kept

The snippets: the rows of ``--data`` (the validation split by default) and ``bench/read_unseen.py``'s sixty, each
asked once ("What does this print?"), greedy, as served. Each answer is **right** when it names printed values and
every one of them is in the run's output, **wrong** when one is not, **vague** when it names none ("it prints the
sum"); the values are the claim checks' own reading (:func:`mafioso.core.claims.outputs.claimed_prints`: quoted
strings, literals, numbers, True/False/None after a print verb). Only snippets whose run prints something and ends
without an exception are asked. They are the dataset's and this bench's own, run in the sandbox
(:mod:`mafioso.trainer.sandbox`: time and memory limits, no network where the OS allows); chat input never is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from bench.read_unseen import SETS  # noqa: E402
from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402

REQUEST = "What does this print?"


def unseen_snippets() -> list[str]:
    """The code of ``bench/read_unseen.py``'s sixty snippets."""
    return [code for snippets in SETS.values() for code, _ in snippets]


def verdict(answer: str, output: str) -> tuple[str, list[str]]:
    """``("right" | "wrong" | "vague", the values the answer says are printed)`` against a run's ``output``."""
    from mafioso.core.claims.outputs import claimed_prints, in_output

    values = claimed_prints(answer)
    if not values:
        return "vague", []
    wrong = any(not in_output(kind, value, output) for kind, value in values)
    return ("wrong" if wrong else "right"), [value for _, value in values]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="", help="as for mafioso explain (default: embedded)")
    parser.add_argument("--adapter", default="default", help="adapter folder, 'default' or 'none'")
    parser.add_argument("--data", type=Path, default=Path("data/validation.json"), help="dataset rows to ask about")
    parser.add_argument("--no-unseen", action="store_true", help="leave read_unseen.py's sixty out")
    parser.add_argument("--out", type=Path, help="every answer with its verdict, as JSON lines")
    args = parser.parse_args(argv)
    from mafioso.trainer.sandbox import SnippetRunner
    from mafioso.worker.engines import load_engine

    sources = {"data": [row["code"] for row in json.loads(args.data.read_text(encoding="utf-8")).values()]}
    if not args.no_unseen:
        sources["unseen"] = unseen_snippets()
    runner = SnippetRunner()
    asked = []  # (source, code, output): snippets that print and end cleanly, run before the model loads
    for name, codes in sources.items():
        for code in codes:
            run = runner.run(code)
            if run.output and run.output.strip() and run.raised is None:
                asked.append((name, code, run.output))
    engine = load_engine(WorkerConfig(base_model=args.base_model, adapter=args.adapter), GenerationConfig())
    try:
        answers = engine.generate([(code, REQUEST) for _, code, _ in asked])
    finally:
        engine.close()
    counts = {name: {"asked": 0, "right": 0, "wrong": 0, "vague": 0} for name in sources}
    lines = []
    for (name, code, output), answer in zip(asked, answers, strict=True):
        said, values = verdict(answer.text, output)
        counts[name]["asked"] += 1
        counts[name][said] += 1
        lines.append({"source": name, "code": code, "output": output, "answer": answer.text, "verdict": said,
                      "values": values})
    if args.out:
        args.out.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    total = {key: sum(c[key] for c in counts.values()) for key in ("asked", "right", "wrong", "vague")}
    for name, c in {**counts, "all": total}.items():
        named = c["right"] + c["wrong"]
        share = f"{c['right'] / named:.2f}" if named else "-"
        print(f"{name:<8} asked {c['asked']:>4}  right {c['right']:>4}  wrong {c['wrong']:>4}  vague {c['vague']:>4}"
              f"  right of those naming values {share}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
