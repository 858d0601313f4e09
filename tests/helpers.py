"""Shared test helpers: tiny models built in the test, datasets written to temp files."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from functools import lru_cache
from pathlib import Path

from mafioso import prompts

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


def _corpus() -> list[str]:
    texts = [prompts.render_prompt(code, request) + expl for request, code, expl in SNIPPETS]
    return texts * 3 + ["abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ()[]{}:;.,'\"`#_=+-*/%<>!?\n"]


def _tokenizer(special: list[str], bos: str | None, eos: str, pad: str):
    """A small byte-level BPE tokenizer trained on the prompt corpus; ``bos`` (if any) starts every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   unk_token="<unk>")


@lru_cache(maxsize=None)
def _tiny_model_dir(root: str) -> Path:
    """Build (once per folder) a tiny random Gemma 3 text model and a BPE tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    folder = Path(root) / "tiny-gemma3"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(["<pad>", "<eos>", "<bos>", "<unk>"], bos="<bos>", eos="<eos>", pad="<pad>")
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        sliding_window=128, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder)
    return folder


@lru_cache(maxsize=None)
def _tiny_qwen_dir(root: str) -> Path:
    """Build (once per folder) a tiny random Qwen2 model with Qwen's special tokens: no BOS, EOS ``<|im_end|>``,
    pad ``<|endoftext|>``, and a generation config that stops on both (as the converted Qwen2.5-Coder does).
    Its shapes equal the tiny Gemma's, so only the architecture tells their adapters apart."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    folder = Path(root) / "tiny-qwen2"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"], bos=None,
                           eos="<|im_end|>", pad="<|endoftext|>")
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id])
    model.save_pretrained(folder)
    return folder


def tiny_model(tmp_path_factory) -> Path:
    """The tiny model folder, shared by all tests of a session."""
    return _tiny_model_dir(str(tmp_path_factory.getbasetemp()))


def tiny_qwen_model(tmp_path_factory) -> Path:
    """The tiny Qwen2 model folder, shared by all tests of a session."""
    return _tiny_qwen_dir(str(tmp_path_factory.getbasetemp()))


# ------------------------------------------------------------------------------ chat adapters (issue 5)
# A fake Explainer (the boundary the adapters call), discord.py objects built from payloads with spec_set
# mocks for everything that would talk to Discord, and loopback servers standing in for Slack.

import asyncio
import hashlib
import hmac
import socket
import time as _time
import unittest.mock
import warnings
from urllib.parse import urlencode


class FakeExplainer:
    """Answers ``answer`` (default: "Listen up, pal: <code>. Capisce?") or raises ``error``; records the code.

    ``gate`` (an asyncio.Event) holds every answer until the test sets it; ``events`` is a shared log the test
    can also append to, to check the order of things. ``persona``: the voice it answers in, as a Worker's.
    """

    def __init__(self, answer: str | None = None, error: Exception | None = None,
                 gate: asyncio.Event | None = None, events: list | None = None, persona: str = "mafioso"):
        self.answer, self.error, self.gate, self.persona = answer, error, gate, persona
        self.codes: list[str] = []
        self.events = [] if events is None else events

    async def explain(self, code: str, request: str | None = None):
        from mafioso.core.explanation import Explanation

        self.codes.append(code)
        self.events.append("explain")
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), 10)
        if self.error is not None:
            raise self.error
        text = self.answer if self.answer is not None else f"Listen up, pal: {code}. Capisce?"
        return Explanation(text=text, tokens=len(text.split()), latency_s=0.01, finished=True)


