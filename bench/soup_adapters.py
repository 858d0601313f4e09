"""One adapter from several of the same recipe: the mean of their weight changes (a model soup; issue 16).

    python bench/soup_adapters.py --out soup out/s43 out/s47 out/s53 out/s59              # exact: rank 4 x r
    python bench/soup_adapters.py --out soup --rank 64 out/s43 out/s47 out/s53 out/s59    # truncated to rank 64

Seeds of one recipe on the 270M base spread widely (served recall 0.72-0.83 over eight, docs/BENCHMARKS.md):
which one is shipped is a draw. Averaging fine-tunes of one base (Wortsman et al., 2022, "Model soups") keeps
what the runs share and shrinks what each one made up. A LoRA adapter's change to a layer is ``s B A`` (``s`` =
alpha / r); the mean of N of them is itself a LoRA of rank N r: ``B = [B_1 ... B_N] / N`` side by side and ``A``
stacked, with ``s`` kept (alpha scaled with r). ``--rank R`` keeps the R largest singular directions of each
layer's mean change (an SVD), for an adapter of the first one's size. Every adapter must target the same layers of
the same base; ``mafioso.json`` and the tokenizer files come from the first, with the soup's parts recorded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def _scale(config: dict) -> float:
    return config["lora_alpha"] / config["r"]


def soup(adapters: list[dict[str, torch.Tensor]], configs: list[dict], rank: int = 0,
         ) -> tuple[dict[str, torch.Tensor], dict]:
    """The mean change of ``adapters`` (their weights and adapter configs) as one adapter's weights and config:
    exact (rank = the sum of theirs) or, with ``rank``, each layer's best approximation of that rank."""
    keys = set(adapters[0])
    for weights, config in zip(adapters[1:], configs[1:]):
        if set(weights) != keys or set(config["target_modules"]) != set(configs[0]["target_modules"]):
            raise ValueError("every adapter must adapt the same layers (same base, same target modules)")
    dtype = adapters[0][next(iter(keys))].dtype
    out_config = dict(configs[0], rank_pattern={}, alpha_pattern={})
    scale = _scale(configs[0])  # the soup's own s: the first adapter's, at the soup's rank
    weights = {}
    for a_key in sorted(key for key in keys if ".lora_A." in key):
        b_key = a_key.replace(".lora_A.", ".lora_B.")
        parts = [(w[b_key].float() * _scale(c) / len(adapters), w[a_key].float()) for w, c in zip(adapters, configs)]
        b = torch.cat([b for b, _ in parts], dim=1) / scale  # s B A = mean of s_i B_i A_i
        a = torch.cat([a for _, a in parts], dim=0)
        if rank:
            u, sing, vh = torch.linalg.svd(b @ a, full_matrices=False)
            root = sing[:rank].sqrt()
            b, a = u[:, :rank] * root, root[:, None] * vh[:rank]
        weights[a_key], weights[b_key] = a.to(dtype).contiguous(), b.to(dtype).contiguous()
    out_config["r"] = rank or sum(config["r"] for config in configs)
    out_config["lora_alpha"] = scale * out_config["r"]
    return weights, out_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("adapters", nargs="+", type=Path, help="adapter folders (mafioso train --output)")
    parser.add_argument("--out", type=Path, required=True, help="the soup's folder (written atomically)")
    parser.add_argument("--rank", type=int, default=0, help="keep this many directions per layer (0: exact)")
    args = parser.parse_args(argv)
    if len(args.adapters) < 2:
        parser.error("a soup needs two adapters or more")
    configs = [json.loads((folder / CONFIG).read_text()) for folder in args.adapters]
    weights, config = soup([load_file(str(folder / WEIGHTS)) for folder in args.adapters], configs, args.rank)
    staging = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(args.adapters[0], staging, ignore=shutil.ignore_patterns(WEIGHTS, CONFIG, "eval", "*.png"))
    save_file(weights, str(staging / WEIGHTS), metadata={"format": "pt"})
    (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    card = staging / "mafioso.json"
    if card.is_file():
        meta = json.loads(card.read_text())
        meta["soup"] = {"parts": [str(folder) for folder in args.adapters], "rank": config["r"],
                        "seeds": [json.loads((f / "mafioso.json").read_text()).get("config", {}).get("seed")
                                  for f in args.adapters if (f / "mafioso.json").is_file()]}
        card.write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(args.out, ignore_errors=True)
    staging.rename(args.out)
    print(f"{args.out}: the mean of {len(args.adapters)} adapters, rank {config['r']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
