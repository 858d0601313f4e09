"""Not built yet (reserved command)."""

from mafioso.errors import MafiosoError


def add_arguments(parser) -> None:
    """No flags yet."""


def run(args) -> int:
    """Refuse until implemented."""
    raise MafiosoError(f"'mafioso {args.command}' is not available yet")
