"""Several personas on one worker, each chosen by the request's OpenAI ``model`` as vLLM does (issue 23)."""

import asyncio
import json
import shutil

import aiohttp
import openai
import pytest

from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.worker.engines import load_engine
from mafioso.worker.service import Worker
from tests.worker.helpers import serving, worker_config

CODES = ["print(1 + 1)", "x = [1, 2]\nprint(len(x))", "def f():\n    return 3\n", "for i in range(3):\n    print(i)"]


def test_two_personas_answer_by_model_at_once(engine, tiny_model_dir, tiny_adapter_dir, tmp_path):
    noir_dir = tmp_path / "noir"  # a tiny adapter trained "as" the noir detective: its mafioso.json says so
    shutil.copytree(tiny_adapter_dir, noir_dir)
    info = json.loads((noir_dir / "mafioso.json").read_text())
    info.setdefault("config", {})["persona"] = "noir"
    (noir_dir / "mafioso.json").write_text(json.dumps(info))
    noir = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter=str(noir_dir), device="cpu",
                                    fast_decode=False), GenerationConfig(max_new_tokens=8))
    assert noir.persona == "noir" and engine.persona == "mafioso"
    expected = {"mafioso": [engine.generate([(c, None)])[0].text for c in CODES],
                "noir": [noir.generate([(c, None)])[0].text for c in CODES]}
    assert expected["mafioso"] != expected["noir"]  # another adapter, another instruction: other answers
    cfg = worker_config(adapters=f"noir={noir_dir}")

    async def main():
        async with serving(Worker(engine, cfg), cfg, personas={"noir": Worker(noir, cfg)}) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            asked, answers = [], []
            for i, code in enumerate(CODES):  # both personas at once, one request each (no padding effects)
                pair = ("mafioso", "noir")
                answers += await asyncio.gather(*(client.completions.create(model=m, prompt=code) for m in pair))
                asked += [(m, i) for m in pair]
            models = await client.models.list()
            retrieved = await client.models.retrieve("noir")
            with pytest.raises(openai.NotFoundError, match="does not exist"):
                await client.models.retrieve("pirate")
            await client.close()
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/v1/explain", json={"code": "x = 1", "model": "pirate"}) as r:
                    unknown = (r.status, await r.json())
                async with http.post(f"{url}/v1/explain", json={"code": CODES[0], "model": "noir"}) as r:
                    explained = (r.status, await r.json())
            return asked, answers, models, unknown, explained, retrieved

    asked, answers, models, unknown, explained, retrieved = asyncio.run(main())
    for (model, i), answer in zip(asked, answers):
        assert answer.model == model and answer.choices[0].text == expected[model][i], (model, i)
    listed = {m.id: m for m in models.data}
    assert list(listed) == ["mafioso", "noir"] and listed["noir"].parent == "mafioso"
    assert listed["noir"].root == str(noir_dir) and retrieved == listed["noir"]
    assert unknown[0] == 404 and unknown[1]["error"]["code"] == "model_not_found"
    assert explained == (200, explained[1]) and explained[1]["explanation"] == expected["noir"][0]


def test_a_worker_speaks_its_persona_s_fixed_lines(fake_engine):
    from mafioso.core.errors import InputRejected, WorkerBusy
    from mafioso.prompts.lines import line

    async def refusals(persona):
        fake_engine.persona = persona
        worker = Worker(fake_engine, worker_config(queue_size=1), admission=False)
        found = []
        await worker.start()
        try:
            for code in ("   ", "x" * 7000, "x = 1\x00\x01"):
                try:
                    await worker.explain(code)
                except InputRejected as exc:
                    found.append(str(exc))
            worker._waiting.append(object())  # a full queue
            try:
                worker._admit()
            except WorkerBusy as exc:
                found.append(str(exc))
            worker._waiting.clear()
        finally:
            await worker.stop()
        return found

    for persona in ("noir", "mafioso"):
        assert asyncio.run(refusals(persona)) == [line(s, persona) for s in ("empty", "too_large", "binary", "busy")]


def test_a_noir_worker_s_http_api_refuses_in_the_noir_s_words(fake_engine):
    from mafioso.prompts.lines import line

    fake_engine.persona = "noir"
    cfg = worker_config(api_key="sesame")

    async def main():
        async with serving(Worker(fake_engine, cfg), cfg) as url, aiohttp.ClientSession() as session:
            async with session.post(f"{url}/v1/explain", json={"code": "x = 1"}) as reply:
                no_key = (reply.status, (await reply.json())["error"]["message"])
            headers = {"Authorization": "Bearer sesame", "Content-Type": "application/json"}
            async with session.post(f"{url}/v1/explain", data=b"{not json", headers=headers) as reply:
                not_json = (reply.status, (await reply.json())["error"]["message"])
            async with session.post(f"{url}/v1/explain", json={"code": "  "}, headers=headers) as reply:
                empty = (reply.status, (await reply.json())["error"]["message"])
        return no_key, not_json, empty

    assert asyncio.run(main()) == ((401, line("wrong_key", "noir")), (400, line("not_json", "noir")),
                                   (400, line("empty", "noir")))
