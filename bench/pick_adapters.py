"""Rank a GPU round's scored adapters against issue 16's targets and name the ones worth bringing back.

    python bench/pick_adapters.py /tmp/runs --max-mb 58 --list $OUT/picked.txt

Reads every ``mafioso eval`` of an adapter under the folder (bench/sweep.py's ``<run>/eval`` and, for epoch
snapshots, ``<run>/eval-e<N>``), prints one table row per adapter with the targets it misses, and writes the
adapters' weight files, relative to the folder, best first, into ``--list`` (for ``tar -T``): each base's best
first, then the next best of each, while they fit in ``--max-mb`` (a device call brings back 64 MiB at most).
Best: the fewest targets missed besides identifier recall, then the highest recall, then the highest grounded
before the post-check. An adapter that answered nothing is listed, never picked. Picking on the validation split
flatters the pick: read its answers on unseen code.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from pathlib import Path

#: issue 16's done-when, per metric of mafioso eval: (comparison, target)
TARGETS = {"grounded": (operator.ge, 0.85), "persona_rate": (operator.ge, 0.95),
           "identifier_recall": (operator.ge, 0.80), "code_leak_rate": (operator.le, 0.0),
           "stop_rate": (operator.ge, 0.99), "loop_rate": (operator.le, 0.0)}
SHOWN = ("grounded", "grounded_model", "identifier_recall", "persona_rate", "code_leak_rate", "stop_rate",
         "loop_rate", "mean_words")


def adapter_of(eval_dir: Path) -> Path:
    """The adapter folder an eval folder of bench/sweep.py scored."""
    if eval_dir.name.startswith("eval-e"):
        return eval_dir.parent / "adapter.epochs" / f"epoch-{eval_dir.name.removeprefix('eval-e')}"
    return eval_dir.parent / "adapter"


def candidates(root: Path) -> list[dict]:
    """Every scored adapter under ``root``: its folder, base, metrics and the targets it misses, best first."""
    found = []
    for metrics_file in sorted(root.rglob("metrics.json")):
        metrics = json.loads(metrics_file.read_text()).get("adapter")
        adapter = adapter_of(metrics_file.parent)
        if metrics is None or not (adapter / "adapter_model.safetensors").is_file():
            continue  # a bare base's eval, or weights that are not here
        base = json.loads((adapter / "mafioso.json").read_text())["base_model"]
        missed = [name for name, (holds, target) in TARGETS.items()  # a figure eval could not compute: missed
                  if metrics.get(name) is None or not holds(metrics[name], target)]
        found.append({"adapter": adapter, "base": base, "metrics": metrics, "missed": missed})
    return sorted(found, key=lambda c: (len([m for m in c["missed"] if m != "identifier_recall"]),
                                        -(c["metrics"].get("identifier_recall") or 0),
                                        -(c["metrics"].get("grounded_model") or 0)))


def pick(ranked: list[dict], max_bytes: int) -> list[dict]:
    """Each base's best first, then the next best of each, while their weights fit in ``max_bytes``; never an
    adapter whose answers had no words (a training run that went NaN)."""
    by_base: dict[str, list[dict]] = {}
    for candidate in ranked:
        by_base.setdefault(candidate["base"], []).append(candidate)
    picked, used = [], 0
    for depth in range(max((len(c) for c in by_base.values()), default=0)):
        for queue in by_base.values():
            if depth < len(queue) and queue[depth]["metrics"].get("mean_words"):  # one that answered nothing: never
                size = (queue[depth]["adapter"] / "adapter_model.safetensors").stat().st_size
                if used + size <= max_bytes:
                    picked.append(queue[depth])
                    used += size
    return picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the folder holding the sweeps' run folders")
    parser.add_argument("--max-mb", type=float, default=58.0, help="most megabytes of weights to pick")
    parser.add_argument("--list", type=Path, help="write the picked weight files here, relative to ROOT")
    args = parser.parse_args()
    ranked = candidates(args.root)
    picked = pick(ranked, int(args.max_mb * 1e6))
    print("| adapter | base | " + " | ".join(SHOWN) + " | misses | picked |")
    print("|---" * (len(SHOWN) + 4) + "|")
    for c in ranked:
        cells = [f"{c['metrics'][k]:.3f}" if isinstance(c["metrics"].get(k), (int, float)) else "-" for k in SHOWN]
        print(f"| {c['adapter'].relative_to(args.root)} | {c['base']} | " + " | ".join(cells)
              + f" | {', '.join(c['missed']) or 'none'} | {'yes' if c in picked else ''} |")
    if args.list:
        args.list.write_text("".join(f"{(c['adapter'] / 'adapter_model.safetensors').relative_to(args.root)}\n"
                                     for c in picked))
    return 0 if ranked else 1


if __name__ == "__main__":
    sys.exit(main())
