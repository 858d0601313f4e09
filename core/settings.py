"""The one settings loader of the running product: defaults → environment / ``.env`` → flags.

    cfg = load(WorkerConfig, args)          # MAFIOSO_QUANTIZATION=nf4, then --quantization int8 wins
    discord = load(DiscordConfig)           # DISCORD_TOKEN, DISCORD_ALLOWED_GUILDS ...
    cache = load(PathsConfig).cache         # MAFIOSO_CACHE, read nowhere else

The worker, ``serve``, ``explain``, ``eval`` and the feedback commands all read their sections of
:mod:`mafioso.core.config` through :func:`load`, so a variable means the same everywhere
(``MAFIOSO_GROUNDED_DECODING=false mafioso eval`` decodes as the worker would). Each field ``x`` of a section reads
``<PREFIX>X`` (:data:`PREFIXES`); an empty value counts as unset; ``.env`` in the working folder fills in what
the environment leaves unset. The trainer's :class:`~mafioso.core.config.TrainConfig` is the exception by design:
defaults → YAML → flags (:func:`mafioso.core.config.from_args`), so a run is described by its files.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path

from mafioso.core.config import (WORKER_APIS, DiscordConfig, GenerationConfig, PathsConfig, ServeConfig,
                                 SlackConfig, WorkerConfig, add_arguments, build)

__all__ = ["ENV_PREFIX", "PREFIXES", "add_remote_arguments", "add_settings_arguments", "environment", "load",
           "load_dotenv_file", "load_settings"]

ENV_PREFIX = "MAFIOSO_"
#: Each section's environment prefix.
PREFIXES: dict[type, str] = {WorkerConfig: ENV_PREFIX, GenerationConfig: ENV_PREFIX, ServeConfig: ENV_PREFIX,
                             PathsConfig: ENV_PREFIX, DiscordConfig: "DISCORD_", SlackConfig: "SLACK_"}

T = typing.TypeVar("T")


def load_dotenv_file(path: str | Path = ".env") -> None:
    """Load ``.env`` into the environment (existing variables win), if the file exists."""
    from dotenv import load_dotenv

    if Path(path).is_file():
        load_dotenv(path, override=False)


def environment(cls: type, env: typing.Mapping[str, str] | None = None) -> dict:
    """The raw ``<PREFIX><FIELD>`` values set for section ``cls`` (validation waits until the flags are in)."""
    env = os.environ if env is None else env
    prefix = PREFIXES[cls]
    names = (f.name for f in dataclasses.fields(cls))
    return {n: env[prefix + n.upper()] for n in names if env.get(prefix + n.upper()) not in (None, "")}


def load(cls: type[T], flags: argparse.Namespace | typing.Mapping | None = None, *,
         env: typing.Mapping[str, str] | None = None) -> T:
    """Section ``cls`` from its defaults, then the environment (``env``, by default ``os.environ`` after
    ``.env``), then ``flags`` (a parsed namespace or a mapping; names that are not fields of ``cls`` are
    ignored). A bad value is a ConfigError naming the setting."""
    if env is None:
        load_dotenv_file()
    given = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags or {})
    names = {f.name for f in dataclasses.fields(cls)}
    chosen = {k: v for k, v in given.items() if k in names}
    return build(cls, environment(cls, env), chosen, where=f"{PREFIXES[cls]}* / flags")


def load_settings(args: argparse.Namespace) -> tuple[WorkerConfig, GenerationConfig]:
    """The worker and generation settings of a command (worker, serve, explain)."""
    return load(WorkerConfig, args), load(GenerationConfig, args)


def add_settings_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per WorkerConfig and GenerationConfig field (except ``skip``); unset flags keep env values."""
    add_arguments(parser, WorkerConfig, skip=skip)
    add_arguments(parser, GenerationConfig, skip=skip)


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """``--worker-api`` and ``--worker-model``: how ``serve`` / ``explain`` talk to the server at --worker-url."""
    parser.add_argument("--worker-api", dest="worker_api", choices=WORKER_APIS, default=argparse.SUPPRESS,
                        help="what the server at --worker-url speaks: mafioso (a `mafioso worker`) or openai "
                             "(vLLM / SGLang; the prompt is rendered here) (MAFIOSO_WORKER_API, default mafioso)")
    parser.add_argument("--worker-model", dest="worker_model", default=argparse.SUPPRESS,
                        help="with --worker-api openai: the model name to ask for, e.g. the LoRA module's name "
                             "(MAFIOSO_WORKER_MODEL, default mafioso)")
