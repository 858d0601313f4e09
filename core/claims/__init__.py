"""Static checks of an answer's claims against its code: names it invents, constructs the code lacks.

They read text and syntax trees only, never run anything, so the worker's post-check can use them on chat input;
``mafioso eval`` adds the third check, printed values, from a sandboxed run (:mod:`mafioso.trainer.grounding`).
"""

from mafioso.core.claims.concepts import CONCEPTS, Concept, false_concepts
from mafioso.core.claims.names import invented_names

__all__ = ["CONCEPTS", "Concept", "false_concepts", "invented_names"]
