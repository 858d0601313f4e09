"""Bad requests against the real worker HTTP app on loopback (issue 19): bodies, fields, headers, methods,
sizes, encodings and auth. Each case asserts the exact status and error code, and that a good request right
after it is answered (the process survived).

The engine is the FakeEngine: what is tested here is everything in front of the model.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass, field

import aiohttp
import pytest

from mafioso.worker.service import Worker
from tests.worker.helpers import FakeEngine, serving, worker_config

KEY = "s3cret"
JSON = {"Content-Type": "application/json"}
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "x = 1"}]


@dataclass(frozen=True)
class Case:
    """One request and the answer it must get."""

    name: str
    status: int
    code: str | None  # the error's code (None for a 200)
    path: str = "/v1/explain"
    json: object = None  # sent as JSON unless ``data`` is given
    data: bytes | None = None
    headers: dict = field(default_factory=dict)
    method: str = "POST"
    keyed: bool = False  # the worker requires the API key (sent unless the case sets Authorization)
    message: str | None = None  # a part of the error message that must be there


CASES = [
    # bodies
    Case("not JSON", 400, "bad_request", data=b"{not json", headers=JSON, message="must be JSON"),
    Case("empty body", 400, "bad_request", data=b"", headers=JSON),
    Case("a JSON list", 400, "bad_request", json=[{"code": "x"}], message="JSON object"),
    Case("a JSON string", 400, "bad_request", json="x = 1", message="JSON object"),
    Case("JSON null", 400, "bad_request", data=b"null", headers=JSON),
    Case("deeply nested JSON", 400, "bad_request", data=b"[" * 30_000 + b"]" * 30_000, headers=JSON,
         message="nested too deep"),
    Case("a number of 5,000 digits", 400, "bad_request", data=b'{"code": "x", "seed": ' + b"9" * 5000 + b"}",
         headers=JSON, message="too many digits"),
    Case("a seed past 64 bits", 200, None, path=CHAT, json={"messages": USER, "temperature": 0.5, "seed": 2**70}),
    Case("a negative seed", 200, None, path=CHAT, json={"messages": USER, "temperature": 0.5, "seed": -3}),
    Case("no code", 400, "bad_request", json={"request": "hi"}, message="'code' is required"),
    Case("code is null", 400, "bad_request", json={"code": None}, message="'code' is required"),
    Case("code is a number", 400, "bad_request", json={"code": 1}, message="'code' must be a string"),
    Case("code is a list", 400, "bad_request", json={"code": ["x"]}),
    Case("request is a number", 400, "bad_request", json={"code": "x", "request": 3}),
    Case("whitespace code", 400, "empty", json={"code": " \n\t "}),
    Case("code over the limit", 413, "too_large", json={"code": "x" * 1001}),
    Case("code + request over the limit", 413, "too_large", json={"code": "x" * 600, "request": "y" * 500}),
    Case("body over the size limit", 413, "too_large", data=b"x" * 100_000, headers=JSON),
    Case("a NUL byte", 400, "binary", json={"code": "x = 1\x00"}),
    Case("mostly control characters", 400, "binary", json={"code": "\x01\x02\x03\x04x"}),
    Case("a lone surrogate", 400, "binary", data=b'{"code": "print(\'\\ud800\')"}', headers=JSON),
    Case("not UTF-8", 400, "bad_request", data=b'{"code": "\xff\xfe"}', headers=JSON),
    Case("UTF-16", 400, "bad_request", data=json.dumps({"code": "x"}).encode("utf-16"), headers=JSON),
    Case("an unknown charset", 400, "bad_request", data=b'{"code": "x"}',
         headers={"Content-Type": "application/json; charset=klingon"}, message="charset"),
    Case("unicode code is fine", 200, None, json={"code": "naïve = '☕'"}),
    Case("JSON without a Content-Type is fine", 200, None, data=b'{"code": "x = 1"}'),
    Case("a gzip body is fine", 200, None, data=gzip.compress(b'{"code": "x = 1"}'),
         headers={**JSON, "Content-Encoding": "gzip"}),
    Case("a gzip bomb", 413, "too_large", data=gzip.compress(b" " * 5_000_000),
         headers={**JSON, "Content-Encoding": "gzip"}),
    # fields
    Case("max_tokens 0", 400, "bad_request", json={"code": "x", "max_tokens": 0}),
    Case("max_tokens a word", 400, "bad_request", path="/v1/completions", json={"prompt": "x", "max_tokens": "lots"},
         message="'max_tokens' must be an integer at least 1"),
    Case("max_tokens true", 400, "bad_request", json={"code": "x", "max_tokens": True}),
    Case("max_tokens 2.5", 400, "bad_request", json={"code": "x", "max_tokens": 2.5}),
    Case("max_tokens NaN", 400, "bad_request", data=b'{"code": "x", "max_tokens": NaN}', headers=JSON),
    Case("max_tokens over the worker's is its own", 200, None, path=CHAT, json={"messages": USER, "max_tokens": 4096}),
    Case("max_tokens 1 is fine", 200, None, json={"code": "x", "max_tokens": 1}),
    Case("temperature above 2", 400, "bad_request", path="/v1/completions", json={"prompt": "x", "temperature": 2.5},
         message="at most 2"),
    Case("temperature negative", 400, "bad_request", json={"code": "x", "temperature": -1}),
    Case("temperature 0 is fine", 200, None, path="/v1/completions", json={"prompt": "x", "temperature": 0}),
    Case("sampling is fine", 200, None, path=CHAT, json={"messages": USER, "temperature": 0.7, "top_p": 0.5,
                                                          "seed": 7}),
    Case("top_p above 1", 400, "bad_request", path=CHAT, json={"messages": USER, "top_p": 1.5}),
    Case("seed a word", 400, "bad_request", path=CHAT, json={"messages": USER, "seed": "lucky"},
         message="'seed' must be an integer"),
    Case("a frequency penalty", 400, "bad_request", path=CHAT, json={"messages": USER, "frequency_penalty": 0.5},
         message="repetition penalty"),
    Case("penalties at 0 are fine", 200, None, path=CHAT, json={"messages": USER, "frequency_penalty": 0,
                                                                 "presence_penalty": 0.0, "logit_bias": {}}),
    Case("a logit bias", 400, "bad_request", path="/v1/completions",
         json={"prompt": "x", "logit_bias": {"50256": -100}}),
    Case("n 2 greedy", 400, "bad_request", path=CHAT, json={"messages": USER, "n": 2}, message="temperature"),
    Case("n 2 sampled is fine", 200, None, path=CHAT, json={"messages": USER, "n": 2, "temperature": 0.8}),
    Case("n 9", 400, "bad_request", path=CHAT, json={"messages": USER, "n": 9, "temperature": 0.8}),
    Case("n 2 streamed", 400, "bad_request", path=CHAT, json={"messages": USER, "n": 2, "temperature": 0.8,
                                                               "stream": True}, message="one answer"),
    Case("stream", 400, "bad_request", path="/v1/completions", json={"prompt": ["x", "y"], "stream": True},
         message="one prompt"),
    Case("stop strings are fine", 200, None, path="/v1/completions", json={"prompt": "x", "stop": ["\n"]}),
    Case("a stop string", 200, None, path=CHAT, json={"messages": USER, "stop": "Capisce"}),
    Case("an empty stop string", 400, "bad_request", path=CHAT, json={"messages": USER, "stop": [""]},
         message="non-empty"),
    Case("a stop string of 201 characters", 400, "bad_request", path=CHAT, json={"messages": USER, "stop": "x" * 201},
         message="'stop' must be a non-empty string of at most 200 characters or a list of non-empty strings of at "
                 "most 200 characters (at most 4)."),
    Case("five stop strings", 400, "bad_request", path=CHAT, json={"messages": USER, "stop": list("abcde")},
         message="at most 4"),
    Case("an unknown model", 404, "model_not_found", path="/v1/completions", json={"prompt": "x", "model": "gpt-9"}),
    Case("prompt a number", 400, "bad_request", path="/v1/completions", json={"prompt": 3}),
    Case("prompt an empty list", 400, "bad_request", path="/v1/completions", json={"prompt": []}),
    Case("prompt a list with a number", 400, "bad_request", path="/v1/completions", json={"prompt": ["x", 3]}),
    Case("one empty prompt fails the list", 400, "empty", path="/v1/completions", json={"prompt": ["x", " "]}),
    Case("no messages", 400, "bad_request", path=CHAT, json={"messages": []}),
    Case("messages not a list", 400, "bad_request", path=CHAT, json={"messages": "x = 1"}),
    Case("no user message", 400, "bad_request", path=CHAT, json={"messages": [{"role": "system", "content": "x"}]},
         message="user message"),
    Case("content a number", 400, "bad_request", path=CHAT, json={"messages": [{"role": "user", "content": 5}]}),
    Case("content parts are fine", 200, None, path=CHAT,
         json={"messages": [{"role": "user", "content": [{"type": "text", "text": "x = 1"}]}]}),
    # methods and paths
    Case("GET on a POST endpoint", 405, "method_not_allowed", method="GET"),
    Case("PUT", 405, "method_not_allowed", method="PUT", path="/v1/completions", json={"prompt": "x"}),
    Case("DELETE", 405, "method_not_allowed", method="DELETE", path=CHAT),
    Case("an unknown path", 404, "not_found", path="/v2/explain", json={"code": "x"}),
    Case("a path traversal", 404, "not_found", method="GET", path="/../../etc/passwd"),
    # auth
    Case("no key", 401, "invalid_api_key", keyed=True, json={"code": "x"}, headers={"Authorization": ""}),
    Case("a wrong key", 401, "invalid_api_key", keyed=True, json={"code": "x"},
         headers={"Authorization": "Bearer nope"}),
    Case("the key without Bearer", 401, "invalid_api_key", keyed=True, json={"code": "x"},
         headers={"Authorization": KEY}),
    Case("the key in lower-case bearer", 401, "invalid_api_key", keyed=True, json={"code": "x"},
         headers={"Authorization": f"bearer {KEY}"}),
    Case("metrics need the key", 401, "invalid_api_key", keyed=True, method="GET", path="/metrics",
         headers={"Authorization": ""}),
    Case("healthz needs no key", 200, None, keyed=True, method="GET", path="/healthz",
         headers={"Authorization": ""}),
    Case("the right key", 200, None, keyed=True, json={"code": "x"}),
]


async def _exchange(case: Case) -> tuple[int, dict, int, float]:
    cfg = worker_config(max_input_chars=1000, api_key=KEY if case.keyed else "")
    auth = {"Authorization": f"Bearer {KEY}"} if case.keyed else {}
    async with serving(Worker(FakeEngine(), cfg), cfg) as url, aiohttp.ClientSession() as http:
        kwargs = {"data": case.data} if case.data is not None else {"json": case.json} if case.json is not None else {}
        headers = {**auth, **case.headers}
        started = asyncio.get_running_loop().time()
        async with http.request(case.method, url + case.path, headers=headers, **kwargs) as r:
            status, body = r.status, await r.json()
        took = asyncio.get_running_loop().time() - started
        async with http.post(f"{url}/v1/explain", json={"code": "print(1)"}, headers=auth) as r:
            survived = r.status
    return status, body, survived, took


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_request_gets_its_exact_error_and_the_worker_survives(case):
    status, body, survived, took = asyncio.run(_exchange(case))
    assert status == case.status, body
    if case.code is None:
        assert "error" not in body
    else:
        assert body["error"]["code"] == case.code and set(body["error"]) == {"message", "type", "code"}
        if case.message:
            assert case.message in body["error"]["message"]
    assert survived == 200
    assert took < 2.0  # nothing here is slow: no super-linear parsing


def test_the_table_holds_enough_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
