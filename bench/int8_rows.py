"""int8 on the CPU: each row on its own range against one range per input (core/cpu_quant.py), same process.

    python bench/int8_rows.py                                  # Gemma + shipped adapter
    python bench/int8_rows.py --base-model qwen2.5-coder-0.5b  # Qwen + its adapter

Three figures for the int8 matmul as it is (``cpu_quant._matmul``: every row mapped onto [-1, 1]) and as it was
before 2026-12-06 (``per_input_range`` below: rows scaled by their largest magnitude, one range for the input):

* **batch invariance**: greedy answers (retries off) to the first 8 snippets of ``bench/read_unseen.py``'s set 1,
  decoded as a batch of 8 and inside the batch of all twenty: how many are the same text;
* **precision**: the mean negative log-likelihood of the first 16 validation rows' reference answers, one row at
  a time, against the merged model in fp32;
* **speed**: a 120-token answer to ``examples/fizzbuzz.py`` on the engine's decoder (``bench_cpu.fixed_answer``),
  the two matmuls alternating, median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from bench.bench_cpu import fixed_answer, machine, uptime  # noqa: E402
from bench.read_unseen import UNSEEN  # noqa: E402
from mafioso import prompts  # noqa: E402
from mafioso.core import cpu_quant  # noqa: E402
from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402

CURRENT = cpu_quant._matmul


def per_input_range(x: torch.Tensor, packed, row_sums: torch.Tensor) -> torch.Tensor:
    """The matmul before 2026-12-06: each row scaled by its largest magnitude, fbgemm's one range over the input."""
    if x.numel() == x.shape[-1]:
        return torch.ops.quantized.linear_dynamic(x, packed, cpu_quant.REDUCE_RANGE)
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)
    return torch.ops.quantized.linear_dynamic(x / scale, packed, cpu_quant.REDUCE_RANGE) * scale


MATMULS = {"per input (before)": per_input_range, "per row (now)": CURRENT}


def reference_nll(model, tokenizer, persona: str, prompt_format: int, rows: list[dict]) -> float:
    """Mean negative log-likelihood per token of each row's reference answer after its prompt, one row at a time."""
    total, count = 0.0, 0
    for row in rows:
        prompt = list(prompts.encode(tokenizer, row["code"], row["prompt"], persona_name=persona,
                                     prompt_format=prompt_format)["input_ids"])
        answer = tokenizer(row["mafia_explanation"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + answer])
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, len(prompt) - 1:-1].float(), -1)
        total -= logp.gather(-1, ids[0, len(prompt):, None]).sum().item()
        count += len(answer)
    return total / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="", help="as for mafioso explain (default: embedded)")
    parser.add_argument("--rounds", type=int, default=8, help="timed 120-token answers per matmul")
    args = parser.parse_args(argv)
    from mafioso.worker.engine import load_model_for
    from mafioso.worker.engines import load_engine

    print(f"# {json.dumps(machine())}; {uptime()}")
    rows = list(json.loads((ROOT / "data" / "validation.json").read_text()).values())[:16]
    fp32 = load_model_for(WorkerConfig(base_model=args.base_model, adapter="default", dtype="float32"))
    nll = {"fp32": reference_nll(fp32.model, fp32.tokenizer, fp32.persona, fp32.prompt_format, rows)}
    del fp32
    engine = load_engine(WorkerConfig(base_model=args.base_model, adapter="default", dtype="int8"),
                         GenerationConfig(retry_unsupported=0))
    requests = [(code, None) for code, _ in UNSEEN]
    ids = prompts.encode(engine.tokenizer, (ROOT / "examples" / "fizzbuzz.py").read_text(), None,
                         persona_name=engine.persona, prompt_format=engine.prompt_format)["input_ids"]
    same, times = {}, {name: [] for name in MATMULS}
    try:
        for name, matmul in MATMULS.items():
            cpu_quant._matmul = matmul
            eight, twenty = engine.generate(requests[:8]), engine.generate(requests)
            same[name] = sum(a.text == b.text for a, b in zip(eight, twenty))
            nll[name] = reference_nll(engine.model, engine.tokenizer, engine.persona, engine.prompt_format, rows)
        for round_ in range(args.rounds + 1):  # the first round warms up
            for name, matmul in MATMULS.items():
                cpu_quant._matmul = matmul
                seconds = fixed_answer(engine, ids)
                if round_:
                    times[name].append(seconds)
    finally:
        cpu_quant._matmul = CURRENT
        engine.close()
    print(f"\n| int8 matmul | answers the same in 8 and in 20 | reference NLL (fp32 {nll['fp32']:.4f}) | "
          f"120-token answer, s (median of {args.rounds}) |\n|---|---|---|---|")
    for name in MATMULS:
        print(f"| {name} | {same[name]} of 8 | {nll[name]:.4f} | {statistics.median(times[name]):.2f} |")
    print(f"# {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
