"""The ``mafioso`` command: one entry point, one subcommand per job.

    mafioso explain FILE            explain a Python file (or - for stdin) in character
    mafioso train --data FILE ...   fine-tune a LoRA adapter with QLoRA
    mafioso data check FILE ...     validate (and lint) dataset files
    mafioso model prepare           convert the embedded base model once, into the cache
    mafioso eval --data FILE ...    score base vs adapter on a dataset
    mafioso worker                  serve the HTTP / OpenAI-compatible API
    mafioso serve                   run the Discord and/or Slack bots
    mafioso export gguf --out DIR   the tuned model as a GGUF for llama.cpp / Ollama
"""

from __future__ import annotations

import argparse
import importlib
import logging
import warnings
import os
import sys

from mafioso.config import TrainConfig, add_arguments, from_args
from mafioso.errors import MafiosoError

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
    from trainer.train import train

    cfg = from_args(TrainConfig, args, args.config)
    output = train(cfg, command=["mafioso", *args.argv])
    print(output)
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from trainer.data_check import check

    return check(args.files, lint=not args.schema_only)


def cmd_model_prepare(args: argparse.Namespace) -> int:
    from mafioso.base_model import resolve_base

    print(resolve_base(args.base_model))
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
    check.set_defaults(func=cmd_data_check)

    model_parser = sub.add_parser("model", help="base model tools")
    model_parser.set_defaults(func=lambda args: _usage(model_parser))
    model = model_parser.add_subparsers(dest="model_command", metavar="COMMAND")
    prepare = model.add_parser("prepare", help="convert the base model once into the cache; prints its folder")
    prepare.add_argument("--base-model", default="embedded", help="embedded, a HF id, a folder or a .gguf file")
    prepare.set_defaults(func=cmd_model_prepare)

    _add_export(sub)

    # Commands implemented beside the parts they run; each module has add_arguments(parser) and run(args).
    for name, module, text in _COMMANDS:
        command = sub.add_parser(name, help=text)
        implementation = importlib.import_module(module)
        implementation.add_arguments(command)
        command.set_defaults(func=implementation.run)
    return parser


def _add_export(sub) -> None:
    """``mafioso export gguf`` (issue 21): trainer/export.py, which loads torch and gguf only when it runs."""
    from trainer import export

    export_parser = sub.add_parser("export", help="export the tuned model for other runtimes")
    export_parser.set_defaults(func=lambda args: _usage(export_parser))
    formats = export_parser.add_subparsers(dest="export_command", metavar="FORMAT")
    gguf = formats.add_parser("gguf", help="one merged GGUF (F16 / Q8_0) + Ollama Modelfile, or a GGUF LoRA")
    export.add_arguments(gguf)
    gguf.set_defaults(func=export.run)


_COMMANDS = [
    ("explain", "bot.console", "explain a Python file (or - for stdin) in character"),
    ("eval", "trainer.evaluate", "score the adapter (and the base) on a dataset"),
    ("worker", "bot.http_api", "serve the HTTP and OpenAI-compatible API"),
    ("serve", "bot.serve", "run the Discord and/or Slack bots"),
]


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
