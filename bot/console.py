"""``mafioso explain``: explain one Python file (or stdin) in the terminal.

    mafioso explain script.py
    cat script.py | mafioso explain - --request "why is this slow?"
    mafioso explain script.py --worker-url http://127.0.0.1:8000      # ask a running worker instead
    mafioso explain script.py --worker-url http://vllm:8000 --worker-api openai   # or vLLM / SGLang
    mafioso explain script.py --show-prompt      # print the prompt the model would read (no model loaded)
    mafioso explain script.py --no-stream        # print the answer once it is whole (for scripts)

Without ``--worker-url`` the model runs in this process (same worker, guard and post-check as the
server). The answer is printed as it is written, sentence by sentence once checked; if the final check
changes text already printed (rare), the corrected answer follows a note on stderr. A refusal (empty, too
large or binary input; a busy or unreachable worker) is printed in
character and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import sys
from pathlib import Path

from mafioso import prompts
from mafioso.bot.streaming import answer_texts
from mafioso.core import guard
from mafioso.core.explanation import Explanation
from mafioso.core.settings import add_remote_arguments, add_settings_arguments, load, load_settings
from mafioso.worker.runtime import build_worker
from mafioso.core.config import GenerationConfig, ServeConfig, WorkerConfig
from mafioso.core.errors import ConfigError, RequestError

__all__ = ["add_arguments", "run"]

#: Serving settings that mean nothing for one request from the terminal.
_SERVER_ONLY = ("host", "port", "api_key", "queue_size", "max_batch_size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``mafioso explain``."""
    parser.add_argument("file", nargs="?", default="-", help="Python file to explain, or - for stdin (default)")
    parser.add_argument("--request", help="what to ask about the code (default: 'Explain this code.')")
    parser.add_argument("--worker-url", help="explain through a running 'mafioso worker' at this URL "
                                             "(its key from MAFIOSO_API_KEY) instead of loading the model here")
    parser.add_argument("--no-stream", action="store_true",
                        help="print the answer only once it is whole (default: as it is written)")
    parser.add_argument("--show-prompt", action="store_true",
                        help="print the full prompt the model would read (instruction, request, code, facts) "
                             "and exit without loading the model")
    add_remote_arguments(parser)
    add_settings_arguments(parser, skip=_SERVER_ONLY)


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"file not found: {name}") from None
    except IsADirectoryError:
        raise ConfigError(f"{name} is a folder; give one Python file") from None


def _remote_settings(args: argparse.Namespace) -> ServeConfig:
    """--worker-url (the flag only: a MAFIOSO_WORKER_URL meant for ``serve`` must not send this command away),
    with the API and model from MAFIOSO_WORKER_API / MAFIOSO_WORKER_MODEL unless the flags say otherwise."""
    flags = {k: v for k, v in vars(args).items() if k in ("worker_api", "worker_model") and v}
    return dataclasses.replace(load(ServeConfig, flags), worker_url=args.worker_url or "")


async def _print_as_written(explainer, code: str, request: str | None, stream: bool) -> Explanation:
    """The answer, printed as it grows (``stream``) or whole at the end."""
    if not stream:
        answer = await explainer.explain(code, request)
        print(answer.text)
        return answer
    printed = ""
    async for text, answer in answer_texts(explainer, code, request):
        if not text.startswith(printed):  # the final check changed what was printed: end that line, then all of it
            print(flush=True)
            print("mafioso: the final check changed the answer; the whole of it:", file=sys.stderr, flush=True)
            printed = ""
        print(text[len(printed):], end="" if answer is None else "\n", flush=True)
        printed = text
    return answer


async def _remote(remote: ServeConfig, cfg: WorkerConfig, gen: GenerationConfig, code: str,
                  request: str | None, stream: bool = False) -> Explanation:
    from mafioso.worker.client import WorkerClient

    async with WorkerClient(remote.worker_url, cfg.api_key, api=remote.worker_api, model=remote.worker_model,
                            max_tokens=gen.max_new_tokens, max_input_chars=cfg.max_input_chars,
                            drop_unsupported=gen.drop_unsupported) as client:
        return await _print_as_written(client, code, request, stream)


async def _local(cfg: WorkerConfig, gen: GenerationConfig, code: str, request: str | None,
                 stream: bool = False) -> Explanation:
    from mafioso.core.feedback import open_store

    store = open_store(cfg)
    worker = build_worker(cfg, gen, feedback=store,
                          note=lambda line: print(f"mafioso: {line}", file=sys.stderr, flush=True))
    await worker.start()
    try:
        return await _print_as_written(worker, code, request, stream)
    finally:
        await worker.stop()
        if store is not None:
            store.close()


def run(args: argparse.Namespace) -> int:
    """Explain the file and print the answer; 1 on a refusal."""
    cfg, gen = load_settings(args)
    data = _read(args.file)
    try:
        # Cheap checks first, so an empty file never waits for the model to load.
        code = guard.check(data, args.request, max_chars=cfg.max_input_chars)
        if args.show_prompt:
            print(prompts.render_prompt(code, args.request), end="")
            return 0
        stream = not getattr(args, "no_stream", False)
        if args.worker_url:
            answer = asyncio.run(_remote(_remote_settings(args), cfg, gen, code, args.request, stream))
        else:
            answer = asyncio.run(_local(cfg, gen, code, args.request, stream))
    except RequestError as exc:
        print(exc)
        return 1
    if answer.answer_id:  # stderr: stdout stays the answer alone, for scripts
        where = "" if not args.worker_url else f" --worker-url {args.worker_url}"
        print(f"mafioso: answer {answer.answer_id}; rate it: mafioso feedback rate {answer.answer_id} up|down{where}",
              file=sys.stderr)
    if not answer.finished:
        print("mafioso: the answer hit the token limit and was cut (see --max-new-tokens)", file=sys.stderr)
    return 0
