"""Re-score saved eval answers with this checkout's static claim checks, running nothing.

    python bench/rescore_claims.py mafioso/adapter/eval mafioso/adapter-qwen2.5-coder-0.5b/eval

For a change to :mod:`mafioso.core.claims` (a new kind of claim, a narrower phrase): each EVAL_DIR's
``predictions.jsonl`` holds the model's answers, what the post-check served and the claims found then. The
static claims (invented names, false concepts, false roles) are found again on the model's text and the
post-check is applied again; the false outputs recorded then are kept (they need a sandboxed run, and the
model's text is the same).
Prints ``grounded`` and ``grounded_model`` as recorded and as re-scored, and every answer whose claims changed,
to be read by hand. The files are not rewritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso.core.claim_check import NOTHING_SURE, drop_unsupported  # noqa: E402
from mafioso.core.claims import claim_kind, static_claims  # noqa: E402


def _label(claim: dict) -> str:
    return f"{claim_kind(claim)}: {claim['claim']!r}"


def _recorded_claims(row: dict) -> list[dict]:
    """The claims recorded for the model's own text of one ``predictions.jsonl`` row."""
    return (row.get("unsupported_raw") if row.get("raw_prediction") else row.get("unsupported")) or []


def _recorded(folder: Path) -> dict:
    """The metrics recorded for the answers in ``folder``: its own ``metrics.json``, or for ``eval/base`` the
    base model's entry in the parent's."""
    if (folder / "metrics.json").exists():
        metrics = json.loads((folder / "metrics.json").read_text())
        return metrics.get("adapter") or metrics["base"]
    return json.loads((folder.parent / "metrics.json").read_text())["base"]


def rescore(row: dict) -> tuple[list[dict], list[dict], str]:
    """The model's claims, the served answer's claims and the served text of one ``predictions.jsonl`` row, as
    this checkout finds them (false outputs as recorded, kept where their sentence is still served)."""
    model_text = row.get("raw_prediction") or row["prediction"]
    outputs = [c for c in _recorded_claims(row) if c["kind"] == "false output"]
    model = [*static_claims(row["code"], model_text), *outputs]
    kept, dropped = drop_unsupported(row["code"], model_text)
    served_text = (kept or NOTHING_SURE) if dropped else model_text
    served = [*static_claims(row["code"], served_text), *(c for c in outputs if c["text"] in served_text)]
    return model, served, served_text


def main(argv: list[str] | None = None) -> int:
    """Print the recorded and re-scored figures of each eval folder and every answer whose claims changed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dirs", nargs="+", type=Path, metavar="EVAL_DIR")
    args = parser.parse_args(argv)
    for folder in args.eval_dirs:
        rows = [json.loads(line) for line in (folder / "predictions.jsonl").open()]
        recorded = _recorded(folder)
        served_ok = model_ok = 0
        changed = []
        for row in rows:
            model, served, served_text = rescore(row)
            model_ok += not model
            served_ok += not served
            before = _recorded_claims(row)
            if sorted(map(_label, model)) != sorted(map(_label, before)) or served_text != row["prediction"]:
                changed.append((row, model, before))
        print(f"== {folder}: {len(rows)} answers; grounded {recorded['grounded']:.3f} -> {served_ok / len(rows):.3f}, "
              f"grounded_model {recorded['grounded_model']:.3f} -> {model_ok / len(rows):.3f}; "
              f"{len(changed)} answers changed")
        for row, model, before in changed:
            print(f"-- {row['key']}: {'; '.join(map(_label, before)) or 'none'} -> "
                  f"{'; '.join(map(_label, model)) or 'none'}")
            for claim in model:
                if _label(claim) not in map(_label, before):
                    print(f"   {_label(claim)} in: {claim['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