class StreamingExplainer(FakeExplainer):
    """A FakeExplainer that also streams: its answer comes as ``deltas``, one event each, and ``tick`` (when
    given) runs before each one (a test clock moves on). The last event carries the whole answer."""

    def __init__(self, deltas: list[str], tick=None, **options):
        super().__init__(answer="".join(deltas), **options)
        self.deltas, self.tick = deltas, tick
        self.closed = 0  # streams left (finished or hung up)

    async def stream(self, code: str, request: str | None = None):
        from mafioso.worker.service import StreamEvent

        answer = await self.explain(code, request)
        explainer = self

        class Events:
            async def _events(self):
                for delta in explainer.deltas[:-1]:
                    if explainer.tick:
                        explainer.tick()
                    yield StreamEvent(delta)
                yield StreamEvent(explainer.deltas[-1], answer)

            def __aiter__(self):
                return self._events()

            async def aclose(self):
                explainer.closed += 1

        return Events()


def spec_mock(instance, **attributes):
    """A MagicMock with ``spec_set`` = a real discord.py object (a wrong attribute fails); async methods are
    AsyncMocks. ``attributes`` are set on it."""
    with warnings.catch_warnings(record=True):  # reading every property trips discord.py's deprecation notes
        mock = unittest.mock.MagicMock(spec_set=instance)
    for name, value in attributes.items():
        setattr(mock, name, value)
    return mock


def _discord_state():
    return unittest.mock.MagicMock(name="ConnectionState")


def discord_user(user_id: int = 1001, *, bot: bool = False, name: str = "vito"):
    """A real ``discord.User`` built from a gateway payload."""
    import discord

    return discord.User(state=_discord_state(), data={"id": user_id, "username": name, "discriminator": "0",
                                                     "avatar": None, "global_name": name, "bot": bot})


def discord_client_user(user_id: int = 9000):
    """A real ``discord.ClientUser`` (the bot itself) built from a payload."""
    import discord

    return discord.ClientUser(state=_discord_state(), data={"id": user_id, "username": "mafioso",
                                                           "discriminator": "0", "avatar": None, "bot": True})


def discord_guild(guild_id: int = 1):
    """A real ``discord.Guild`` built from a payload."""
    import discord

    return discord.Guild(state=_discord_state(), data={"id": guild_id, "name": "The Family", "roles": [],
                                                      "emojis": [], "stickers": [], "features": []})


def discord_channel(channel_id: int = 2, guild=None, *, parent_id: int | None = None):
    """A spec_set mock of a real TextChannel (or a Thread when ``parent_id`` is given): send, typing …"""
    import discord

    guild = guild or discord_guild()
    if parent_id is None:
        real = discord.TextChannel(state=_discord_state(), guild=guild,
                                   data={"id": channel_id, "name": "code-review", "type": 0, "position": 0})
        return spec_mock(real, id=channel_id, guild=guild)
    # A real Thread looks its parent up in the cache on introspection, so this one is specced from the class.
    return spec_mock(discord.Thread, id=channel_id, guild=guild, parent_id=parent_id)


def discord_attachment(filename: str = "mob.py", content: bytes = b"x = 1\n", size: int | None = None):
    """A spec_set mock of a real Attachment whose ``read()`` returns ``content``."""
    import discord

    real = discord.Attachment(state=_discord_state(), data={
        "id": 77, "filename": filename, "size": len(content), "url": f"https://cdn.example/{filename}",
        "proxy_url": f"https://cdn.example/{filename}"})
    attachment = spec_mock(real, filename=filename, size=len(content) if size is None else size)
    attachment.read.return_value = content
    return attachment


def discord_message(content: str, *, author=None, channel=None, mentions=(), attachments=()):
    """A spec_set mock of a real Message built from a payload: ``reply`` is an AsyncMock."""
    import discord

    channel = channel or discord_channel()
    author = author or discord_user()
    real = discord.Message(state=_discord_state(), channel=channel, data={
        "id": 3, "channel_id": channel.id, "author": {"id": author.id, "username": author.name,
                                                      "discriminator": "0", "avatar": None},
        "content": content, "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None, "tts": False,
        "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
        "pinned": False, "type": 0})
    return spec_mock(real, content=content, author=author, channel=channel, guild=channel.guild,
                     mentions=list(mentions), attachments=list(attachments), mention_everyone=False)


