"""Put a trained run into the package as a shipped adapter, with its card, loss plot and eval.

    python bench/ship_adapter.py RUN_DIR BASE_RUN_DIR mafioso/adapter --base embedded --note "..."

RUN_DIR is one run of bench/sweep.py (RUN_DIR/adapter, RUN_DIR/eval; with ``--epoch N`` its snapshot after
epoch N, RUN_DIR/adapter.epochs/epoch-N and RUN_DIR/eval-eN), BASE_RUN_DIR the same sweep's bare-base eval. The
answers get the claim post-check the engine now applies (mafioso.core.claim_check) and are re-scored with the
grounded check (a sweep may predate both: each reads only the answer's text and the code), the card is
regenerated with its scores (mafioso.trainer.model_card) and every machine path is dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mafioso.core.claim_check import NOTHING_SURE, drop_unsupported  # noqa: E402
from mafioso.core.base_model import BASES  # noqa: E402
from mafioso.prompts import persona as find_persona  # noqa: E402
from mafioso.trainer.dataset import load_samples  # noqa: E402
from mafioso.trainer.evaluate import check_claims, reference_metrics, write_chart, write_predictions  # noqa: E402
from mafioso.trainer.metrics import Prediction, summarize  # noqa: E402
from mafioso.trainer.model_card import portable, write_loss_plot, write_model_card  # noqa: E402
from mafioso.trainer.sandbox import SnippetRunner  # noqa: E402


def _served(p: Prediction) -> Prediction:
    """The answer as the engine serves it now: the claim post-check (mafioso.core.claim_check, on by default) applied to
    the text the run produced (a sweep may predate the check; the check reads only the text and the code)."""
    if p.raw_prediction:
        return p  # the run applied it already
    text, dropped = drop_unsupported(p.code, p.prediction)
    if not dropped:
        return p
    return dataclasses.replace(p, prediction=text or NOTHING_SURE, dropped=dropped, raw_prediction=p.prediction)


def _rescored(eval_dir: Path, runner: SnippetRunner, markers: tuple[str, ...]) -> tuple[dict, list[Prediction]]:
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    measured = metrics.get("adapter") or metrics["base"]
    fields = {f.name for f in dataclasses.fields(Prediction)}
    rows = [json.loads(line) for line in (eval_dir / "predictions.jsonl").open()]
    predictions = [_served(Prediction(**{k: v for k, v in r.items() if k in fields})) for r in rows]
    predictions = check_claims(predictions, runner)
    again = summarize(predictions, measured.get("loss"), measured.get("response_tokens", 0),
                      measured.get("generation_s", 0.0), markers)
    keys = ("grounded", "grounded_samples", "unsupported", "grounded_model", "dropped_rate", "persona_rate",
            "identifier_recall", "code_leak_rate", "mean_words", "rouge_l_f1")
    return {**measured, **{k: again[k] for k in keys}}, predictions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("base_run", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--base", required=True, choices=sorted(BASES))
    parser.add_argument("--validation", default="data/validation.json")
    parser.add_argument("--note", default="")
    parser.add_argument("--epoch", type=int, default=0, help="ship the run's snapshot after this epoch")
    args = parser.parse_args()
    trained_dir = args.run / "adapter.epochs" / f"epoch-{args.epoch}" if args.epoch else args.run / "adapter"
    eval_dir = args.run / f"eval-e{args.epoch}" if args.epoch else args.run / "eval"

    runner = SnippetRunner()
    persona = json.loads((trained_dir / "mafioso.json").read_text())["config"].get("persona") or "mafioso"
    markers = find_persona(persona).markers  # the voice the run was trained in and is scored in
    adapter, predictions = _rescored(eval_dir, runner, markers)
    base_metrics, base_predictions = _rescored(args.base_run / "eval", runner, markers)
    reference = reference_metrics(load_samples([args.validation]), runner, persona)
    run_info = json.loads((eval_dir / "metrics.json").read_text())
    samples = run_info["samples"]

    target = args.target
    if target.exists():
        shutil.rmtree(target)
    (target / "eval" / "base").mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "training_log.json"):
        shutil.copy2(trained_dir / name, target / name)
        (target / name).chmod(0o644)
    trained = json.loads((trained_dir / "mafioso.json").read_text())
    source = BASES[args.base]
    peft_config = json.loads((target / "adapter_config.json").read_text())  # the training machine's cache path
    peft_config["base_model_name_or_path"] = source.hf_id or args.base
    (target / "adapter_config.json").write_text(json.dumps(peft_config, indent=2) + "\n")
    command = trained["command"].split()
    if "--base-model" in command:  # trained from the GGUF whose sha256 is the named base's: say its name
        command[command.index("--base-model") + 1] = args.base
    cfg = {**trained["config"], "base_model": args.base}
    stats = trained["stats"]
    final = args.run / "adapter" / "mafioso.json"
    if args.epoch and final.is_file():  # the run's rate and peak memory hold at every epoch; its wall time does not
        run_stats = json.loads(final.read_text())["stats"]
        stats = {**{k: run_stats.get(k) for k in ("train_tokens_per_s", "peak_gpu_memory_gb")}, **stats}
    write_model_card(target, cfg=cfg, base={"name": args.base, **source.facts()}, data_files=trained["data_files"],
                     stats=stats, command=["mafioso", *command[command.index("train"):]],
                     counts=trained["counts"], licence=source.licence, prompt_format=trained.get("prompt_format", 1),
                     evaluation={"adapter": adapter, "base": base_metrics, "reference": reference,
                                 "samples": samples})
    info = json.loads((target / "mafioso.json").read_text())
    if args.note:
        info["note"] = args.note
        (target / "mafioso.json").write_text(json.dumps(info, indent=2) + "\n")
    write_loss_plot(json.loads((target / "training_log.json").read_text())["log_history"], target / "loss.png")
    write_predictions(target / "eval" / "predictions.jsonl", predictions)
    write_predictions(target / "eval" / "base" / "predictions.jsonl", base_predictions)
    config = {**run_info["config"], "adapter": "default", "base_model": args.base, "compare_base": True,
              "grounded": "re-scored by bench/ship_adapter.py on the same answers", "sandbox": runner.summary()}
    config = {k: portable(v) for k, v in config.items()}
    results = {"base": base_metrics, "adapter": adapter}
    (target / "eval" / "metrics.json").write_text(json.dumps(
        {**results, "reference": reference, "config": config, "samples": samples}, indent=2) + "\n")
    write_chart(results, target / "eval" / "comparison.png", samples, reference)
    print(json.dumps({k: {m: v.get(m) for m in ("grounded", "grounded_model", "dropped_rate", "identifier_recall",
                                                  "persona_rate", "stop_rate", "loop_rate", "code_leak_rate", "loss")}
                      for k, v in {**results, "reference": reference}.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
