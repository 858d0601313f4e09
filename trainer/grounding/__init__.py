"""Is an answer true to its code? The ``grounded`` check of ``mafioso eval``.

:func:`unsupported_claims` lists what an answer says that the code itself contradicts, five kinds:

* ``invented name`` - a name the answer presents as the code's (in backticks, ``name()``, ``x.y``, "a
  function called x", "the x_y function") that appears nowhere in the code;
* ``false concept`` - the answer says recursive, generator, comprehension, decorator, ... (:data:`CONCEPTS`)
  and :func:`mafioso.prompts.facts.code_features` says the code has no such construct; or, marked
  ``"denied": True``, it plainly denies one the code has ("the function never recurses" of a recursive one),
  for the constructs whose denial the syntax tree can settle (``Concept.denial``);
* ``false role`` - the answer puts a name of the code in a role the code never gives it: a loop or a call that
  uses no such name ("it loops `seen` through `set`", "it calls `base`" of a number), a value returned by a
  function that returns none, a name returned that no ``return`` hands back ("it returns `ZeroDivisionError`"
  of code that catches it), a kind the name is never bound as ("`teams` is a dict" of a list;
  :mod:`mafioso.core.claims.roles`), or a start value no assignment gives it ("`seen` gets set to `None`" of
  ``seen = set()``; :mod:`mafioso.core.claims.values`);
* ``false output`` - a value the answer says is printed (a quoted string, a number, a list/dict/tuple
  literal after "prints", "outputs", "so you get", ...) that is not in what the code really printed; without a
  run (a snippet that does not run on its own, chat input), one after "prints" that none of the code's print
  calls can write, where every output of the code is in sight (:mod:`mafioso.core.claims.printable`).
* ``no answer`` - the answer has no words at all: it explains nothing, so it is not counted as true (the
  adapter of a training run that went NaN answered nothing 124 times and scored grounded 1.000 before).

Other denials ("it never prints", "no loop here", "it doesn't recurse forever") and advice ("a ``for`` loop
would be cleaner") claim nothing.
The checks read text and syntax trees only; the real output is handed in by the caller, who got it from
:mod:`mafioso.trainer.sandbox` for dataset rows (never for chat input).

Score a dataset's own reference answers (the ceiling of the metric) and list every failing row::

    python -m mafioso.trainer.grounding data/validation.json [data/train.json ...]
"""

from __future__ import annotations

import re
from collections import Counter

from mafioso.core.claims import CONCEPTS, Concept, false_concepts, invented_names, run_evidence, static_claims
from mafioso.core.text_checks import words
from mafioso.core.claims.outputs import false_outputs

__all__ = ["CONCEPTS", "KINDS", "Concept", "false_concepts", "false_outputs", "invented_names", "repeatable",
           "summarize_claims", "unsupported_claims"]

KINDS = ("invented name", "false concept", "false role", "false output", "no answer")

# Output that changes from run to run, or needs the network the sandbox cuts, proves nothing.
_UNREPEATABLE = re.compile(r"\b(?:secrets|uuid|requests|urllib|httpx|aiohttp|socket|argv|argparse|environ|"
                           r"getenv)\b|"
                           r"\b(?:now|today|time|perf_counter|monotonic|getpid|urandom|id)\(")
_UNSEEDED_RANDOM = re.compile(r"\brandom\b")


def repeatable(code: str) -> bool:
    """True if a run's output stands for the code's output: no network, clock, pids or unseeded randomness."""
    if _UNREPEATABLE.search(code):
        return False
    return not _UNSEEDED_RANDOM.search(code) or "seed(" in code


def unsupported_claims(code: str, answer: str, output: str | None = None, raised: str | None = None) -> list[dict]:
    """Every claim of ``answer`` that ``code`` does not support; ``output`` is what a run of it printed (None
    when it did not run cleanly) and ``raised`` the exception a failed run ended with."""
    if output is not None and not repeatable(code):
        output = None
    if not words(answer):  # an answer that says nothing is not a true one (a diverged adapter's, all of them)
        return [{"kind": "no answer", "claim": "no answer", "text": ""}]
    output, raised = run_evidence(code, output, raised)
    return [*static_claims(code, answer, output, raised), *false_outputs(answer, output)]


def summarize_claims(per_answer: list[list[dict] | None]) -> dict:
    """``grounded`` (share of checked answers with no unsupported claim), how many were checked, and the
    count of unsupported claims per kind."""
    checked = [claims for claims in per_answer if claims is not None]
    kinds = Counter(claim["kind"] for claims in checked for claim in claims)
    return {"grounded": sum(not claims for claims in checked) / len(checked) if checked else None,
            "grounded_samples": len(checked),
            "unsupported": {kind: kinds.get(kind, 0) for kind in KINDS}}