def discord_interaction(*, user=None, channel=None, events: list | None = None):
    """A spec_set mock of ``discord.Interaction`` with spec_set mocks of its response and followup webhook.

    ``response.is_done()`` turns true once the interaction was answered; ``events`` records "defer".
    """
    import discord

    channel = channel or discord_channel()
    interaction = unittest.mock.MagicMock(spec_set=discord.Interaction)
    response = unittest.mock.MagicMock(spec_set=discord.InteractionResponse)
    response.is_done.side_effect = lambda: bool(response.defer.await_count or response.send_message.await_count
                                                or response.send_modal.await_count)
    if events is not None:
        response.defer.side_effect = lambda *a, **k: events.append("defer")
    interaction.response = response
    interaction.followup = unittest.mock.MagicMock(spec_set=discord.Webhook)
    interaction.user = user or discord_user()
    interaction.channel = channel
    interaction.channel_id = channel.id
    interaction.guild_id = channel.guild.id
    return interaction


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slack_signature_headers(secret: str, body: str, timestamp: int | None = None) -> dict:
    """The headers Slack signs a request with (``v0=`` HMAC-SHA256 of ``v0:<ts>:<body>``)."""
    timestamp = int(_time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


_TRIGGERS = itertools.count(1)


def slash_command_body(text: str, response_url: str, command: str = "/explain", trigger_id: str = "") -> str:
    """A form-encoded slash-command request body, as Slack sends it (each with its own trigger id)."""
    return urlencode({"token": "legacy", "team_id": "T1", "team_domain": "family", "channel_id": "C1",
                      "channel_name": "code", "user_id": "U1", "user_name": "vito", "command": command,
                      "text": text, "api_app_id": "A1", "response_url": response_url,
                      "trigger_id": trigger_id or f"{next(_TRIGGERS)}.2.3"})


class SlackStub:
    """Loopback aiohttp server standing in for Slack: the Web API under ``/api/``, response URLs under
    ``/response/``, files under ``/files/``. Records what the app sent; ``fail`` maps a Web API method to an
    error code; ``rate_limit`` answers HTTP 429 to that many calls first; ``http_status`` maps a Web API method
    (or ``"response"``, the response URLs) to an HTTP status it answers with instead (e.g. 500)."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.responses: list[dict] = []
        self.downloads: list[dict] = []
        self.files = files or {}
        self.fail: dict[str, str] = {}
        self.http_status: dict[str, int] = {}
        self.rate_limit = 0
        self.envelopes: asyncio.Queue = asyncio.Queue()  # Socket Mode: what "Slack" sends down the socket
        self.acks: list[dict] = []  # Socket Mode: what the app sent back
        self._runner = None
        self.url = ""

    async def __aenter__(self) -> "SlackStub":
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = "http://127.0.0.1:%d" % self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._runner.cleanup()

    async def _api(self, request):
        from aiohttp import web

        method = request.match_info["method"]
        data = dict(await request.post()) if request.content_type != "application/json" else await request.json()
        if method == "chat.postMessage" and self.rate_limit > 0:
            self.rate_limit -= 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": "0"})
        self.calls.append((method, data))
        if method in self.http_status:
            return web.json_response({"ok": False, "error": "internal_error"}, status=self.http_status[method])
        if method in self.fail:
            return web.json_response({"ok": False, "error": self.fail[method]})
        if method == "apps.connections.open":
            return web.json_response({"ok": True, "url": self.url.replace("http", "ws", 1) + "/socket"})
        if method == "auth.test":
            return web.json_response({"ok": True, "user_id": "UBOT", "bot_id": "B1", "team_id": "T1",
                                      "user": "mafioso", "team": "family", "url": "https://family.slack.com/"})
        return web.json_response({"ok": True, "ts": "1700000001.000200", "channel": data.get("channel")})

    async def _response(self, request):
        from aiohttp import web

        self.responses.append(await request.json())
        status = self.http_status.get("response", 200)
        return web.Response(text="ok" if status == 200 else "internal_error", status=status)

    async def _file(self, request):
        from aiohttp import web

        self.downloads.append({"name": request.match_info["name"],
                               "authorization": request.headers.get("Authorization")})
        return web.Response(body=self.files.get(request.match_info["name"], b""))

    async def _socket(self, request):
        import json

        from aiohttp import web

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1})

        async def feed():
            while True:
                await ws.send_json(await self.envelopes.get())

        feeder = asyncio.ensure_future(feed())
        try:
            async for message in ws:
                if message.type.name == "TEXT":
                    self.acks.append(json.loads(message.data))
        finally:
            feeder.cancel()
        return ws

    def posted(self, method: str = "chat.postMessage") -> list[dict]:
        """What the app sent to one Web API method."""
        return [data for name, data in self.calls if name == method]

    async def wait_for(self, condition, timeout: float = 5.0) -> None:
        """Wait until ``condition()`` is true (the app answers in the background after its ack)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; calls={self.calls} responses={self.responses}")
            await asyncio.sleep(0.01)


async def serve_loopback(app, **runner_options):
    """Start an aiohttp ``app`` on an unused loopback port; returns (runner, base URL). Clean up the runner."""
    from aiohttp import web

    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, "http://127.0.0.1:%d" % runner.addresses[0][1]


class FakeEngine:
    """Stands in for a :class:`mafioso.worker.engines.Engine`: records every batch, answers "explained <code>" in
    ``tokens`` tokens, decoded one step every ``token_delay`` seconds, honouring each request's Control like the real
    engines (a row stops at its ``max_tokens``, cut as unfinished, or once cancelled; a batch ends when its
    last row does).

    ``gate`` (when set) holds each batch until the test opens it; ``delay`` sleeps in the GPU thread;
    ``fail`` makes ``generate`` raise. ``decoded`` counts the tokens decoded, ``cancelled`` the rows stopped.
    """

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None, fail: bool = False,
                 tokens: int = 3, token_delay: float = 0.0, max_new_tokens: int = 200):
        from mafioso.core.config import GenerationConfig

        self.delay = delay
        self.gate = gate
        self.fail = fail
        self.tokens = tokens
        self.token_delay = token_delay
        # no loop rule: the fake never loops, and a stream may show all its tokens at once
        self.gen = GenerationConfig(max_new_tokens=max_new_tokens, stop_loops=False)
        self.continuous_slots = 0  # the Engine protocol: whole batches per call, no decode stats
        self.stats = None
        self.max_prompt_tokens = 1 << 30  # the fake's prompts never outgrow a context
        self.batches: list[list[tuple[str, str | None]]] = []
        self.started = threading.Event()
        self.decoded = 0
        self.cancelled = 0
        self._lock = threading.Lock()  # continuous_slots: several calls at once
        import mafioso.worker.engine  # noqa: F401 - torch loads here, not inside the first (timed) answer

    def prompt_tokens(self, code, request=None):
        """About one token a word, like the tests' prompts."""
        return len(code.split()) + len((request or "").split())

    def close(self):
        """Nothing to release."""

    def generate(self, requests, controls=None):
        from mafioso.worker.control import Control
        from mafioso.worker.engine import Generation

        controls = controls or [Control() for _ in requests]
        self.batches.append(list(requests))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("CUDA out of memory (fake)")
        limits = [min(self.tokens, c.limit(self.gen.max_new_tokens)) for c in controls]
        done = [0] * len(requests)
        stopped = [False] * len(requests)
        for _ in range(max(limits)):
            for row, control in enumerate(controls):
                if not stopped[row] and control.cancelled:
                    stopped[row] = True
                    with self._lock:
                        self.cancelled += 1
            live = [row for row in range(len(requests)) if not stopped[row] and done[row] < limits[row]]
            if not live:
                break
            time.sleep(self.token_delay)
            for row in live:
                done[row] += 1
                controls[row].emit(done[row] - 1)
            with self._lock:
                self.decoded += len(live)
        return [Generation(text=f"explained {code}", tokens=n, finished=n >= self.tokens)
                for (code, _), n in zip(requests, done)]

    def text_so_far(self, code: str, ids: list[int]) -> str:
        """The answer if it ended after ``ids``: the share of "explained <code>" that ``ids`` are of its tokens."""
        text = f"explained {code}"
        return text[:len(text) * min(len(ids), self.tokens) // self.tokens]

    def seen(self) -> list[str]:
        """Every code the engine was asked to explain."""
        return [code for batch in self.batches for code, _ in batch]


def worker_config(**overrides):
    """A WorkerConfig for tests: small queue and batch limits unless overridden."""
    values = {"adapter": "none", "device": "cpu", "max_batch_size": 16, "queue_size": 64,
              "request_timeout": 30.0}
    values.update(overrides)
    from mafioso.core.config import WorkerConfig

    return WorkerConfig(**values)


@contextlib.asynccontextmanager
async def serving(worker, cfg, personas=None):
    """The real worker HTTP app (mafioso.worker.http_api) on a loopback port; yields its base URL. Starts and
    stops the worker (and the workers of ``personas``, more models by name)."""
    from mafioso.worker.http_api import RUNNER_OPTIONS, make_app

    runner, url = await serve_loopback(make_app(worker, cfg, personas=personas), **RUNNER_OPTIONS)
    try:
        yield url
    finally:
        await runner.cleanup()


class VllmStandIn:
    """A loopback stand-in for ``vllm serve BASE --enable-lora --lora-modules mafioso=ADAPTER`` (the shapes of
    vllm/entrypoints/openai/protocol.py, vllm-project/vllm commit 0052bed3): /v1/models lists the base and the
    LoRA module (``root`` / ``parent``), /v1/completions and /v1/chat/completions answer ``answer`` cut at the
    request's ``stop`` strings (vLLM leaves the stop string out), stream as ``data:`` chunks ending with
    ``data: [DONE]``, an unknown model is a 404 ``{"error": {..., "code": 404}}`` and a prompt past
    ``max_model_len`` (counted in characters here) a 400. ``requests`` records every body and its headers.

        async with VllmStandIn(answer=" Listen up, pal.") as server:
            ... server.url ...
    """

    BASE = "/models/gemma-3-270m"
    ADAPTER = "/adapters/mafioso"

    def __init__(self, answer: str = " Listen up, pal: it adds two numbers. Capisce?", *, finish_reason: str = "stop",
                 max_model_len: int = 32768, status: int | None = None):
        self.answer, self.finish_reason, self.max_model_len, self.status = answer, finish_reason, max_model_len, status
        self.requests: list[tuple[dict, dict]] = []
        self.url = ""
        self._runner = None

    async def __aenter__(self) -> "VllmStandIn":
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner, self.url = await serve_loopback(app)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._runner.cleanup()

    @staticmethod
    def _error(status: int, message: str, kind: str):
        from aiohttp import web

        return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": status}},
                                 status=status)

    def _card(self, model_id: str, root: str, parent: str | None) -> dict:
        return {"id": model_id, "object": "model", "created": 1764806400, "owned_by": "vllm", "root": root,
                "parent": parent, "max_model_len": self.max_model_len if parent is None else None,
                "permission": [{"id": "modelperm-0", "object": "model_permission", "created": 1764806400,
                                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                                "organization": "*", "group": None, "is_blocking": False}]}

    async def _models(self, request):
        from aiohttp import web

        return web.json_response({"object": "list", "data": [self._card(self.BASE, self.BASE, None),
                                                             self._card("mafioso", self.ADAPTER, self.BASE)]})

    async def _read(self, request, prompt_of) -> tuple[dict | None, object]:
        body = await request.json()
        self.requests.append((body, dict(request.headers)))
        if self.status is not None:
            return None, self._error(self.status, "the stand-in was told to fail", "ServiceUnavailableError")
        if body.get("model") not in (self.BASE, "mafioso"):
            return None, self._error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        prompt = prompt_of(body)
        if len(prompt) + (body.get("max_tokens") or 0) > self.max_model_len:
            return None, self._error(400, f"This model's maximum context length is {self.max_model_len} tokens. "
                                          f"However, you requested {len(prompt)} tokens.", "BadRequestError")
        stops = body.get("stop") or []
        text = self.answer
        for stop in [stops] if isinstance(stops, str) else stops:
            text = text.split(stop, 1)[0]
        return body, text

    def _usage(self, prompt: str, text: str) -> dict:
        return {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                "total_tokens": len(prompt.split()) + len(text.split()), "prompt_tokens_details": None}

    async def _stream(self, request, kind: str, pieces: list[dict]):
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            chunk = {"id": "cmpl-standin", "object": kind, "created": 1764806400, "model": "mafioso",
                     "choices": [piece]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _completions(self, request):
        from aiohttp import web

        def prompt_of(body):
            return body["prompt"] if isinstance(body["prompt"], str) else "".join(body["prompt"])

        body, text = await self._read(request, prompt_of)
        if body is None:
            return text
        if body.get("stream"):
            return await self._stream(request, "text_completion", [
                {"index": 0, "text": word, "logprobs": None, "finish_reason": None, "stop_reason": None}
                for word in text.split(" ")] + [
                {"index": 0, "text": "", "logprobs": None, "finish_reason": self.finish_reason, "stop_reason": None}])
        return web.json_response({
            "id": "cmpl-standin", "object": "text_completion", "created": 1764806400, "model": body["model"],
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": self.finish_reason,
                         "stop_reason": None, "prompt_logprobs": None}],
            "usage": self._usage(prompt_of(body), text), "service_tier": None, "system_fingerprint": None,
            "kv_transfer_params": None})

    async def _chat(self, request):
        from aiohttp import web

        def prompt_of(body):
            return "\n".join(str(m.get("content")) for m in body["messages"])

        body, text = await self._read(request, prompt_of)
        if body is None:
            return text
        if body.get("stream"):
            return await self._stream(request, "chat.completion.chunk", [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None},
                {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None},
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": self.finish_reason}])
        return web.json_response({
            "id": "chatcmpl-standin", "object": "chat.completion", "created": 1764806400, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []},
                         "logprobs": None, "finish_reason": self.finish_reason, "stop_reason": None}],
            "usage": self._usage(prompt_of(body), text), "prompt_logprobs": None})


