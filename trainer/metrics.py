"""The scores behind ``mafioso eval``: text metrics on one answer, their averages, and the response loss.

Everything here but :func:`response_nll` is plain Python on strings, so it is tested on hand-made inputs:

* ROUGE-L F1 on lowercase ``[a-z0-9]+`` tokens (the tokenisation of Google's ``rouge-score``, no stemming);
* identifier recall: the share of the names the code defines or calls that the answer mentions;
* grounded: the share of answers with no claim the code contradicts (:mod:`mafioso.trainer.grounding`);
* persona, code-leak and stop rates, mean words and tokens/s over a list of :class:`Prediction`;
* the loop rate: the share of answers that looped (``Generation.looped``, :mod:`mafioso.core.loop_guard`), whether
  the engine cut them (``stop_loops``, then they count as stopped too) or they ran to the token limit.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import math
import re
from dataclasses import dataclass

from mafioso.core.text_checks import PERSONA_MARKERS, contains_code, persona_markers, words
from mafioso.trainer.grounding import summarize_claims

_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
#: Names too common to count: every builtin (print, len, range, …) and every keyword.
_SKIP = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
MIN_IDENTIFIER_LENGTH = 3


@dataclass(frozen=True)
class Prediction:
    """One generated answer next to its reference (a row of ``predictions.jsonl``)."""

    key: str
    code: str
    reference: str
    prediction: str
    tokens: int
    latency_s: float  # wall time of the batch the sample was generated in
    finished: bool
    code_leak: bool = False  # the engine found code in the answer (and removed it from ``prediction``)
    looped: bool = False  # the answer looped (mafioso.core.loop_guard); cut there when the engine stops loops
    unsupported: list[dict] | None = None  # mafioso.trainer.grounding claims the code contradicts; None: not checked
    dropped: int = 0  # sentences the engine's claim post-check removed from ``prediction`` (mafioso.core.claim_check)
    raw_prediction: str = ""  # the model's answer before that check: its first when it was decoded again ("" when
    # the check changed nothing)
    retried: int = 0  # times the engine decoded it again from before a dropped sentence (mafioso.worker.retry)
    unsupported_raw: list[dict] | None = None  # the claims of ``raw_prediction`` (None: nothing was removed)


# ------------------------------------------------------------------------------------------ ROUGE-L


def rouge_tokens(text: str) -> list[str]:
    """The tokens ROUGE compares: lowercase runs of ASCII letters and digits."""
    return _ROUGE_TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (two-row dynamic programme)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (LCS precision and recall, harmonic mean); 0.0 when either text has no tokens."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    if not pred or not ref:
        return 0.0
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# ------------------------------------------------------------------------------- identifier recall


def _keep(name: str) -> bool:
    return len(name) >= MIN_IDENTIFIER_LENGTH and name not in _SKIP


def code_identifiers(code: str) -> set[str]:
    """Names the code defines or calls: def/class names, assigned names and attributes, called names.

    ``self.members = []`` gives ``members``; ``f.readlines()`` gives ``readlines``. Builtins, keywords and
    names shorter than three characters are skipped. Code that does not parse falls back to every
    identifier-like word in it.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: null bytes in the source
        return {name for name in _IDENTIFIER.findall(code) if _keep(name)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                names.add(node.func.id)
            elif isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
    return {name for name in names if _keep(name)}


def mentions(text: str, name: str) -> bool:
    """True if ``name`` appears in ``text`` as a whole word, ignoring case."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def identifier_recall(code: str, answer: str) -> float | None:
    """Share of :func:`code_identifiers` the answer mentions; None when the code has none."""
    names = code_identifiers(code)
    if not names:
        return None
    return sum(mentions(answer, name) for name in names) / len(names)


# ------------------------------------------------------------------------------------ aggregation


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def perplexity(loss: float | None) -> float | None:
    """exp(loss), or None when there is no loss or it would overflow a float."""
    if loss is None or loss > 700:
        return None
    return math.exp(loss)


def summarize(predictions: list[Prediction], loss: float | None, response_tokens: int,
              generation_s: float, markers: tuple[str, ...] = PERSONA_MARKERS) -> dict:
    """All metrics of one model over one dataset, as a flat JSON-ready dict; ``markers``: the voice the
    persona rate looks for (the adapter's persona's)."""
    recalls = [r for r in (identifier_recall(p.code, p.prediction) for p in predictions) if r is not None]
    n = len(predictions)
    generated = sum(p.tokens for p in predictions)
    return {
        "loss": loss,
        "perplexity": perplexity(loss),
        "response_tokens": response_tokens,
        "rouge_l_f1": _mean([rouge_l_f1(p.prediction, p.reference) for p in predictions]),
        "identifier_recall": _mean(recalls),
        "identifier_samples": len(recalls),
        **summarize_claims([p.unsupported for p in predictions]),  # grounded, grounded_samples, unsupported
        # the model's own answers, before the claim post-check: what training has to improve
        "grounded_model": summarize_claims([p.unsupported_raw if p.raw_prediction else p.unsupported
                                            for p in predictions])["grounded"],
        "dropped_rate": _mean([float(p.dropped > 0) for p in predictions]),
        "retried_rate": _mean([float(p.retried > 0) for p in predictions]),
        "persona_rate": _mean([float(bool(persona_markers(p.prediction, markers))) for p in predictions]),
        "code_leak_rate": _mean([float(p.code_leak or contains_code(p.prediction)) for p in predictions]),
        "stop_rate": _mean([float(p.finished) for p in predictions]),
        "loop_rate": _mean([float(p.looped) for p in predictions]),
        "mean_words": _mean([float(len(words(p.prediction))) for p in predictions]),
        "mean_tokens": generated / n if n else None,
        "generated_tokens": generated,
        "generation_s": generation_s,
        "tokens_per_s": generated / generation_s if generation_s > 0 else None,
    }


# ---------------------------------------------------------------------------------- response loss


#: Most bytes of fp32 logits one loss batch may hold (Gemma's 262k vocabulary makes them the peak).
LOSS_LOGITS_BYTES = 2 << 30


def loss_batches(rows: list[dict], batch_size: int, vocab: int) -> list[list[dict]]:
    """Consecutive batches of at most ``batch_size`` rows whose kept logits (rows x (longest response + 1) x
    vocab, fp32) stay under :data:`LOSS_LOGITS_BYTES`; a single row always forms a batch."""
    batches: list[list[dict]] = []
    current: list[dict] = []
    for row in rows:
        keep = 1 + max(sum(r["completion_mask"]) for r in [*current, row])
        if current and (len(current) >= batch_size or (len(current) + 1) * keep * vocab * 4 > LOSS_LOGITS_BYTES):
            batches.append(current)
            current = []
        current.append(row)
    if current:
        batches.append(current)
    return batches


def response_nll(model, rows: list[dict], pad_token_id: int, device, batch_size: int,
                 progress=None) -> tuple[float, int]:
    """Summed NLL and count of the response tokens of ``rows`` (``prompts.encode`` output), teacher-forced.

    Rows are left-padded so every response sits at the end of the batch, and only the logits of the
    longest response (+1 for the shift) are computed: the full-vocabulary logits of whole prompts would
    not fit in memory for Gemma's 262k vocabulary. Position ids skip the padding, so a padded row scores
    exactly as it would alone. ``progress`` (a tqdm bar) is advanced by the rows done.
    """
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    model.eval()  # no LoRA dropout while scoring
    vocab = model.config.get_text_config().vocab_size
    with torch.no_grad():
        for batch in loss_batches(rows, batch_size, vocab):
            width = max(len(r["input_ids"]) for r in batch)
            ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for i, row in enumerate(batch):
                n = len(row["input_ids"])
                ids[i, width - n:] = torch.tensor(row["input_ids"])
                mask[i, width - n:] = 1
                labels[i, width - n:] = torch.tensor(
                    [t if m else -100 for t, m in zip(row["input_ids"], row["completion_mask"])])
            keep = 1 + max(sum(r["completion_mask"]) for r in batch)  # logits that predict a response token
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device), logits_to_keep=keep).logits
            logits = logits[:, :-1].float()
            target = labels[:, width - keep + 1:].to(logits.device)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                     ignore_index=-100, reduction="sum").item()
            count += int((target != -100).sum())
            if progress is not None:
                progress.update(len(batch))
    return total, count
