"""The one place where Mafioso's prompt is written and rendered.

Training and inference both call :func:`render_prompt`, and both turn text into token ids with
:func:`encode`, so the model is trained on exactly the context it later sees. The templates are the text
files beside this module: edit them, never build prompt strings elsewhere.

A persona is data: ``personas/<name>/instruction.txt`` (what the model is told to be) and ``persona.json``
(its title, the words that mark its voice for the persona metric and the lint, and for a new persona its fixed
lines). The mafioso is the default; an adapter records the persona it was trained with (``mafioso train
--persona NAME``) and is served with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files

from mafioso.prompts.facts import FACTS_MAX_CHARS, FACTS_MAX_TOKENS, facts_sheet

__all__ = ["DEFAULT_PERSONA", "DEFAULT_REQUEST", "FACTS_MAX_CHARS", "FACTS_MAX_TOKENS", "PROMPT_FORMAT",
           "SECTION_MARKER", "Persona",
           "encode", "facts_sheet", "instruction", "is_rendered_prompt", "persona", "personas", "render_prompt",
           "shared_prefix_ids"]

DEFAULT_REQUEST = "Explain this code."
DEFAULT_PERSONA = "mafioso"
#: The version of what :func:`render_prompt` writes (template, instructions, facts sheet): bumped with every change
#: to it, the older ones still written on request. An adapter records the format it was trained on
#: (``mafioso.json``; none recorded means 1) and is served in it, as it is in its persona.
#: 1: the facts sheet lists what a function returns, prints and raises, and what it loops over.
#: 2: the same, each under its condition ("returns None on ZeroDivisionError", "prints 'Fizz' if i % 3 == 0"), each
#: loop with its variable, top-level calls of the code's own functions with their arguments.
PROMPT_FORMAT = 2
#: Every section header starts with this; a model that writes it has finished its answer.
SECTION_MARKER = "###"


@lru_cache(maxsize=None)
def _read(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Persona:
    """One voice: its instruction, the words that mark it, and its fixed lines (situation -> text)."""

    name: str
    title: str
    instruction: str
    markers: tuple[str, ...]
    lines: dict = field(default_factory=dict, hash=False, compare=False)


def personas() -> list[str]:
    """The names of the personas that ship (folders under ``personas/``)."""
    return sorted(p.name for p in files(__package__).joinpath("personas").iterdir()
                  if p.joinpath("persona.json").is_file())


@lru_cache(maxsize=None)
def persona(name: str = DEFAULT_PERSONA) -> Persona:
    """The persona called ``name``; a clear ValueError names the ones that exist."""
    if name not in personas():
        raise ValueError(f"unknown persona {name!r}; the personas are: {', '.join(personas())}")
    folder = files(__package__).joinpath("personas", name)
    info = json.loads(folder.joinpath("persona.json").read_text(encoding="utf-8"))
    return Persona(name, info.get("title", name), folder.joinpath("instruction.txt").read_text(encoding="utf-8")
                   .strip(), tuple(m.lower() for m in info["markers"]), info.get("lines", {}))


def instruction(name: str = DEFAULT_PERSONA) -> str:
    """The persona rules given to the model before the code."""
    return persona(name).instruction


def render_prompt(code: str, request: str | None = None, persona_name: str = DEFAULT_PERSONA,
                  prompt_format: int = PROMPT_FORMAT) -> str:
    """The full prompt up to and including the ``### RESPONSE:`` header (training and inference): the
    persona's instruction, the request, the code and the facts sheet read from the code (mafioso.prompts.facts),
    in ``prompt_format`` (:data:`PROMPT_FORMAT`; a ValueError for one this Mafioso does not know)."""
    if not 1 <= prompt_format <= PROMPT_FORMAT:
        raise ValueError(f"prompt format {prompt_format} is unknown here (1 to {PROMPT_FORMAT}): the adapter was "
                         "trained by a newer Mafioso; upgrade it")
    request = " ".join((request or "").split()) or DEFAULT_REQUEST
    code = code.strip("\n")
    return _read("template.txt").format(instruction=instruction(persona_name), request=request, code=code,
                                        facts=facts_sheet(code, conditions=prompt_format >= 2))


def is_rendered_prompt(text: str) -> bool:
    """Whether ``text`` is a whole prompt as :func:`render_prompt` writes it (its template's first and last
    lines around it): what a client that renders prompts itself sends (``MAFIOSO_WORKER_API=openai``, for vLLM),
    never code to explain."""
    lines = _read("template.txt").strip().splitlines()
    text = text.strip()
    return text.startswith(lines[0]) and text.endswith(lines[-1])


def encode(tokenizer, code: str, request: str | None = None, response: str | None = None,
           persona_name: str = DEFAULT_PERSONA, prompt_format: int = PROMPT_FORMAT) -> dict:
    """Token ids of the prompt, plus the response and EOS when one is given.

    Returns ``{"input_ids": [...], "completion_mask": [...]}`` where the mask is 1 on the response
    tokens (and EOS) only, so the loss is computed on the answer and never on the prompt.
    """
    prompt = render_prompt(code, request, persona_name, prompt_format)
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if response is None:
        return {"input_ids": prompt_ids, "completion_mask": [0] * len(prompt_ids)}
    response_ids = tokenizer(response.strip(), add_special_tokens=False)["input_ids"]
    response_ids = response_ids + [tokenizer.eos_token_id]
    return {
        "input_ids": prompt_ids + response_ids,
        "completion_mask": [0] * len(prompt_ids) + [1] * len(response_ids),
    }


def shared_prefix_ids(tokenizer, persona_name: str = DEFAULT_PERSONA) -> list[int]:
    """The token ids every inference prompt starts with (the instruction, up to the request): the common start
    of prompts that share nothing else (requests starting with a capital, a small letter, a digit, a bracket).
    A server computes their keys once (see mafioso.worker.fast_decode); a prompt whose ids do not start with these (a
    tokenizer merging across the boundary) is simply run whole."""
    probes = [encode(tokenizer, code, request, persona_name=persona_name)["input_ids"]
              for code, request in (("a = 1", "Explain this."), ("import os", "why?"), ("x", "2"), ("y", "(z)"))]
    same = next((i for i, ids in enumerate(zip(*probes)) if len(set(ids)) > 1), min(map(len, probes)))
    return probes[0][:same]
