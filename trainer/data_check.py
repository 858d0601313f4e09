"""``mafioso data check``: schema errors (exit 1) and, unless ``--schema-only``, the lint report."""

from __future__ import annotations

import sys

from mafioso.core.errors import DatasetError
from mafioso.trainer.dataset import load_samples


def check(files: list[str], lint: bool = True, out=None, persona: str = "mafioso") -> int:
    """Validate ``files`` together; print problems or counts; return the exit status."""
    out = out or sys.stdout
    try:
        samples = load_samples(files)
    except DatasetError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return 1
    if not samples:
        print(f"error: no samples in {', '.join(map(str, files))}", file=sys.stderr)
        return 1
    for path in files:
        n = sum(1 for s in samples if s.source == str(path))
        print(f"{path}: {n} samples", file=out)
    print(f"total: {len(samples)} samples, schema OK", file=out)
    if not lint:
        return 0
    from mafioso.trainer.lint import lint_report

    from mafioso.prompts import persona as find_persona

    report = lint_report(samples, find_persona(persona).markers)
    print(report.render(), file=out)
    return 1 if report.errors else 0
