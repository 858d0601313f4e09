"""Is a greedy answer the same alone and beside other requests? One engine, the same snippets both ways.

    python bench/batch_invariance.py                                   # Gemma + shipped adapter, this machine
    python bench/batch_invariance.py --base-model qwen2.5-coder-0.5b --set 2 --retry-unsupported 2
    python bench/batch_invariance.py --base-model /tmp/bundle/gemma.gguf --no-compile-decode   # on a GPU
    python bench/batch_invariance.py --prefill batched                 # the GPU's padded prefill batches

The twenty snippets of one ``bench/read_unseen.py`` set are answered as one batch, then each alone, by the same
engine (retries off by default: the decoding alone); prints how many answers are the same text, and where each
other pair parts. ``--prefill``: as configured (a CPU prefills each prompt on its own, a GPU in padded batches),
``alone`` or ``batched`` (``DecoderSettings.prefill_tokens``). ``--out`` keeps both sets of answers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from bench.read_unseen import SETS  # noqa: E402
from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402
from mafioso.worker.decoder_settings import GPU_PREFILL_TOKENS  # noqa: E402

PREFILL = {"alone": 0, "batched": GPU_PREFILL_TOKENS}


def parted(a: str, b: str) -> int:
    """Where two texts first differ."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="", help="as for mafioso explain (default: embedded)")
    parser.add_argument("--adapter", default="default")
    parser.add_argument("--set", type=int, choices=sorted(SETS), default=1)
    parser.add_argument("--retry-unsupported", type=int, default=0, metavar="N")
    parser.add_argument("--prefill", choices=("configured", *PREFILL), default="configured")
    parser.add_argument("--no-compile-decode", action="store_true", help="CUDA: leave the decode step uncompiled")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from mafioso.worker.engines import load_engine

    requests = [(code, None) for code, _ in SETS[args.set]]
    engine = load_engine(WorkerConfig(base_model=args.base_model, adapter=args.adapter,
                                      compile_decode=not args.no_compile_decode),
                         GenerationConfig(retry_unsupported=args.retry_unsupported))
    if args.prefill != "configured":
        if not hasattr(engine, "settings"):
            parser.error("--prefill needs the fast decode path")
        engine.settings = dataclasses.replace(engine.settings, prefill_tokens=PREFILL[args.prefill])
    try:
        started = time.perf_counter()
        together = [answer.text for answer in engine.generate(requests)]
        batch_s = time.perf_counter() - started
        alone = [engine.generate([request])[0].text for request in requests]
    finally:
        engine.close()
    same = sum(a == b for a, b in zip(alone, together))
    for number, (a, b) in enumerate(zip(alone, together), 1):
        if a != b:
            at = parted(a, b)
            print(f"{number}: parts at character {at}: alone {a[at:at + 40]!r} | in the batch {b[at:at + 40]!r}")
    print(json.dumps({"base": args.base_model or "embedded", "set": args.set, "prefill": args.prefill,
                      "retries": args.retry_unsupported, "same": same, "of": len(requests),
                      "batch_s": round(batch_s, 1)}))
    if args.out:
        args.out.write_text(json.dumps({"alone": alone, "together": together}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