class TorchLlama:
    """Stands in for ``llama_cpp.Llama`` (the part worker/llamacpp_engine.py uses) over a transformers model:
    ``generate`` yields greedy tokens, each from a full forward pass whose last logits go through the given
    logits processors first, as llama.cpp's sampler chain does (temp 0: the processors, then argmax)."""

    def __init__(self, model, n_ctx: int = 512, **_ignored):
        self.model = model
        self._n_ctx = n_ctx
        self.closed = False
        self.calls: list[dict] = []  # the sampling settings of each generate call

    def n_ctx(self) -> int:
        return self._n_ctx

    def n_vocab(self) -> int:
        return self.model.config.get_text_config().vocab_size

    def close(self) -> None:
        self.closed = True

    def generate(self, tokens, *, logits_processor=(), temp: float = 0.8, **settings):
        import numpy as np
        import torch

        self.calls.append({"temp": temp, **settings})
        if temp != 0.0:
            raise NotImplementedError("TorchLlama decodes greedily (temp=0) only")
        ids = list(tokens)
        while len(ids) < self._n_ctx:
            with torch.no_grad():
                scores = self.model(torch.tensor([ids])).logits[0, -1].float().numpy().copy()
            for process in logits_processor:
                scores = process(np.array(ids, dtype=np.intc), scores)
            ids.append(int(np.argmax(scores)))
            yield ids[-1]
