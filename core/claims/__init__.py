"""Static checks of an answer's claims against its code: names it invents, constructs the code lacks (or has and
the answer denies, names among them), its names put in roles the code never gives them (loops, calls, returns,
kinds), and printed values that none of its print calls can write.

They read text and syntax trees only, never run anything, so the worker's post-check can use them on chat input;
``mafioso eval`` checks printed values against a sandboxed run where it has one (:mod:`mafioso.trainer.grounding`).
"""

from mafioso.core.claims.absences import denied_names
from mafioso.core.claims.concepts import CONCEPTS, Concept, false_concepts
from mafioso.core.claims.exceptions import impossible_exceptions
from mafioso.core.claims.names import invented_names
from mafioso.core.claims.outputs import false_prints
from mafioso.core.claims.roles import false_roles
from mafioso.core.claims.values import false_values
from mafioso.prompts.facts import run_record

__all__ = ["CONCEPTS", "Concept", "claim_kind", "denied_names", "false_concepts", "false_prints", "false_roles",
           "false_values", "impossible_exceptions", "invented_names", "run_evidence", "static_claims"]


def run_evidence(code: str, output: str | None, raised: str | None) -> tuple[str | None, str | None]:
    """What stands for a run of ``code``: a pasted run's own record (an interactive session, or code with what it
    printed and its traceback: :func:`mafioso.prompts.facts.run_record`; running the paste as a script would only
    fail on what is not code), else ``output`` and ``raised`` as given (a sandboxed run's, or None)."""
    record = run_record(code)
    return (output, raised) if record is None else record


def static_claims(code: str, answer: str, output: str | None = None, raised: str | None = None) -> list[dict]:
    """The static claims of ``answer`` that ``code`` contradicts: invented names, false concepts (``output``
    and ``raised``, from a run of the code, support "prints" and "raises"; see :func:`false_concepts`), exceptions
    nothing in the code can raise (:func:`impossible_exceptions`; not where a run ended in one), names the
    answer says the code has not (:func:`denied_names`), then false roles (:func:`false_roles`), start values
    (:func:`false_values`) and, without a run's output (which the caller checks printed values against), values
    no print of the code can write (:func:`false_prints`); a pasted run is its own record (:func:`run_evidence`)."""
    output, raised = run_evidence(code, output, raised)
    return [*invented_names(code, answer, output), *false_concepts(code, answer, output, raised),
            *(impossible_exceptions(code, answer) if raised is None else ()), *denied_names(code, answer),
            *false_roles(code, answer), *false_values(code, answer),
            *(false_prints(code, answer) if output is None else ())]


def claim_kind(claim: dict) -> str:
    """A claim's kind as reports print it: "false concept (denied)" for a construct the answer denies and the
    code has, else its kind."""
    return f"{claim['kind']} (denied)" if claim.get("denied") else claim["kind"]
