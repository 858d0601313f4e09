"""Which persona answers: per channel (config) and per command (``persona:noir``), one explainer per persona.

The adapters set the persona once where a request enters (a slash command, a mention, a message) with
:func:`use_persona`; :class:`PersonaExplainer` is the one explainer the bot holds, and hands each call to the
explainer of the persona in effect. Context variables follow ``await`` and the tasks a handler starts, so the
code between entry and worker stays persona-blind. The adapters' own lines (no code found, the apology...)
follow the same persona: :func:`say` asks the explainer whose voice is in effect.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping

from mafioso.core.errors import ConfigError
from mafioso.prompts import DEFAULT_PERSONA
from mafioso.prompts.lines import line

__all__ = ["PersonaExplainer", "UnknownPersonaChoice", "choose", "parse_channel_personas", "persona_of", "say",
           "split_persona_option", "use_persona"]

_PERSONA: contextvars.ContextVar[str | None] = contextvars.ContextVar("mafioso_persona", default=None)
#: ``persona:noir`` (or ``persona=noir``) at the start of a command's text.
_OPTION = re.compile(r"^\s*persona[:=]\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*", re.IGNORECASE)


def use_persona(name: str | None) -> None:
    """Answer the rest of this request (this task and those it starts) in persona ``name`` (None: default)."""
    _PERSONA.set(name)


def persona_of(explainer) -> str:
    """The persona answering this request: the explainer's (a :class:`PersonaExplainer` answers in the persona in
    effect), else the default."""
    return getattr(explainer, "persona", None) or DEFAULT_PERSONA


def say(explainer, situation: str, **values: object) -> str:
    """The line for ``situation`` (mafioso.prompts.lines) in the voice of the persona answering this request."""
    return line(situation, persona_of(explainer), **values)


def split_persona_option(text: str) -> tuple[str | None, str]:
    """``("noir", "rest")`` for ``"persona:noir rest"``; ``(None, text)`` when the text names no persona."""
    match = _OPTION.match(text or "")
    return (match.group(1), text[match.end():]) if match else (None, text)


def parse_channel_personas(value: str, variable: str) -> dict[str, str]:
    """``"C1=noir,C2=mafioso"`` as ``{"C1": "noir", ...}``; a malformed entry names ``variable``."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        channel, _, name = (part.strip() for part in item.partition("="))
        if not channel or not name:
            raise ConfigError(f"{variable}: write channel_id=persona,... (got {item!r})")
        pairs[channel] = name
    return pairs


class UnknownPersonaChoice(ValueError):
    """A command asked for a persona this bot does not serve."""


def choose(explainer, channels: Mapping[str, str], channel: str | int | None, asked: str | None = None) -> str | None:
    """The persona for a request in ``channel`` that asked for ``asked`` (None: the explainer's default)."""
    name = asked or channels.get(str(channel))
    names = getattr(explainer, "names", None) or []
    if name is not None and name not in names:
        if asked is None:
            return None  # a channel mapped to a persona this explainer lacks: checked at start-up (serve)
        raise UnknownPersonaChoice(f"unknown persona {name!r}; here: {', '.join(names) or 'the default only'}")
    return name


class PersonaExplainer:
    """One explainer per persona behind the interface of one: each call goes to the persona in effect
    (:func:`use_persona`), else the default."""

    def __init__(self, explainers: Mapping[str, object], default: str):
        if default not in explainers:
            raise ConfigError(f"the default persona {default!r} has no explainer")
        self.explainers, self.default = dict(explainers), default
        if not all(callable(getattr(e, "stream", None)) for e in self.explainers.values()):
            self.stream = None  # the bots stream only when every persona can

    @property
    def names(self) -> list[str]:
        """The personas served, the default first."""
        return [self.default, *(n for n in self.explainers if n != self.default)]

    def check_channels(self, channels: Mapping[str, str], variable: str) -> None:
        """Refuse a channel mapped to a persona that is not served, naming ``variable``."""
        unknown = sorted(set(channels.values()) - set(self.explainers))
        if unknown:
            raise ConfigError(f"{variable}: {', '.join(unknown)} not served; served: {', '.join(self.names)} "
                              "(add it to MAFIOSO_ADAPTERS)")

    @property
    def persona(self) -> str | None:
        """The persona whose voice answers now: that of the explainer in effect."""
        return getattr(self._current(), "persona", None)

    def _current(self):
        return self.explainers[_PERSONA.get() or self.default]

    def __getattr__(self, name: str):
        return getattr(self.explainers[self.default], name)  # max_input_chars and the like: the default's

    async def explain(self, code: str, request: str | None = None, **kwargs):
        """Explain ``code`` in the persona in effect."""
        return await self._current().explain(code, request, **kwargs)

    async def stream(self, code: str, request: str | None = None, **kwargs):
        """Stream the answer in the persona in effect."""
        return await self._current().stream(code, request, **kwargs)
