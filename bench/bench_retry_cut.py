"""Answer time with the claim cut on and off, one answer at a time as ``mafioso explain`` decodes it.

    python bench/bench_retry_cut.py --predictions EVAL_DIR/predictions.jsonl            # the served CPU engine
    python bench/bench_retry_cut.py --predictions ... --base-model qwen2.5-coder-0.5b --rounds 1

With retries on (the default), an answer the claim post-check would cut is decoded again from before its first
dropped sentence (``worker/retry.py``). Without the claim cut (``cut_unsupported``) the first attempt runs to its
end before the retry starts; with it, it stops right after that sentence. Loads the real model and shipped adapter
once, as ``mafioso explain`` does (the fast engine on this machine's CPU dtype), and answers each row of an eval's
``predictions.jsonl`` whose answer was retried there (``--also N`` adds N rows that were not: what the check at
each sentence's end costs an answer that needs no retry), one request at a time, the cut off then on, alternating
row by row (``--rounds`` times). Prints per row the seconds and tokens each way and whether the served texts are the
same, then the totals, and one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402
from mafioso.worker.control import Control  # noqa: E402
from mafioso.worker.engines import load_engine  # noqa: E402


def _answer(engine, gen: GenerationConfig, code: str):
    """One answer with ``gen`` (the cut on or off), timed."""
    engine.gen = engine.plain.gen = gen  # the only setting that differs is read by the retries, per call
    started = time.perf_counter()
    [answer] = engine.generate([(code, None)], [Control()])
    return time.perf_counter() - started, answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, required=True, help="an eval's predictions.jsonl")
    parser.add_argument("--base-model", default="embedded")
    parser.add_argument("--adapter", default="default")
    parser.add_argument("--also", type=int, default=5, metavar="N", help="rows that were not retried, too")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = [json.loads(line) for line in args.predictions.read_text().splitlines() if line.strip()]
    chosen = [r for r in rows if r.get("retried")] + [r for r in rows if not r.get("retried")][:args.also]
    gen = GenerationConfig()
    off, on = dataclasses.replace(gen, cut_unsupported="off"), dataclasses.replace(gen, cut_unsupported="on")
    engine = load_engine(WorkerConfig(base_model=args.base_model, adapter=args.adapter, device="cpu"), gen)
    try:
        _answer(engine, off, chosen[0]["code"])  # warm-up
        results = []
        for row in chosen:
            times = {"off": [], "on": []}
            for _ in range(args.rounds):
                for name, setting in (("off", off), ("on", on)):
                    seconds, answer = _answer(engine, setting, row["code"])
                    times[name].append(seconds)
                    times[name + "_answer"] = answer
            a_off, a_on = times["off_answer"], times["on_answer"]
            result = {"key": row["key"], "retried_in_eval": bool(row.get("retried")),
                      "off_s": statistics.median(times["off"]), "on_s": statistics.median(times["on"]),
                      "off_retried": a_off.retried, "on_retried": a_on.retried, "off_dropped": a_off.dropped,
                      "on_dropped": a_on.dropped, "same_text": a_off.text == a_on.text,
                      "off_words": len(a_off.text.split()), "on_words": len(a_on.text.split())}
            results.append(result)
            print(f"{row['key']:<16} off {result['off_s']:6.2f} s (retried {a_off.retried}, dropped "
                  f"{a_off.dropped})  on {result['on_s']:6.2f} s (retried {a_on.retried}, dropped {a_on.dropped})"
                  f"  same text: {result['same_text']}", flush=True)
    finally:
        engine.close()
    summary = {}
    for group, members in (("retried", [r for r in results if r["retried_in_eval"]]),
                           ("not retried", [r for r in results if not r["retried_in_eval"]])):
        if members:
            off_s, on_s = sum(r["off_s"] for r in members), sum(r["on_s"] for r in members)
            summary[group] = {"rows": len(members), "off_s": round(off_s, 2), "on_s": round(on_s, 2),
                              "saved": round(1 - on_s / off_s, 3),
                              "same_text": sum(r["same_text"] for r in members),
                              "dropped_off": sum(r["off_dropped"] for r in members),
                              "dropped_on": sum(r["on_dropped"] for r in members),
                              "words_off": sum(r["off_words"] for r in members),
                              "words_on": sum(r["on_words"] for r in members)}
            s = summary[group]
            print(f"{group}: {s['rows']} rows, {s['off_s']} s without the cut, {s['on_s']} s with it "
                  f"({s['saved']:+.1%} saved); same served text {s['same_text']}/{s['rows']}; sentences dropped "
                  f"{s['dropped_off']} / {s['dropped_on']}; words {s['words_off']} / {s['words_on']}")
    print(json.dumps({"base_model": args.base_model, "rows": results, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
