"""Tests of the bench scripts. They are scripts, not a package: :func:`load` imports one from its file."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    """``bench/<name>.py`` as a module, run as far as its ``if __name__ == "__main__"``."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
