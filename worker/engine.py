"""The model behind the worker: load a base (+ LoRA adapter) once, then decode batches of prompts.

    loaded = load_model_for(WorkerConfig(base_model="embedded", adapter="out/adapter"))
    engine = GenerateEngine(loaded.model, loaded.tokenizer, GenerationConfig(), loaded.device, loaded.persona)
    [answer] = engine.generate([("print(1 + 1)", None)])

(the worker loads through :func:`mafioso.worker.engines.load_engine`, which picks the engine).

Where the adapter goes depends on the device:

* CUDA with ``nf4``/``int8``: bf16 compute, bitsandbytes base, PEFT adapter kept *unmerged* on top
  (merging LoRA into 4-bit weights rounds the update away and gives garbage);
* CUDA with ``none`` (the default): adapter merged in fp32 on the CPU, served in bf16 (the GPU never holds
  the fp32 copy: ~1 GB less peak memory at start-up);
* CPU: never bitsandbytes, adapter merged in fp32, served in bf16 or as int8 weights
  (:mod:`mafioso.core.cpu_quant`) where a short measurement finds it clearly faster than fp32 on this CPU
  (:mod:`mafioso.core.cpu_dtype`), else fp32.

:meth:`GenerateEngine.generate` is the reference decode path: one ``model.generate`` call for the whole batch,
left padding, stopping each row at EOS, when the model opens a new ``###`` section or when it loops
(:mod:`mafioso.core.loop_guard`: the answer is then cut back to before the loop). With ``quantization=none``
and greedy decoding, :func:`mafioso.worker.engines.load_engine` returns a
:class:`mafioso.worker.fast_engine.FastEngine` instead (it holds a GenerateEngine for what it cannot serve): same
``generate`` signature and greedy maths (token-identical to ``model.generate`` in fp32; in bf16 the different
kernels may pick other tokens, with equal eval metrics), decoded with continuous batching, on CUDA in
torch.compile'd CUDA graphs (``fast_decode=false`` turns it off).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

import mafioso
from mafioso import prompts
from mafioso.prompts.lines import line
from mafioso.core import cpu_quant, serving_cache
from mafioso.core.claim_check import drop_unsupported, first_unsupported
from mafioso.worker.control import Control
from mafioso.core.cpu_dtype import cpu_dtype
from mafioso.worker.grounded_decoding import AnswerGrounding, Grounding
from mafioso.worker.decoding_rules import AnswerRules, DecodingRules
from mafioso.worker.repetition_penalty import penalize_
from mafioso.worker.retry import Resume, answer_with_retries
from mafioso.worker.sampling import Sampling
from mafioso.core.loop_guard import LoopRule, TokenPieces, cut_loop, find_loop
from mafioso.prompts.facts import CACHED_PASTES
from mafioso.core.postcheck import finish
from mafioso.core.base_model import (BASES, load_model, load_tokenizer, model_facts, named_base,
                                 resolve_base)
from mafioso.core.config import ADAPTER_INFO, DEFAULT_ADAPTER, EMBEDDED_BASE, GenerationConfig, WorkerConfig
from mafioso.core.errors import ConfigError, ModelError

__all__ = ["SHIPPED_ADAPTERS_DIR", "GenerateEngine", "Generation", "LoadedModel", "adapter_folder", "base_of",
           "adapter_prompt_format", "check_adapter_base", "load_model_for", "shipped_adapter"]

log = logging.getLogger(__name__)

#: Where the shipped adapters lie: one folder per named base (``BASES[name].adapter``, e.g. ``adapter``).
SHIPPED_ADAPTERS_DIR = Path(mafioso.__file__).resolve().parent


@dataclass(frozen=True)
class Generation:
    """One decoded answer."""

    text: str  # the explanation only: cut before any new ### section or loop, stripped, code removed
    tokens: int  # generated tokens up to and including the stop (EOS, the token that completed ### or a loop)
    finished: bool  # stopped by EOS, ### or a loop (GenerationConfig.stop_loops), not by max_new_tokens
    code_leak: bool = False  # the post-check found code and removed it
    looped: bool = False  # the answer loops (mafioso.core.loop_guard), whether stop_loops cut it or not
    dropped: int = 0  # sentences the claim post-check removed (mafioso.core.claim_check)
    raw_text: str = ""  # the answer before that check ("" when it removed nothing)
    retried: int = 0  # times it was decoded again from before a dropped sentence (mafioso.worker.retry)
    first_text: str = ""  # then: the first answer decoded, before the check (the model's own, for eval)


def shipped_adapter(base: str) -> Path | None:
    """The shipped adapter for the base ``base`` (a spec or a resolved folder), if one is shipped: the named
    base's own, told by name, HF id, a converted folder's mark, or a local folder whose config has a named
    base's architecture and shapes (a copy of it)."""
    name = named_base(base)
    if name is None and (Path(base).expanduser() / "config.json").is_file():
        try:
            config = json.loads((Path(base).expanduser() / "config.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            config = {}
        config = config.get("text_config", config)
        found = {"architecture": config.get("model_type"), "hidden_size": config.get("hidden_size"),
                 "num_hidden_layers": config.get("num_hidden_layers")}
        name = next((s.name for s in BASES.values() if s.facts() == found), None)
    folder = SHIPPED_ADAPTERS_DIR / BASES[name].adapter if name in BASES and BASES[name].adapter else None
    return folder if folder is not None and (folder / "adapter_config.json").is_file() else None


def adapter_folder(spec: str, base: str = "") -> Path | None:
    """The adapter folder for ``--adapter`` (a folder, ``default``, ``none`` or a shipped persona's name such as
    ``noir``) on the base ``--base-model`` (empty: embedded); None means the bare base. ``default`` is the
    adapter shipped for that base."""
    if spec == "none":
        return None
    if spec == DEFAULT_ADAPTER:
        folder = shipped_adapter(base or EMBEDDED_BASE)
        if folder is None and base and named_base(base) is None and base.endswith(".gguf"):
            folder = shipped_adapter(resolve_base(base))  # a GGUF is known by its converted folder
        if folder is None:
            log.warning("no adapter is shipped for the base %s: running the bare base model (no mafioso "
                        "persona); pass --adapter FOLDER to use a trained one", base or EMBEDDED_BASE)
        return folder
    folder = Path(spec).expanduser()
    persona_folder = SHIPPED_ADAPTERS_DIR / f"adapter-{spec}"  # a shipped persona by name: --adapter noir
    if not (folder / "adapter_config.json").is_file() and spec in prompts.personas() \
            and (persona_folder / "adapter_config.json").is_file():
        return persona_folder
    if not (folder / "adapter_config.json").is_file():
        shipped = [p for p in prompts.personas() if (SHIPPED_ADAPTERS_DIR / f"adapter-{p}").is_dir()]
        names = f" or a shipped persona's name ({', '.join(shipped)})" if shipped else ""
        trained = (f"; the persona {spec!r} has no shipped adapter yet: train one with mafioso train --persona "
                   f"{spec}" if spec in prompts.personas() else "")
        raise ModelError(f"{spec} is not an adapter folder (no adapter_config.json); give the output folder of "
                         f"'mafioso train', 'default', 'none'{names}{trained}")
    return folder


def base_of(cfg_base: str, adapter: Path | None) -> str:
    """The base to load: the configured one, else the adapter's ``mafioso.json`` base, else embedded."""
    if cfg_base:
        return cfg_base
    return adapter_info(adapter, "; pass --base-model explicitly").get("base_model") or EMBEDDED_BASE


def adapter_info(adapter: Path | None, hint: str = "") -> dict:
    """An adapter's ``mafioso.json`` (empty for none, or an adapter trained elsewhere); a broken one is a
    ModelError naming it (``hint``: what to do instead)."""
    info_file = adapter / ADAPTER_INFO if adapter is not None else None
    if info_file is None or not info_file.is_file():
        return {}
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        info = None
    if not isinstance(info, dict):
        raise ModelError(f"{info_file} is not a valid mafioso.json{hint}")
    return info


def adapter_persona(adapter: Path | None) -> str:
    """The persona an adapter was trained with (its ``mafioso.json``; the mafioso for an older one or none)."""
    name = (adapter_info(adapter).get("config") or {}).get("persona")
    if name and name not in prompts.personas():
        raise ModelError(f"the adapter {adapter} speaks as the persona {name!r}, which this Mafioso does not have "
                         f"({', '.join(prompts.personas())}); add prompts/personas/{name}/")
    return name or prompts.DEFAULT_PERSONA


def adapter_prompt_format(adapter: Path | None) -> int:
    """The prompt format an adapter is served in: the one it was trained on (its ``mafioso.json``; 1 for one from
    before the record; the current :data:`mafioso.prompts.PROMPT_FORMAT` for none or one trained elsewhere). A
    format newer than this Mafioso's is a ModelError."""
    info = adapter_info(adapter)
    if not info:
        return prompts.PROMPT_FORMAT
    found = info.get("prompt_format", 1)
    if not isinstance(found, int) or not 1 <= found <= prompts.PROMPT_FORMAT:
        raise ModelError(f"the adapter {adapter} was trained on prompt format {found!r}, which this Mafioso does "
                         f"not write (1 to {prompts.PROMPT_FORMAT}): upgrade Mafioso")
    return found


def check_adapter_base(adapter: Path, base: str, config) -> None:
    """Refuse an adapter trained on another base model, saying which base it needs.

    The facts its ``mafioso.json`` records (architecture, hidden size, layers; for an older adapter, those of
    the named base it records) must be the loaded model's; when both the adapter's base and the loaded one are
    named bases, the names must agree too. A local copy of the same model passes: only its facts are compared.
    """
    info = adapter_info(adapter)
    recorded = info.get("base") or {}
    wanted = recorded.get("name") or info.get("base_model") or ""
    name = named_base(wanted) if wanted else None
    expected = {k: recorded[k] for k in ("architecture", "hidden_size", "num_hidden_layers") if k in recorded}
    if not expected and name in BASES:
        expected = BASES[name].facts()
    found = model_facts(config)
    wrong = [f"{key} {value} (this model: {found[key]})" for key, value in expected.items() if found[key] != value]
    have = named_base(base)
    if name in BASES and have in BASES and name != have:
        wrong.insert(0, f"base {name} (this model: {have})")
    if wrong:
        raise ModelError(f"the adapter {adapter} needs the base {wanted or '(unrecorded)'}, not {base}: it was "
                         f"trained on {', '.join(wrong)}. Run it with --base-model {wanted or 'THE-BASE'}, or "
                         "leave --base-model out to load the base the adapter names")


def serving_dtype(spec: str, device: str, base: str = "") -> torch.dtype | str:
    """The dtype answers are computed in: ``auto`` is bf16 on CUDA; on a CPU, whichever of fp32, bf16 and int8
    weights (``"int8"``) a short measurement shaped like the model ``base``'s decode finds fastest
    (:mod:`mafioso.core.cpu_dtype`, cached per machine; oneDNN's "bf16 supported" is no guide: bf16 ran at half
    fp32's speed on a CPU it called supported)."""
    if spec == "auto" and device == "cuda":
        return torch.bfloat16
    if spec == cpu_quant.INT8:
        cpu_quant.check(device)
    if spec == "auto":
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(base).get_text_config() if base else None
        except (OSError, ValueError):
            config = None  # load_model says what is wrong with the base
        hidden, vocab = (config.hidden_size, config.vocab_size) if config is not None else (640, 262144)
        return cpu_dtype(hidden, vocab)
    return {"bfloat16": torch.bfloat16, "float32": torch.float32, cpu_quant.INT8: cpu_quant.INT8}[spec]


def _with_adapter(model, adapter: Path, base: str):
    """``model`` with the LoRA adapter in ``adapter`` on top (unmerged), after checking it fits the base."""
    from peft import PeftModel

    check_adapter_base(adapter, base, model.config)
    if not any((adapter / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
        # peft would go looking for a hub repository of that name and fail on the path's form
        raise ModelError(f"the adapter {adapter} has no weights (adapter_model.safetensors): copy the whole output "
                         "folder of 'mafioso train'")
    try:
        return PeftModel.from_pretrained(model, str(adapter))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # e.g. a truncated weights file
        raise ModelError(f"cannot load the adapter {adapter} on {base}: {exc}") from None


def _device(spec: str) -> str:
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and not torch.cuda.is_available():
        raise ConfigError("MAFIOSO_DEVICE=cuda but no CUDA GPU is visible; use auto or cpu")
    return spec


class _RulesFeed:
    """Hands each row's new tokens to its :class:`mafioso.worker.decoding_rules.AnswerRules`, once, whichever of
    ``generate``'s hooks (the stopping criterion after a step, the ban before the next) sees them first."""

    def __init__(self, rows: list[AnswerRules], prompt_len: int):
        self.rows, self.prompt_len = rows, prompt_len
        self.fed = 0  # answer tokens fed to every row's rules so far

    def catch_up(self, input_ids) -> None:
        """Feed the columns of ``input_ids`` past the prompt that the rules have not seen yet."""
        for column in input_ids[:, self.prompt_len + self.fed:].T.tolist():
            self.fed += 1
            for rules, token in zip(self.rows, column, strict=True):
                rules.add(token)


class _RulesStop(StoppingCriteria):
    """Stopping criterion: a row is done once its rules end it (``###``, a loop)."""

    def __init__(self, feed: _RulesFeed):
        self.feed = feed

    def __call__(self, input_ids, scores, **kwargs):
        self.feed.catch_up(input_ids)
        return torch.tensor([rules.stop is not None for rules in self.feed.rows], dtype=torch.bool,
                            device=input_ids.device)


class _RulesBan(LogitsProcessor):
    """Per row, forbids the tokens its rules ban next (n-gram bans)."""

    def __init__(self, feed: _RulesFeed):
        self.feed = feed

    def __call__(self, input_ids, scores):
        self.feed.catch_up(input_ids)
        for row, rules in enumerate(self.feed.rows):
            if banned := rules.banned():
                scores[row, list(banned)] = float("-inf")
        return scores


class _RepetitionPenalty(LogitsProcessor):
    """The repetition penalty (:func:`mafioso.worker.repetition_penalty.penalize_`) on ``generate``'s rows, whose
    inputs are left-padded to ``width``: the tokens each row generates count as seen, and ``seen`` of each row
    before them (its prompt with ``penalize_prompt``, the kept tokens of an answer decoded again)."""

    def __init__(self, penalty: float, seen: list[list[int]], width: int, pad: int, device):
        self.penalty, self.width = penalty, width
        # a row's seen tokens padded with one of its own (counted anyway), or with the pad token (never
        # generated) where it has none
        longest = max(map(len, seen))
        rows = [[(ids or [pad])[0]] * (longest - len(ids)) + ids for ids in seen]
        self.seen = torch.tensor(rows, dtype=torch.long, device=device)  # (rows, longest), or (rows, 0)

    def __call__(self, input_ids, scores):
        return penalize_(scores, torch.cat([self.seen, input_ids[:, self.width:]], dim=1), self.penalty)


class _FirstBan(LogitsProcessor):
    """Per row, the tokens its first generated token may not be (:class:`mafioso.worker.retry.Resume`)."""

    def __init__(self, bans: list[frozenset[int]], width: int):
        self.bans, self.width = bans, width

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] == self.width:
            for row, ban in enumerate(self.bans):
                scores[row, list(ban)] = float("-inf")
        return scores


class _RequestStop(StoppingCriteria):
    """Stopping criterion: a row is done at its own ``max_tokens`` or once its request is cancelled
    (:class:`mafioso.worker.control.Control`); the batch ends when every row is done. ``cancelled_at[row]`` records how
    many tokens a cancelled row had generated when it stopped. It also hands each live row's new token to its
    control (``Control.emit``: streaming, time to first token) until the row ends (EOS, its ``rules``, its
    limit)."""

    def __init__(self, controls: list[Control], limits: list[int], prompt_len: int, eos_ids=(),
                 rules: list[AnswerRules] = ()):
        self.controls, self.limits, self.prompt_len = controls, limits, prompt_len
        self.eos_ids, self.rules = set(eos_ids), rules
        self.cancelled_at: dict[int, int] = {}
        self.ended: set[int] = set()  # rows whose answer is over: padding follows, nothing more to emit

    def __call__(self, input_ids, scores, **kwargs):
        generated = input_ids.shape[1] - self.prompt_len
        for row, control in enumerate(self.controls):
            if control.cancelled:
                self.cancelled_at.setdefault(row, generated)
        done = [generated >= limit or row in self.cancelled_at for row, limit in enumerate(self.limits)]
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if row not in self.ended and row not in self.cancelled_at:
                self.controls[row].emit(token)
                if done[row] or token in self.eos_ids or (self.rules and self.rules[row].stop is not None):
                    self.ended.add(row)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _GroundedMask(LogitsProcessor):
    """Per row, the tokens its answer may not take next (:class:`mafioso.worker.grounded_decoding.AnswerGrounding`)."""

    def __init__(self, rows: list[AnswerGrounding], prompt_len: int):
        self.rows, self.prompt_len = rows, prompt_len
        self.fed = 0

    def __call__(self, input_ids, scores):
        for column in input_ids[:, self.prompt_len + self.fed:].T.tolist():
            for rule, token in zip(self.rows, column, strict=True):
                rule.add(token)
            self.fed += 1
        for row, rule in enumerate(self.rows):
            mask = rule.mask()
            scores[row, :mask.shape[0]].masked_fill_(mask, float("-inf"))  # on the device (AnswerGrounding.on)
        return scores


class _Sample(LogitsProcessor):
    """Sampled rows: the token each draws (:meth:`Sampling.draw`, with a generator of its own) is the only one
    left, so ``generate``'s greedy pick takes it; greedy rows are left as they are."""

    def __init__(self, samplings: list[Sampling], device):
        self.rows = [(row, sampling, sampling.generator(device)) for row, sampling in enumerate(samplings)
                     if not sampling.greedy]

    def __call__(self, input_ids, scores):
        for row, sampling, generator in self.rows:
            token = sampling.draw(scores[row], generator)
            scores[row] = float("-inf")
            scores[row, token] = 0.0
        return scores


@dataclass(frozen=True)
class LoadedModel:
    """A base (+ adapter) ready to decode: what :func:`load_model_for` hands to an engine."""

    model: object
    tokenizer: object
    device: str
    quantization: str  # what the weights run in on ``device`` (``none`` on a CPU)
    persona: str  # the persona the adapter was trained with: whose instruction starts every prompt
    prompt_format: int = prompts.PROMPT_FORMAT  # the prompt format it was trained on, which it is served in


def load_model_for(cfg: WorkerConfig, note: Callable[[str], None] = log.info) -> LoadedModel:
    """Load the base and adapter named by ``cfg``; ``note`` hears one line on what the load is about to do
    (``mafioso explain`` prints it while the user waits)."""
    adapter = adapter_folder(cfg.adapter, cfg.base_model)
    base = resolve_base(base_of(cfg.base_model, adapter))
    device = _device(cfg.device)
    quantization = cfg.quantization if device == "cuda" else "none"
    if device == "cpu" and cfg.quantization != "none":
        log.info("CPU: running the base in fp32 without bitsandbytes (quantization=%s ignored)",
                 cfg.quantization)
    dtype = serving_dtype(cfg.dtype, device, base)
    if quantization == "int8":  # bitsandbytes warns on every int8 matmul that bf16 inputs go through fp16
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    # unquantized: load and merge in fp32 (exact) on the CPU, then cast and move; quantized: dtype is the
    # compute dtype and the bitsandbytes weights load straight onto the GPU. The merged result is kept
    # (mafioso.core.serving_cache): a second start loads it and skips the fp32 load, the merge and the cast.
    merge = quantization == "none" and adapter is not None
    merged = serving_cache.entry(base, adapter, dtype) if merge else None
    note("loading the cached merged model…" if merged and merged.is_dir() else
         "loading the model (first run converts it once)…" if merged else "loading the model…")
    model = serving_cache.load(merged, device, dtype) if merged else None
    # after the note: ~3 s for Gemma's 262k-token tokenizer.json; after a cached int8 model, whose weights
    # pack in the background meanwhile (mafioso.core.cpu_quant)
    tokenizer = load_tokenizer(base)
    if model is not None:
        check_adapter_base(adapter, base, model.config)
    else:
        load_dtype = torch.float32 if merge or dtype == cpu_quant.INT8 else dtype
        model = load_model(base, quantization, "cpu" if merge else device, load_dtype, attn_implementation="sdpa")
        if adapter is not None:
            model = _with_adapter(model, adapter, base)
        if merge:
            model = cpu_quant.cast(model.merge_and_unload(), dtype)  # faster than an unmerged adapter
            serving_cache.save(model, merged)
            model = model.to(device)
            model.hf_device_map = {"": device}  # where it lies now (transformers reads this in generate)
        elif dtype == cpu_quant.INT8:
            model = cpu_quant.quantize(model)
    model.eval()
    log.info("engine ready: base %s, adapter %s, %s %s, quantization %s%s", base, adapter or "none", device,
             str(dtype).removeprefix("torch."), quantization,
             " (adapter unmerged)" if adapter and quantization != "none" else "")
    return LoadedModel(model, tokenizer, device, quantization, adapter_persona(adapter),
                       adapter_prompt_format(adapter))


class GenerateEngine:
    """A loaded model + tokenizer that turns (code, request) pairs into explanations with ``model.generate``
    (the reference decode path; :mod:`mafioso.worker.engines` has the protocol and the loader)."""

    #: Whole batches per call, no decode-step counters (the worker's Engine protocol).
    continuous_slots = 0
    stats = None

    def __init__(self, model, tokenizer, gen: GenerationConfig, device: str, persona: str = prompts.DEFAULT_PERSONA,
                 prompt_format: int = prompts.PROMPT_FORMAT):
        self.model = model
        self.persona = persona  # whose instruction starts every prompt: the adapter's own
        self.prompt_format = prompt_format  # the adapter's own too (mafioso.prompts.PROMPT_FORMAT)
        self.tokenizer = tokenizer
        self.gen = gen
        self.device = device
        context = getattr(model.config.get_text_config(), "max_position_embeddings", None) or 8192
        #: Longest prompt that still leaves room for a full answer.
        self.max_prompt_tokens = context - gen.max_new_tokens
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids = sorted(eos | {tokenizer.eos_token_id})
        self.pieces = TokenPieces(tokenizer)  # each token's text, for the loop and section rules
        #: The decoding rules of ``gen``: stop at ``###`` or a loop, n-gram bans (:mod:`mafioso.worker.decoding_rules`).
        self.rules = DecodingRules(gen, tokenizer, self.pieces)
        self.grounding = (Grounding(tokenizer, model.get_output_embeddings().weight.shape[0])
                          if gen.grounded_decoding else None)
        # the guard counts a prompt's tokens, then the engine runs it: one encoding, kept for as many pastes as
        # the facts sheet keeps (a tuple: callers get their own list)
        self._encoded = lru_cache(maxsize=CACHED_PASTES)(self._encode)

    def close(self) -> None:
        """Release what the engine runs besides the model (nothing here; the fast engine stops its thread)."""

    def prompt_tokens(self, code: str, request: str | None = None) -> int:
        """How many tokens the prompt for ``code`` takes (the input guard compares it to the context)."""
        return len(self.prompt_ids([(code, request)])[0])

    def generate(self, requests: list[tuple[str, str | None]],
                 controls: list[Control] | None = None) -> list[Generation]:
        """Explain a batch of ``(code, request)`` pairs in one decode; answers come back in order. ``controls``
        (one per request): each answer's own ``max_tokens`` (cut there, unfinished) and its cancel flag (the
        row stops at the next step; what it has is returned, for nobody)."""
        if not requests:
            return []
        return answer_with_retries(self, requests, controls or [Control() for _ in requests], self.decode)

    def prompt_ids(self, requests: list[tuple[str, str | None]]) -> list[list[int]]:
        """Each ``(code, request)`` pair's prompt, as token ids, in the engine's persona and prompt format."""
        return [list(self._encoded(code, request)) for code, request in requests]

    def _encode(self, code: str, request: str | None) -> tuple[int, ...]:
        return tuple(prompts.encode(self.tokenizer, code, request, persona_name=self.persona,
                                    prompt_format=self.prompt_format)["input_ids"])

    def groundings(self, requests: list[tuple[str, str | None]]) -> list[AnswerGrounding] | None:
        """Each answer's grounded-decoding rule (None when ``grounded_decoding`` is off)."""
        return [self.grounding.for_answer(code) for code, _ in requests] if self.grounding else None

    def answers(self, requests: list[tuple[str, str | None]], rows: list[tuple[list[int], int | None]],
                controls: list[Control]) -> list[Generation]:
        """The finished answers for the decoded ``rows`` (ids, stop) of ``requests``: cut at each row's limit and
        stop, decoded, post-checked. Every engine finishes its rows here, so both paths give the same text."""
        limits = [control.limit(self.gen.max_new_tokens) for control in controls]
        # a row stopped early is padded to the batch's end: its answer ends at its limit, whatever follows
        answers = [self._finish(ids[:limit], stop if stop is not None and stop <= limit else None)
                   for (ids, stop), limit in zip(rows, limits, strict=True)]
        return [self._checked(code, answer) for (code, _), answer in zip(requests, answers, strict=True)]

    def text_so_far(self, code: str, ids: list[int]) -> str:
        """The answer's text if it ended after ``ids`` (its tokens so far), cut and checked as ``generate`` does:
        what a stream may show (:mod:`mafioso.worker.token_stream`). Empty while every sentence so far is
        dropped: the "nothing sure" line ends an answer that kept nothing, so a stream whose first sentence
        went never shows that line and then takes it back for the sentences that follow. With retries on, only
        the sentences before the first dropped one: a retry keeps those and decodes the rest again."""
        answer = self._finish(ids, None)
        if self.gen.drop_unsupported and self.gen.retry_unsupported:
            at = first_unsupported(code, answer.text)
            return answer.text if at is None else answer.text[:at].rstrip()
        return self._checked(code, answer, so_far=True).text

    def _checked(self, code: str, answer: Generation, so_far: bool = False) -> Generation:
        """The answer without the sentences its code contradicts (``drop_unsupported``), both paths alike."""
        if not self.gen.drop_unsupported:
            return answer
        text, dropped = drop_unsupported(code, answer.text)
        if not dropped:
            return answer
        return dataclasses.replace(answer, text=text or ("" if so_far else line("nothing_sure", self.persona)),
                                   dropped=dropped, raw_text=answer.text)

    def decode(self, prompt_ids: list[list[int]], controls: list[Control] | None = None,
               grounding: list[AnswerGrounding] | None = None,
               resumes: list[Resume] | None = None) -> list[tuple[list[int], int | None]]:
        """One batched ``model.generate``: per row, the generated ids and where ``###`` or a loop stopped it
        (or None). The batch runs to its longest ``max_tokens``; each row stops at its own or when cancelled.
        ``grounding``: each row's grounded-decoding rule (None: no such bans); ``resumes``: each row's answer
        continued from its kept tokens (:class:`mafioso.worker.retry.Resume`; its rule fed them already)."""
        resumes = resumes or [None] * len(prompt_ids)
        prefixes = [list(resume.prefix) if resume else [] for resume in resumes]
        inputs = [ids + prefix for ids, prefix in zip(prompt_ids, prefixes, strict=True)]
        width = max(len(ids) for ids in inputs)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in inputs], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in inputs], device=self.device)
        controls = controls or [Control() for _ in prompt_ids]
        extra = {}
        if self.gen.repetition_penalty != 1.0:
            seen = [(ids if self.gen.penalize_prompt else []) + prefix for ids, prefix in zip(prompt_ids, prefixes)]
            extra["logits_processor"] = LogitsProcessorList(
                [_RepetitionPenalty(self.gen.repetition_penalty, seen, width, pad, self.device)])
        rules = _RulesFeed([self.rules.for_answer(control.stop, prefix, control.cut)
                            for control, prefix in zip(controls, prefixes)], width)
        if any(resumes):
            extra.setdefault("logits_processor", LogitsProcessorList()).append(
                _FirstBan([resume.ban if resume else frozenset() for resume in resumes], width))
        if self.gen.no_repeat_ngram:
            extra.setdefault("logits_processor", LogitsProcessorList()).append(_RulesBan(rules))
        if grounding:  # its masks on the device once, not copied there every step
            grounding = [rule.on(self.device) for rule in grounding]
            extra.setdefault("logits_processor", LogitsProcessorList()).append(_GroundedMask(grounding, width))
        samplings = [control.decoding(self.gen) for control in controls]
        if not all(sampling.greedy for sampling in samplings):  # last: it draws from what the rules left
            extra.setdefault("logits_processor", LogitsProcessorList()).append(_Sample(samplings, self.device))
        limits = [control.limit(self.gen.max_new_tokens) - len(prefix) for control, prefix in zip(controls, prefixes)]
        requested = _RequestStop(controls, limits, width, self.eos_ids, rules.rows)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=max(1, max(limits)),
                do_sample=False, pad_token_id=pad, eos_token_id=self.eos_ids,
                stopping_criteria=StoppingCriteriaList([_RulesStop(rules), requested]), **extra,
            )
        generated = [prefix + ids[:requested.cancelled_at.get(row, len(ids))]
                     for row, (ids, prefix) in enumerate(zip(out[:, width:].tolist(), prefixes))]
        return [(ids, row_rules.stop) for ids, row_rules in zip(generated, rules.rows, strict=True)]

    def _finish(self, ids: list[int], stop: int | None) -> Generation:
        """Cut one row at its stop (### or a loop, else EOS), decode it, cut a loop out of the text
        (``stop_loops``), and run the code post-check."""
        eos_at = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        stops = [n for n in (stop, None if eos_at is None else eos_at + 1) if n is not None]
        tokens = min(stops) if stops else len(ids)
        answer = ids[:tokens]
        loop = find_loop(answer, LoopRule.of(self.gen), self.pieces)  # found again exactly where decode stopped
        if loop is not None and self.gen.stop_loops:
            text = cut_loop(lambda part: self.tokenizer.decode(part, skip_special_tokens=True), answer, loop)
        else:
            text = self.tokenizer.decode(answer, skip_special_tokens=True)
        text, leaked = finish(text, self.persona)
        return Generation(text=text, tokens=tokens, finished=bool(stops), code_leak=leaked, looped=loop is not None)
