"""From users' ratings back to training data (issue 20).

    mafioso feedback report --png feedback.png       # 👍/👎 rates and grounded per adapter and per day, a chart
    mafioso data export --feedback out/feedback      # well-rated answers as dataset rows; poorly rated to rewrite

The export writes two files into the folder:

* ``liked.json``: every answer with more 👍 than 👎, as a dataset in the original format (``{key: {"prompt",
  "code", "mafia_explanation"}}``) that ``mafioso data check`` and ``mafioso train --data`` read;
* ``to_rewrite.json``: every answer with more 👎 than 👍, with its code, the request and the rejected answer
  (``rejected_explanation``) and an empty ``mafia_explanation`` for a person to write. It fails ``data check``
  until every row has one: nothing a user disliked goes into training unreviewed.

Keys are ``feedback-<answer id>``, so a second export of the same database names the same rows.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from mafioso.core.feedback import FeedbackStore

__all__ = ["claim_counts", "export_feedback", "rates", "render_report", "write_chart"]

DEFAULT_PROMPT = "Explain this code."


def _row(answer: dict) -> dict:
    return {"prompt": answer["request"] or DEFAULT_PROMPT, "code": answer["code"],
            "mafia_explanation": answer["answer"]}


def export_feedback(store: FeedbackStore, out_dir: str | Path) -> tuple[Path, Path, int, int]:
    """Write ``liked.json`` and ``to_rewrite.json`` into ``out_dir``; their paths and row counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    liked, rewrite = {}, {}
    for answer in store.rated_answers():
        if not answer["code"].strip():  # answered by a remote worker: its own database has the code
            continue
        key = f"feedback-{answer['answer_id']}"
        if answer["score"] > 0:
            liked[key] = _row(answer)
        elif answer["score"] < 0:
            rewrite[key] = {**_row(answer), "mafia_explanation": "", "rejected_explanation": answer["answer"],
                            "adapter": answer["adapter"], "ups": answer["ups"], "downs": answer["downs"]}
    paths = out / "liked.json", out / "to_rewrite.json"
    for path, rows in zip(paths, (liked, rewrite)):
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths[0], paths[1], len(liked), len(rewrite)


def rates(store: FeedbackStore) -> tuple[dict, dict]:
    """({adapter: [ups, downs]}, {(day, adapter): [ups, downs]}) over every stored rating (UTC days)."""
    by_adapter: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_day: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for adapter, created, rating in store.ratings():
        day = time.strftime("%Y-%m-%d", time.gmtime(created))
        index = 0 if rating > 0 else 1
        by_adapter[adapter][index] += 1
        by_day[(day, adapter)][index] += 1
    return dict(by_adapter), dict(by_day)


def claim_counts(store: FeedbackStore) -> tuple[dict, dict]:
    """({adapter: [answers, unsupported]}, {(day, adapter): [...]}) over the stored answers whose claim post-check
    is known: ``unsupported`` counts those in which it found a claim the code contradicts (in the model's first
    answer), so one minus its share is eval's "grounded, model alone" on what users asked."""
    by_adapter: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_day: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for adapter, created, found in store.checked_answers():
        day = time.strftime("%Y-%m-%d", time.gmtime(created))
        for counts in (by_adapter[adapter], by_day[(day, adapter)]):
            counts[0] += 1
            counts[1] += found
    return dict(by_adapter), dict(by_day)


def _line(name: str, ups: int, downs: int) -> str:
    total = ups + downs
    return f"{name:<40} {ups:>6} {downs:>6} {ups / total if total else 0:>8.2f}"


def _claims_line(name: str, answers: int, unsupported: int) -> str:
    return f"{name:<40} {answers:>7} {unsupported:>11} {1 - unsupported / answers:>9.2f}"


def render_report(by_adapter: dict, by_day: dict, claims: tuple[dict, dict] = ({}, {})) -> str:
    """The text report: ratings per adapter, then per day and adapter; then the same for the claim post-check
    (``claims``: :func:`claim_counts`)."""
    lines = ["no ratings yet"] if not by_adapter else [
        f"{'adapter':<40} {'up':>6} {'down':>6} {'up rate':>8}", *(_line(a, *c) for a, c in sorted(by_adapter.items())),
        "", f"{'day / adapter':<40} {'up':>6} {'down':>6} {'up rate':>8}",
        *(_line(f"{day} {adapter}", *c) for (day, adapter), c in sorted(by_day.items()))]
    claims_by_adapter, claims_by_day = claims
    if claims_by_adapter:
        head = f"{'answers (the claim post-check)':<40} {'answers':>7} {'unsupported':>11} {'grounded':>9}"
        lines += ["", head, *(_claims_line(a, *c) for a, c in sorted(claims_by_adapter.items())), "",
                  f"{'day / adapter':<40} {'answers':>7} {'unsupported':>11} {'grounded':>9}",
                  *(_claims_line(f"{day} {adapter}", *c) for (day, adapter), c in sorted(claims_by_day.items()))]
    return "\n".join(lines)


def write_chart(by_day: dict, path: str | Path) -> Path:
    """A PNG of the daily 👍 rate per adapter (matplotlib, Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for adapter in sorted({a for _, a in by_day}):
        days = sorted(d for d, a in by_day if a == adapter)
        values = [by_day[(d, adapter)][0] / sum(by_day[(d, adapter)]) for d in days]
        ax.plot(days, values, marker="o", label=adapter or "(unknown)")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of thumbs up")
    ax.set_title("Mafioso: users' ratings per day")
    if by_day:
        ax.legend(fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
