"""Does the model know when it is wrong? Its confidence in hand-read false sentences against true ones (issue 16).

    python bench/sentence_confidence.py --base-model qwen2.5-coder-0.5b               # log-probs only
    python bench/sentence_confidence.py --base-model qwen2.5-coder-0.5b --samples 6   # and self-consistency

If the sentences a reader found false were the ones the model was unsure of, a serving rule could drop or redo
them (as the claim post-check does for what the code contradicts). The labels come from the readers' verdicts
(``bench/unseen_verdicts.json``, :mod:`bench.read_unseen`): in a wrong answer, each sentence holding a quote of
its ``why`` is false; every sentence of a right answer is true; the other sentences of wrong answers are left out
(a strict reader quotes the first false one, not every one). ``--answered-by`` picks the answers by the start of
their ``answered_by`` (default: Qwen's shipped adapter, every machine). Each sentence gets, under the loaded
model with the prompt it was answered from:

* its tokens' mean and lowest log-probability, mean entropy and share under 10 %, teacher-forced (one forward
  pass per answer);
* with ``--samples K``: K answers sampled per snippet (temperature 0.8, top-p 0.95, seeded, no retries), and the
  share of the sentence's content words (bigrams) found in each, averaged (SelfCheckGPT's n-gram idea).

Printed: for each score, the AUROC of "false sentences look riskier than true ones" (0.5 = no better than a coin;
1.0 = a perfect detector), with the counts.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from bench.read_unseen import SETS, VERDICTS, load_verdicts  # noqa: E402
from mafioso.core.claims.text import sentences  # noqa: E402

#: Words that say nothing about the code: left out of the self-consistency overlap.
FILLER = frozenset("""a an the and or but so of to in on at by for with from as is are was were be been it its this
that these those he she they you your his her their him them we i me my our us there here then than when while if
else what which who how why where each every any all some no not only just also too very more most less one two
first second last next other same own up down out off over into about after before again does do did done has have
had get gets got make makes made let says say like can could would should will may might must boss kid pal paisan
capisce family racket deal listen here's that's""".split())


def quotes(why: str) -> list[str]:
    """The quoted parts of a verdict's ``why`` (12 characters or more: the false sentence's words)."""
    return [part for pair in re.findall(r"'([^']{12,})'|\"([^\"]{12,})\"", why) for part in pair if part]


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[`.,;:]", " ", text.lower()).split())


def holds(sentence: str, quote: str) -> bool:
    """Whether ``sentence`` holds ``quote`` (backticks and punctuation aside; "..." in a quote skips words)."""
    parts = [_plain(part) for part in re.split(r"\.\.\.|…", quote) if _plain(part)]
    return bool(parts) and all(part in _plain(sentence) for part in parts)


def labelled(verdicts: dict[str, dict], answered_by: str) -> list[dict]:
    """Each chosen answer with its sentences and their labels: 1 false, 0 true, None unknown."""
    rows = []
    for verdict in verdicts.values():
        if not verdict["answered_by"].startswith(answered_by):
            continue
        said = sentences(verdict["text"])
        if verdict["right"]:
            labels = [0] * len(said)
        else:
            found = quotes(verdict["why"])
            labels = [1 if any(holds(sentence, quote) for quote in found) else None for sentence in said]
        rows.append({**verdict, "sentences": said, "labels": labels})
    return rows


def auroc(risky: list[float], safe: list[float]) -> float:
    """The chance that a false sentence scores riskier than a true one (ties count half)."""
    wins = sum((r > s) + 0.5 * (r == s) for r in risky for s in safe)
    return wins / (len(risky) * len(safe))


def _words(text: str) -> list[str]:
    found = re.findall(r"[a-z_][a-z0-9_']*|\d+(?:\.\d+)?", text.replace("`", " ").lower())
    return [word for word in found if word not in FILLER and len(word) > 1]


def support(sentence: str, samples: list[str]) -> float:
    """The mean share of ``sentence``'s content bigrams that each sample also has (1.0: none to check)."""
    def grams(text):
        words = _words(text)
        return list(zip(words, words[1:]))

    own = grams(sentence)
    if not own:
        return 1.0
    found = [set(grams(sample)) for sample in samples]
    return sum(sum(gram in bigrams for gram in own) / len(own) for bigrams in found) / len(found)


