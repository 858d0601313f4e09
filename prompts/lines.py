"""Every line a persona says to a user when it is not explaining code, keyed by situation.

The words are data: ``personas/<name>/persona.json`` has a ``lines`` object with one text per situation below,
written in that persona's voice. Chat adapters, the worker, its client and the post-checks all call
:func:`line`, so a situation has one text per persona and nobody else writes one. A situation a new persona
leaves out is said in the default persona's words (the shipped personas say every one: tests hold them to it).
"""

from __future__ import annotations

from mafioso.prompts import DEFAULT_PERSONA, persona

__all__ = ["SITUATIONS", "line"]

#: situation -> (who says it, the ``{fields}`` its text takes).
SITUATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # input the worker refuses (core/guard.py)
    "empty": ("the guard: an empty paste", ()),
    "too_large": ("the guard: code over the character limit or the model's context", ()),
    "binary": ("the guard: bytes that are not text (a binary file too)", ()),
    # a chat adapter, before or after asking the worker (bot/)
    "no_code": ("an adapter: no code in the message", ()),
    "not_here": ("an adapter: a server, channel or user outside the allow-lists", ()),
    "file_too_big": ("an adapter: an attached file over the limit", ("limit",)),
    "code_too_long": ("an adapter: the worker refused the code as too large", ("limit",)),
    "empty_answer": ("an adapter: the answer came back empty", ()),
    "cooldown": ("an adapter: the user asks again too soon", ("seconds",)),
    "who_is_that": ("an adapter: a command names a persona not served", ("detail",)),
    "invite_me": ("Slack: a command in a channel the bot is not in", ()),
    "form_title": ("Discord: the title of the code form (45 characters at most)", ()),
    "apology": ("an adapter's central error handler: something unexpected", ()),
    "worker_down": ("an adapter: the worker is unavailable", ()),
    # the worker could not serve (worker/service.py)
    "busy": ("the worker: its queue is full", ()),
    "timeout": ("the worker: the request ran past its timeout", ()),
    "unavailable": ("the worker: it is shutting down", ()),
    "failed": ("the worker: generation failed", ()),
    # the worker's HTTP client (worker/client.py)
    "unreachable": ("the client: no connection to the worker", ()),
    "rejected_key": ("the client: the worker refused the API key", ()),
    "wrong_name": ("the client: the server does not serve the model asked for", ()),
    "slow": ("the client: the worker never answered", ()),
    # the worker's HTTP API refuses a request (worker/http_api.py)
    "wrong_key": ("the HTTP API: a missing or wrong API key", ()),
    "too_slow": ("the HTTP API: a body that did not arrive in time", ()),
    "unknown_charset": ("the HTTP API: a body in a charset Python does not know", ()),
    "not_json": ("the HTTP API: a body that is not JSON", ()),
    "too_deep": ("the HTTP API: JSON nested deeper than Python parses", ()),
    "unknown_answer": ("the HTTP API: a rating for an answer this worker never gave", ("answer_id",)),
    "ratings_closed": ("the HTTP API: a rating while feedback is off", ()),
    # an answer the post-checks emptied (core/postcheck.py, core/claim_check.py)
    "off_the_record": ("the code post-check: the answer was nothing but code", ()),
    "nothing_sure": ("the claim post-check: every sentence was contradicted by the code", ()),
}


def line(situation: str, persona_name: str | None = None, **values: object) -> str:
    """What ``persona_name`` (default: the mafioso) says in ``situation``, its fields filled from ``values``
    (``cooldown`` rounds ``seconds`` up to a whole second, at least 1)."""
    if situation not in SITUATIONS:
        raise KeyError(f"no persona line for {situation!r}; the situations are in mafioso.prompts.lines")
    if "seconds" in values:
        values["seconds"] = max(1, round(float(values["seconds"])))  # type: ignore[arg-type]
    text = persona(persona_name or DEFAULT_PERSONA).lines.get(situation) or \
        persona(DEFAULT_PERSONA).lines[situation]
    return text.format(**values) if SITUATIONS[situation][1] else text
