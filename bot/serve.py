"""``mafioso serve``: run the Discord and/or Slack bots on one explainer.

    mafioso serve                                    # every platform with credentials; the model runs here
    mafioso serve --worker-url http://gpu-box:8000   # ask a running `mafioso worker` (key: MAFIOSO_API_KEY)
    mafioso serve --worker-url http://vllm:8000 --worker-api openai   # ask vLLM / SGLang (docs/DEPLOY.md)
    mafioso serve --slack-http --port 3000           # Slack over HTTP (POST /slack/events), not Socket Mode
    mafioso serve --platform slack                   # only Slack, even with DISCORD_TOKEN set

Settings come once, at start-up: defaults → environment / ``.env`` (``DISCORD_*``, ``SLACK_*``,
``MAFIOSO_*``) → flags (see ``.env.example`` and ``docs/CHAT.md``). This is the one place where the
configuration, the worker and the chat adapters are wired together. SIGINT / SIGTERM stop the adapters
first, then let the worker finish what it was doing; a second signal forces the exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Mapping

from mafioso.bot.personas import PersonaExplainer, parse_channel_personas
from mafioso.core.config import DEFAULT_MODEL_NAME
from mafioso.core.explanation import Explainer
from mafioso.core.feedback import open_store
from mafioso.prompts import DEFAULT_PERSONA, PROMPT_FORMAT
from mafioso.prompts import personas as persona_names
from mafioso.core.config import DiscordConfig, GenerationConfig, ServeConfig, SlackConfig, WorkerConfig
from mafioso.core.settings import add_remote_arguments, add_settings_arguments, load
from mafioso.worker.runtime import build_workers
from mafioso.core.errors import ConfigError, ModelError

__all__ = ["ServeSettings", "add_arguments", "load_settings", "run", "serve"]

log = logging.getLogger("mafioso.serve")

PLATFORMS = ("discord", "slack")
NOTHING_TO_SERVE = ("no chat platform is configured: set DISCORD_TOKEN for Discord, and/or SLACK_BOT_TOKEN plus "
                    "SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (with --slack-http) for Slack; "
                    "see .env.example and docs/CHAT.md")


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``mafioso serve`` reads, loaded and validated once."""

    worker: WorkerConfig
    generation: GenerationConfig
    serve: ServeConfig
    discord: DiscordConfig
    slack: SlackConfig
    platforms: tuple[str, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``mafioso serve`` (every worker and generation setting too, for the in-process model)."""
    parser.add_argument("--worker-url", dest="worker_url", default=argparse.SUPPRESS,
                        help="use a running 'mafioso worker' at this URL instead of loading the model here "
                             "(MAFIOSO_WORKER_URL; its key comes from MAFIOSO_API_KEY)")
    add_remote_arguments(parser)
    parser.add_argument("--slack-http", dest="slack_http", action="store_true", default=argparse.SUPPRESS,
                        help="receive Slack over HTTP at /slack/events (SLACK_HTTP; needs SLACK_SIGNING_SECRET) "
                             "instead of Socket Mode")
    parser.add_argument("--port", dest="slack_port", type=int, default=argparse.SUPPRESS,
                        help="Slack HTTP-mode port (SLACK_PORT, default 3000)")
    parser.add_argument("--platform", dest="platforms", choices=PLATFORMS, action="append",
                        help="run only this platform (repeatable); default: every one with credentials")
    add_settings_arguments(parser, skip=("host", "port", "api_key"))


def load_settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> ServeSettings:
    """Defaults → environment / ``.env`` → flags; fails fast with the variable to set."""
    flags = vars(args)
    worker, generation = load(WorkerConfig, args, env=env), load(GenerationConfig, args, env=env)
    serve_cfg = load(ServeConfig, args, env=env)
    discord_cfg = load(DiscordConfig, env=env)
    slack_flags = {name: flags[flag] for flag, name in (("slack_http", "http"), ("slack_port", "port"))
                   if flag in flags}
    slack_cfg = load(SlackConfig, slack_flags, env=env)
    configured = [p for p, on in zip(PLATFORMS, (discord_cfg.token, slack_cfg.bot_token)) if on]
    wanted = tuple(dict.fromkeys(flags.get("platforms") or configured))
    if not wanted:
        raise ConfigError(NOTHING_TO_SERVE)
    missing = [{"discord": "DISCORD_TOKEN", "slack": "SLACK_BOT_TOKEN"}[p] for p in wanted if p not in configured]
    if missing:
        raise ConfigError(f"--platform asks for a platform without credentials: set {' and '.join(missing)} "
                          "(see .env.example)")
    return ServeSettings(worker, generation, serve_cfg, discord_cfg, slack_cfg, wanted)


# ------------------------------------------------------------------------------------------- running


async def _start_explainer(settings: ServeSettings, feedback=None) -> Explainer:
    if settings.serve.worker_url:
        from mafioso.worker.client import WorkerClient

        remote = settings.serve
        log.info("serve: explaining through the worker at %s (%s API)", remote.worker_url, remote.worker_api)
        names = {DEFAULT_MODEL_NAME: remote.worker_model, **{n: n for n in settings.worker.more_adapters()}}
        return _one_or_personas({name: WorkerClient(
            remote.worker_url, settings.worker.api_key, api=remote.worker_api, model=model,
            max_tokens=settings.generation.max_new_tokens, max_input_chars=settings.worker.max_input_chars,
            drop_unsupported=settings.generation.drop_unsupported, persona=_persona_of(name),
            prompt_format=_prompt_format_of(name, settings) if remote.worker_api == "openai" else PROMPT_FORMAT)
            for name, model in names.items()}, settings)
    log.info("serve: loading the model in this process")
    workers = build_workers(settings.worker, settings.generation, feedback)  # blocking; nothing is served yet
    for worker in workers.values():
        await worker.start()
    return _one_or_personas(workers, settings)


def _persona_of(name: str) -> str:
    """The persona a remote model name prompts in (openai mode renders the prompt): its own, else the default."""
    return name if name in persona_names() else DEFAULT_PERSONA


def _prompt_format_of(name: str, settings: ServeSettings) -> int:
    """The prompt format openai mode renders for a remote model name: that of the adapter the server runs under
    it (the configured ``--adapter`` for the default, the persona's shipped one for a persona's name)."""
    from mafioso.worker.engine import adapter_folder, adapter_prompt_format

    spec = settings.worker.adapter if name == DEFAULT_MODEL_NAME else name
    try:
        return adapter_prompt_format(adapter_folder(spec, settings.worker.base_model))
    except ModelError:  # an adapter only the server has: it was trained by this Mafioso, presumably
        log.info("serve: no local copy of the adapter %r to read its prompt format from: format %d", name,
                 PROMPT_FORMAT)
        return PROMPT_FORMAT


def _one_or_personas(explainers: dict, settings: ServeSettings) -> Explainer:
    """The one explainer, or with MAFIOSO_ADAPTERS one per name behind a PersonaExplainer (channel maps checked)."""
    if len(explainers) == 1 and not (settings.discord.channel_personas or settings.slack.channel_personas):
        return explainers[DEFAULT_MODEL_NAME]
    explainer = PersonaExplainer(explainers, DEFAULT_MODEL_NAME)
    for variable, value in (("DISCORD_CHANNEL_PERSONAS", settings.discord.channel_personas),
                            ("SLACK_CHANNEL_PERSONAS", settings.slack.channel_personas)):
        explainer.check_channels(parse_channel_personas(value, variable), variable)
    return explainer


async def _stop_explainer(settings: ServeSettings, explainer) -> None:
    for one in getattr(explainer, "explainers", {"": explainer}).values():
        if settings.serve.worker_url:
            await one.close()
        else:
            await one.stop(drain=True)  # finish the answers in flight


def _adapters(settings: ServeSettings, explainer: Explainer, feedback=None) -> dict:
    limit = settings.worker.max_input_chars
    adapters = {}
    if "discord" in settings.platforms:
        from mafioso.bot.discord_bot import MafiosoBot

        adapters["discord"] = MafiosoBot(explainer, settings.discord, max_code_chars=limit, feedback=feedback)
    if "slack" in settings.platforms:
        from mafioso.bot.slack_bot import SlackBot

        adapters["slack"] = SlackBot(explainer, settings.slack, max_code_chars=limit, feedback=feedback)
    return adapters


async def serve(settings: ServeSettings, explainer: Explainer | None = None) -> None:
    """Serve every configured platform until SIGINT/SIGTERM or a platform fails, then shut down in order.

    ``explainer`` replaces the worker (tests); without it the model is loaded here, or reached through
    ``--worker-url``.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        log.info("serve: %s received, shutting down (again to force)", signal.Signals(signum).name)
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    owned = explainer is None
    # Answers and 👍/👎 reactions (core/feedback.py); a broken database file only switches feedback off.
    feedback = open_store(settings.worker) if owned else None
    if owned:
        explainer = await _start_explainer(settings, feedback)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    tasks = [asyncio.create_task(adapter.run_until_cancelled(), name=name)
             for name, adapter in _adapters(settings, explainer, feedback).items()]
    stopped = asyncio.create_task(stop.wait(), name="stop")
    log.info("serve: running %s", ", ".join(settings.platforms))
    try:
        done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # a platform could not start (bad token, port taken …)
            if task is not stopped:
                log.warning("serve: %s stopped by itself; shutting down", task.get_name())
    finally:
        for task in [*tasks, stopped]:
            task.cancel()
        await asyncio.gather(*tasks, stopped, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if owned:
            await _stop_explainer(settings, explainer)
        if feedback is not None:
            feedback.close()
        log.info("serve: stopped")


def run(args: argparse.Namespace) -> int:
    """Load the settings, then serve until SIGINT/SIGTERM."""
    settings = load_settings(args)
    if not getattr(args, "verbose", False):
        for noisy in ("slack_bolt", "slack_sdk"):  # their INFO lines echo request bodies
            logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(serve(settings))
    return 0
