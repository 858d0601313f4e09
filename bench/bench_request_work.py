"""A request's own host work, apart from decoding: what a worker's request threads do per answer, in Python.

    python bench/bench_request_work.py                       # the embedded base's tokenizer, 324 pastes
    python bench/bench_request_work.py --base-model DIR --pastes 100

Each paste of the data (validation first, then training rows) goes once through the three phases a request
takes around its decode: its prompt rendered and tokenized (facts sheet included; the input guard counts its
tokens first, then the engine takes its ids), its grounded-decoding tables,
and its answer finished and post-checked (a fixed answer of real text). Every paste is new to the caches, as at
64 concurrent. Prints the best of ``--repeat`` passes in milliseconds per request; the caches are emptied
between passes. At 64 concurrent on a GPU this work holds the GIL that the decode thread needs between steps
(docs/BENCHMARKS.md, issue 17).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402
from mafioso.worker.control import Control  # noqa: E402
from mafioso.worker.engines import load_engine  # noqa: E402

ANSWER = ("Listen up, pal: `total` walks the list and adds each number, then the print shows the sum. It never "
          "recurses and it calls nothing of its own, so the books stay clean, capisce?")


def clear_caches() -> None:
    """Empty every per-paste cache of the prompt and the claim checks."""
    from mafioso.core.claims import names, values
    from mafioso.prompts import facts

    for module in (facts, names, values):
        for name in dir(module):
            if hasattr(cache := getattr(module, name), "cache_clear"):
                cache.cache_clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="embedded")
    parser.add_argument("--pastes", type=int, default=324)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    engine = load_engine(WorkerConfig(base_model=args.base_model, adapter="none", device="cpu", dtype="float32"),
                         GenerationConfig())
    plain = getattr(engine, "plain", engine)
    rows = [row for name in ("validation", "train") for row in json.loads((ROOT / "data" / f"{name}.json").read_text())
            .values()][:args.pastes]
    requests = [(row["code"], row["prompt"]) for row in rows]
    answer = plain.tokenizer.encode(ANSWER, add_special_tokens=False)
    best = float("inf")
    for _ in range(args.repeat):
        clear_caches()
        started = time.perf_counter()
        for request in requests:
            plain.prompt_tokens(*request)  # the input guard's length check
            plain.prompt_ids([request])
            plain.groundings([request])
            plain.answers([request], [(answer, None)], [Control()])
        best = min(best, (time.perf_counter() - started) / len(requests) * 1000)
    print(json.dumps({"pastes": len(requests), "ms_per_request": round(best, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
