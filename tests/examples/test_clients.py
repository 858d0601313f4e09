"""The client examples in examples/ and docs/API.md, run as a user would against a real worker on loopback
(the tiny random model behind it, so the answers are gibberish but real)."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mafioso.worker.service import Worker
from tests.worker.helpers import serving, worker_config

ROOT = Path(__file__).resolve().parents[2]


def _run_against_worker(engine, command: list[str]) -> subprocess.CompletedProcess:
    cfg = worker_config(api_key="sesame")

    async def main():
        async with serving(Worker(engine, cfg), cfg) as url:
            env = {**os.environ, "MAFIOSO_URL": url, "MAFIOSO_API_KEY": "sesame"}
            proc = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                                        stderr=subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            return subprocess.CompletedProcess(command, proc.returncode, out.decode(), err.decode())

    return asyncio.run(main())


def test_openai_client_example(engine):
    done = _run_against_worker(engine, [sys.executable, "examples/client_openai.py", "examples/fizzbuzz.py"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "tokens, finish_reason=" in done.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_example(engine):
    done = _run_against_worker(engine, ["bash", "examples/client_curl.sh", "examples/fizzbuzz.py", "any bug?"])
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert set(answer) >= {"explanation", "tokens", "finished"}
