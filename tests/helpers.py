"""Helpers several test areas share: the sample snippets, datasets written from them, loopback servers.

Each area keeps its own fakes beside its tests: tests/worker/ (the fake engine, the vLLM and llama.cpp stand-ins),
tests/bot/ (the fake explainer, Discord objects, the Slack stand-in); tests/tiny_models.py builds the tiny models.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

SNIPPETS = [
    ("What does this do?", "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
     "Listen up, pal: `add` takes `a` and `b` and returns their sum, so the print shows 5. Capisce?"),
    ("explain pls", "for i in range(3):\n    print(i * i)",
     "The loop walks `i` through 0, 1 and 2 and prints each square: 0, 1, 4. Simple business, kid."),
    ("what is this", "names = [n.upper() for n in ['al', 'vito']]",
     "A list comprehension that shouts every name in `names`: AL and VITO. Respect the family."),
    ("eli5", "class Crew:\n    def __init__(self):\n        self.members = []",
     "`Crew` is a class whose `__init__` starts every crew with an empty `members` list, boss."),
    ("walk me through it", "import json\nprint(json.dumps({'don': 1}))",
     "It turns a dict into JSON text with `json.dumps` and prints it. The books stay clean, my friend."),
    ("huh?", "total = sum(x for x in range(10) if x % 2)",
     "`total` adds up the odd numbers below ten, which makes 25. Nice and quiet, like a good capo."),
    ("explain", "with open('ledger.txt') as f:\n    lines = f.readlines()",
     "It opens `ledger.txt`, reads every line into `lines`, and closes the file by itself. Capisce, pal?"),
    ("what's the output?", "x = [3, 1, 2]\nx.sort()\nprint(x)",
     "`sort` puts the list in order in place, so it prints 1, 2, 3. Even the wiseguy gets that one."),
]


def write_dataset(path: Path, rows=SNIPPETS, fmt: str = "object", prefix: str = "s") -> Path:
    """Write samples in one of the accepted formats: object (keyed by id), list or jsonl."""
    samples = [{"prompt": p, "code": c, "mafia_explanation": e} for p, c, e in rows]
    if fmt == "object":
        path.write_text(json.dumps({f"{prefix}{i}": s for i, s in enumerate(samples)}, indent=2))
    elif fmt == "list":
        path.write_text(json.dumps(samples))
    else:
        path.write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    return path


def write_one_row_validation(path: Path) -> Path:
    """A validation file of one small runnable row (JSONL), for the tests that train and score a tiny model."""
    return write_dataset(path, [("p", "y = [1]\nprint(y)", "Prints a list with 1, pal.")], fmt="jsonl")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_loopback(app, **runner_options):
    """Start an aiohttp ``app`` on an unused loopback port; returns (runner, base URL). Clean up the runner."""
    from aiohttp import web

    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, "http://127.0.0.1:%d" % runner.addresses[0][1]
