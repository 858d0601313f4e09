"""Every error Mafioso raises on purpose.

    MafiosoError                 - base class; the CLI prints its message and exits with status 2
    ├── ConfigError              - a setting is missing or invalid (names the variable or flag)
    ├── DatasetError             - a dataset file or row is malformed (names file, key and field)
    ├── ModelError               - the base model or adapter cannot be found or loaded
    ├── TrainingDiverged         - a training run's loss or gradients stopped being finite numbers
    └── RequestError             - one explain request cannot be served
        ├── InputRejected        - empty, oversized or binary input (``reason`` says which)
        ├── WorkerBusy           - too much work to answer in time; try again after ``retry_after``
        ├── WorkerTimeout        - the answer did not come within the request timeout
        └── WorkerUnavailable    - the worker is shut down or cannot be reached
"""

from __future__ import annotations


class MafiosoError(Exception):
    """Base class of the errors Mafioso raises on purpose."""


class ConfigError(MafiosoError):
    """A setting is missing or invalid."""


class DatasetError(MafiosoError):
    """A dataset problem; ``problems`` lists every one found, each naming file, key and field."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ModelError(MafiosoError):
    """The base model or the adapter cannot be found or loaded."""


class TrainingDiverged(MafiosoError):
    """The training loss or gradients became NaN or infinite: the weights are lost, so the run stops."""


class RequestError(MafiosoError):
    """One explain request cannot be served."""


class InputRejected(RequestError):
    """The input is empty, too large or not text. ``reason`` is ``empty``, ``too_large`` or ``binary``."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class WorkerBusy(RequestError):
    """The worker cannot answer one more request in time; ``retry_after``: seconds until it likely can."""

    def __init__(self, message: str, retry_after: int = 1):
        self.retry_after = retry_after
        super().__init__(message)


class WorkerTimeout(RequestError):
    """The answer took longer than the request timeout."""


class WorkerUnavailable(RequestError):
    """The worker is shutting down or cannot be reached."""