def token_scores(engine, code: str, text: str) -> list[tuple[int, int, float, float]]:
    """Each answer token's (start, end, log-probability, entropy), the answer teacher-forced after its prompt."""
    import torch

    from mafioso import prompts

    tokenizer = engine.tokenizer
    prompt = list(prompts.encode(tokenizer, code, None, persona_name=engine.persona,
                                 prompt_format=engine.prompt_format)["input_ids"])
    answer = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = answer["input_ids"]
    with torch.inference_mode():
        logits = engine.model(torch.tensor([prompt + ids], device=engine.device)).logits[0, len(prompt) - 1:-1]
    logp = torch.log_softmax(logits.float(), -1)
    chosen = logp[torch.arange(len(ids)), torch.tensor(ids, device=logp.device)].tolist()
    entropy = (-(logp.exp() * logp).sum(-1)).tolist()
    return [(start, end, lp, h) for (start, end), lp, h in zip(answer["offset_mapping"], chosen, entropy)]


def sentence_scores(text: str, said: list[str], tokens: list[tuple[int, int, float, float]]) -> list[dict | None]:
    """Per sentence of ``text``, its tokens' log-probability figures (None for a sentence with no token of its
    own)."""
    out, at = [], 0
    for sentence in said:
        start = max(text.find(sentence, at), at)
        end = start + len(sentence)
        at = end
        inside = [(lp, h) for s, e, lp, h in tokens if s >= start and e <= end and e > s]
        if not inside:
            out.append(None)
            continue
        lps = [lp for lp, _ in inside]
        out.append({"mean log-prob": -sum(lps) / len(lps), "lowest log-prob": -min(lps),
                    "mean entropy": sum(h for _, h in inside) / len(inside),
                    "share under 10 %": sum(lp < math.log(0.1) for lp in lps) / len(lps)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="", help="as for mafioso explain (default: embedded)")
    parser.add_argument("--adapter", default="default", help="adapter folder, 'default' or 'none'")
    parser.add_argument("--answered-by", default="Qwen2.5-Coder-0.5B + shipped adapter",
                        help="the answers read: their answered_by starts so")
    parser.add_argument("--samples", type=int, default=0, metavar="K", help="also K sampled answers per snippet")
    parser.add_argument("--verdicts", type=Path, default=VERDICTS)
    args = parser.parse_args(argv)
    rows = labelled(load_verdicts(args.verdicts), args.answered_by)
    if not rows:
        parser.error(f"no verdict is of answers by {args.answered_by!r}")
    from mafioso.core.config import GenerationConfig, WorkerConfig
    from mafioso.worker.control import Control
    from mafioso.worker.engines import load_engine
    from mafioso.worker.sampling import Sampling

    engine = load_engine(WorkerConfig(base_model=args.base_model, adapter=args.adapter),
                         GenerationConfig(retry_unsupported=0))
    try:
        scored = []  # (label, {score name: riskiness})
        drawn = {}
        if args.samples:
            asked = sorted({(row["set"], row["number"]) for row in rows})
            requests = [(SETS[which][number - 1][0], None) for which, number in asked for _ in range(args.samples)]
            controls = [Control(sampling=Sampling(0.8, 0.95, seed=1000 * number + k))
                        for _, number in asked for k in range(args.samples)]
            texts = [answer.text for answer in engine.generate(requests, controls)]
            drawn = {place: texts[i * args.samples:(i + 1) * args.samples] for i, place in enumerate(asked)}
        for row in rows:
            code = SETS[row["set"]][row["number"] - 1][0]
            figures = sentence_scores(row["text"], row["sentences"], token_scores(engine, code, row["text"]))
            for sentence, label, figure in zip(row["sentences"], row["labels"], figures, strict=True):
                if label is None or figure is None:
                    continue
                if drawn:
                    figure["self-consistency (bigrams)"] = -support(sentence, drawn[(row["set"], row["number"])])
                scored.append((label, figure))
    finally:
        engine.close()
    false = [figure for label, figure in scored if label == 1]
    true = [figure for label, figure in scored if label == 0]
    print(f"{len(rows)} answers read by hand ({args.answered_by!r}): {len(false)} false sentences, {len(true)} "
          "sentences of right answers")
    for name in scored[0][1]:
        print(f"  {name:28s} AUROC {auroc([f[name] for f in false], [f[name] for f in true]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
