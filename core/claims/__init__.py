"""Static checks of an answer's claims against its code: names it invents, constructs the code lacks.

They read text and syntax trees only, never run anything, so the worker's post-check can use them on chat input;
``mafioso eval`` adds the third check, printed values, from a sandboxed run (:mod:`mafioso.trainer.grounding`).
"""

from mafioso.core.claims.concepts import CONCEPTS, Concept, false_concepts
from mafioso.core.claims.names import invented_names

__all__ = ["CONCEPTS", "Concept", "claim_kind", "false_concepts", "invented_names", "static_claims"]


def static_claims(code: str, answer: str, output: str | None = None, raised: str | None = None) -> list[dict]:
    """The static claims of ``answer`` that ``code`` contradicts: invented names, then false concepts (``output``
    and ``raised``, from a run of the code, support "prints" and "raises"; see :func:`false_concepts`)."""
    return [*invented_names(code, answer, output), *false_concepts(code, answer, output, raised)]


def claim_kind(claim: dict) -> str:
    """A claim's kind as reports print it: "false concept (denied)" for a construct the answer denies and the
    code has, else its kind."""
    return f"{claim['kind']} (denied)" if claim.get("denied") else claim["kind"]
