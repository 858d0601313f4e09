"""Feedback through the worker's HTTP API on a real loopback socket, with a real SQLite file."""

import asyncio
import json
import logging

import aiohttp

from mafioso.core.feedback import FeedbackStore
from mafioso.worker.service import Worker
from tests.worker.helpers import FakeEngine, serving, worker_config


def test_answer_ids_ratings_404_400_metrics_and_openapi(tmp_path):
    cfg = worker_config()
    store = FeedbackStore.open(tmp_path / "f.db")

    async def main():
        async with serving(Worker(FakeEngine(), cfg, feedback=store), cfg) as url, aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/explain", json={"code": "print(1)"}) as r:
                answer = await r.json()
            async with http.post(f"{url}/v1/chat/completions", json={"messages": [
                    {"role": "user", "content": "x = 2"}], "temperature": 0.7, "seed": 4}) as r:
                chat = await r.json()
            out = {}
            for name, body in (("up", {"answer_id": answer["answer_id"], "rating": 1}),
                               ("down", {"answer_id": chat["id"], "rating": -1}),
                               ("unknown", {"answer_id": "no-such-answer", "rating": 1}),
                               ("bad", {"answer_id": answer["answer_id"], "rating": 5}),
                               ("missing", {"rating": 1})):
                async with http.post(f"{url}/v1/feedback", json=body) as r:
                    out[name] = (r.status, r.content_type, await r.json())
            async with http.get(f"{url}/metrics") as r:
                metrics = await r.text()
            async with http.get(f"{url}/openapi.json") as r:
                document = await r.json()
            return answer, chat, out, metrics, document

    answer, chat, out, metrics, document = asyncio.run(main())
    assert len(answer["answer_id"]) == 32 and chat["id"].startswith("chatcmpl-")
    assert out["up"][0] == 200 and out["down"][0] == 200
    status, kind, body = out["unknown"]
    assert (status, kind, body["error"]["code"]) == (404, "application/json", "answer_not_found")
    assert out["bad"][0] == 400 and "rating" in out["bad"][2]["error"]["message"]
    assert out["missing"][0] == 400
    assert 'mafioso_feedback_ratings_total{adapter="none",rating="up"} 1.0' in metrics
    assert 'mafioso_feedback_ratings_total{adapter="none",rating="down"} 1.0' in metrics
    schema = document["components"]["schemas"]["FeedbackRequest"]
    assert schema["required"] == ["answer_id", "rating"] and schema["properties"]["rating"]["enum"] == [1, -1]
    assert "/v1/feedback" in document["paths"]
    store.close()
    rows = FeedbackStore.open(tmp_path / "f.db").rated_answers()  # after a restart
    assert {(r["code"].strip(), r["ups"], r["downs"]) for r in rows} == {("print(1)", 1, 0), ("x = 2", 0, 1)}
    # each answer records how it was decoded: the worker's greedy default, or the request's own sampling
    decoding = {r["code"].strip(): json.loads(r["decoding"]) for r in rows}
    assert (decoding["print(1)"]["do_sample"], decoding["print(1)"]["seed"]) == (False, None)
    assert {k: decoding["x = 2"][k] for k in ("do_sample", "temperature", "top_p", "seed")} == {
        "do_sample": True, "temperature": 0.7, "top_p": 1.0, "seed": 4}


def test_a_corrupt_database_is_reported_once_and_the_worker_still_answers(tmp_path, caplog):
    path = tmp_path / "f.db"
    path.write_bytes(b"not sqlite at all " * 200)
    cfg = worker_config()

    async def main():
        store = FeedbackStore.open(path)
        async with serving(Worker(FakeEngine(), cfg, feedback=store), cfg) as url, aiohttp.ClientSession() as http:
            statuses = []
            for i in range(3):
                async with http.post(f"{url}/v1/explain", json={"code": f"print({i})"}) as r:
                    statuses.append(r.status)
            async with http.post(f"{url}/v1/feedback", json={"answer_id": "x", "rating": 1}) as r:
                rating = r.status, (await r.json())["error"]["code"]
            return statuses, rating

    with caplog.at_level(logging.ERROR):
        statuses, rating = asyncio.run(main())
    assert statuses == [200, 200, 200]
    assert rating == (503, "feedback_off")
    assert len([r for r in caplog.records if r.name == "mafioso.feedback" and r.levelno == logging.ERROR]) == 1
