"""The one platform-neutral interface every adapter uses: ``await explainer.explain(code)``.

The in-process :class:`mafioso.worker.service.Worker` and the HTTP :class:`mafioso.worker.client.WorkerClient` both implement it,
so an adapter never knows (or cares) where the model runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Explanation:
    """One answer: the text and how it was produced."""

    text: str
    tokens: int  # generated tokens
    latency_s: float  # from request to answer, queueing included
    finished: bool  # ended on its own (EOS, a new ### section or a loop cut back), not cut at max_new_tokens
    code_leak: bool = False  # the post-check found code in the answer (it was removed)
    dropped: int = 0  # sentences the claim post-check removed: claims the code contradicts (core/claim_check.py)
    retried: int = 0  # times it was decoded again from before such a sentence (worker/retry.py)
    answer_id: str = ""  # what a rating names (POST /v1/feedback, reactions); empty when nobody keeps answers


class Explainer(Protocol):
    """Anything that explains code: the in-process worker or a client of a remote one."""

    async def explain(self, code: str, request: str | None = None) -> Explanation:
        """Explain ``code``; raises :class:`mafioso.core.errors.RequestError` subclasses when it cannot."""
        ...
