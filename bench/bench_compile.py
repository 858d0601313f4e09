"""Start-up cost of the compiled fast path: torch.compile of the prefill layer and of the decode step.

    python bench/bench_compile.py                  # one cache length for every slot
    python bench/bench_compile.py --long-slots 2   # short and long slots (DecoderSettings.long_slots)

Loads the embedded base with the shipped adapter as the worker does, builds ``FastDecoder`` with
``compile=True`` on whatever device there is (on a CPU through inductor's C++ backend: slower than a GPU in
absolute terms, but the number of compiled graphs is the same), then runs one decode step per batch-size
bucket. Prints the seconds of each phase and dynamo's graph counters as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso.core.config import COMPILE_SCOPES, GenerationConfig, WorkerConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--compile-scope", choices=COMPILE_SCOPES, default=WorkerConfig.compile_scope,
                        help="what torch.compile compiles: the whole step or each layer")
    parser.add_argument("--long-slots", type=int, default=None, help="slots for long prompts (default: all)")
    parser.add_argument("--dtype", default="bfloat16",
                        help="weights (default bf16, as on the GPU: a CPU's auto may pick int8, whose step compiles "
                             "in pieces around the quantized matmuls)")
    args = parser.parse_args(argv)

    from torch._dynamo.utils import counters

    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings, slot_length
    from mafioso.worker.fast_engine import build_decoder

    cfg, gen = WorkerConfig(base_model=args.base_model, fast_decode=False, dtype=args.dtype), GenerationConfig()
    engine = load_engine(cfg, gen)
    started = time.perf_counter()
    settings = DecoderSettings(slots=args.slots, max_len=slot_length(cfg, gen), compile=True,
                               compile_scope=args.compile_scope, long_slots=args.long_slots)
    decoder = build_decoder(engine.model, engine.tokenizer, gen, settings)
    decoder.warm_up()  # the prefill's compile (and on CUDA every bucket's graph)
    warmed = time.perf_counter()
    for b in decoder.buckets:
        decoder.step(b)
    done = time.perf_counter()
    print(json.dumps({"device": str(decoder.device), "scope": decoder.compile_scope, "slots": args.slots,
                      "short_slots": decoder.short_slots, "dtype": str(decoder.dtype),
                      "warm_up_s": round(warmed - started, 1), "warm_up_parts_s": decoder.warm_up_s,
                      "first_steps_s": round(done - warmed, 1),
                      "dynamo": dict(counters["stats"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
