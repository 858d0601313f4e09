"""Run a dataset's own snippets, fenced in, to learn what they really print.

Only ``mafioso eval`` (:mod:`mafioso.trainer.evaluate`) and the reference scorer (``python -m mafioso.trainer.grounding``)
import this module, and both hand it the code of dataset rows; chat input never reaches it (the worker and
the adapters in ``bot/`` do not import ``trainer``).

Each snippet runs once per code hash in a fresh ``python -I -c CODE`` (the interpreter running eval, so its
installed packages are the ones a snippet may import), with:

* a wall-clock limit (:data:`TIME_LIMIT_S`), after which its whole process group is killed;
* ``setrlimit`` limits: address space, CPU seconds, file size (stdout goes to a file, so it is capped too),
  no core dumps;
* an empty temporary working folder as its home and cwd, a minimal environment, stdin closed;
* where ``unshare`` works here (detected once, :func:`isolation` says which fence was used): no network (an
  empty network namespace, in a user namespace) and, where it also works, its own process namespace, so it
  sees no other process and nothing it starts outlives it (``sh`` is the namespace's first process, so the
  snippet is not an init that ignores signals); otherwise it runs without these fences.

A snippet that fails, times out, reads stdin, or imports a package that is missing is "not runnable": its
output is None and nothing is checked against it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from mafioso.prompts.facts import source

TIME_LIMIT_S = 5.0
MEMORY_BYTES = 1 << 30
CPU_SECONDS = 5
MAX_OUTPUT_BYTES = 1 << 20
#: The fences tried in order: own network and process namespaces, then only the network, then none.
_FENCES = (("unshare", "-rnp", "--fork", "--kill-child", "sh", "-c", '"$@"', "sh"), ("unshare", "-rn"))


@dataclass(frozen=True)
class Run:
    """What one snippet did. ``output`` (stdout, then stderr, as a terminal would show them, where logging
    writes) is None unless it exited 0 within the limits; ``raised`` names the exception a failed run ended
    with."""

    output: str | None
    reason: str  # "ok", "timeout", "exit N", "signal N"
    raised: str | None = None
    stderr_tail: str = ""


def _limits(memory: int, cpu: int) -> None:
    """Resource limits of the child, set between fork and exec."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_OUTPUT_BYTES, MAX_OUTPUT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@functools.lru_cache(maxsize=1)
def _fence() -> tuple[str, ...]:
    """The first of :data:`_FENCES` that runs Python on this machine, or () for none (detected once)."""
    for fence in _FENCES:
        try:
            done = subprocess.run([*fence, sys.executable, "-I", "-c", "print('ok')"], stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == b"ok":
            return fence
    return ()


def isolation() -> str:
    """How snippets are fenced off on this machine: ``"unshare -rnp --fork --kill-child"``, ``"unshare -rn"``
    or ``"none"``."""
    fence = _fence()
    return " ".join(fence[:fence.index("sh")] if "sh" in fence else fence) or "none"


def run_snippet(code: str, time_limit_s: float = TIME_LIMIT_S, memory_bytes: int = MEMORY_BYTES,
                cpu_seconds: int = CPU_SECONDS) -> Run:
    """Run ``code`` once in the fenced subprocess described above and report what it printed."""
    command = [*_fence(), sys.executable, "-I", "-c", code]
    with tempfile.TemporaryDirectory(prefix="mafioso-run-", ignore_cleanup_errors=True) as work, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "MPLBACKEND": "Agg"}
        try:
            child = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=err, start_new_session=True,
                                     preexec_fn=functools.partial(_limits, memory_bytes, cpu_seconds))
        except OSError as exc:
            return Run(None, f"could not start: {exc}")
        rc = _wait_then_kill_group(child, time_limit_s)
        err.seek(0)
        stderr = err.read(MAX_OUTPUT_BYTES).decode("utf-8", "replace")
        if rc is None:
            return Run(None, "timeout", stderr_tail=stderr[-500:])
        if rc != 0:
            return Run(None, f"exit {rc}" if rc > 0 else f"signal {-rc}", _raised(stderr), stderr[-500:])
        out.seek(0)
        return Run(out.read(MAX_OUTPUT_BYTES).decode("utf-8", "replace") + stderr, "ok", stderr_tail=stderr[-500:])


def _raised(stderr: str) -> str | None:
    """``ValueError`` for a run that ended in ``ValueError: ...`` after a traceback, else None."""
    if "Traceback (most recent call last)" not in stderr:
        return None
    last = stderr.rstrip().rsplit("\n", 1)[-1]
    match = re.match(r"([A-Za-z_][\w.]*)(?::|$)", last)
    return match.group(1).rsplit(".", 1)[-1] if match else None


def _wait_then_kill_group(child: subprocess.Popen, time_limit_s: float) -> int | None:
    """Wait for the child to end (or the limit to pass), kill whatever is left of its process group, and
    return its exit status (None on timeout). The child is reaped only after the kill, so its process group
    id cannot have been reused by then."""
    deadline = time.monotonic() + time_limit_s
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.01)
    finished = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    try:  # the snippet may have started children of its own: end its whole session
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    rc = child.wait()
    return rc if finished else None


class SnippetRunner:
    """:func:`run_snippet` with a cache keyed by the code's hash, for one eval run (adapter and base share it)."""

    def __init__(self, **limits):
        self._limits = limits
        self._runs: dict[str, Run] = {}

    def run(self, code: str) -> Run:
        """The (cached) run of the Python ``code`` holds (:func:`mafioso.prompts.facts.source`: a Markdown or
        indented paste runs as its code, and would fail on its fence or indentation as it is)."""
        code = source(code)
        key = hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()
        if key not in self._runs:
            self._runs[key] = run_snippet(code, **self._limits)
        return self._runs[key]


    def summary(self) -> dict:
        """How snippets were fenced and how many ran, for ``metrics.json``."""
        runnable = sum(r.output is not None for r in self._runs.values())
        return {"isolation": isolation(), "snippets": len(self._runs), "runnable": runnable,
                "time_limit_s": self._limits.get("time_limit_s", TIME_LIMIT_S)}
