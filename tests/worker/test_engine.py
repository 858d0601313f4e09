"""The real Engine on the tiny random Gemma 3: loading, batching, stopping, the post-check.

The tiny model writes gibberish, so these tests check structure; where content matters a forward hook
forces the model's next tokens.
"""

import dataclasses
import json
import logging
import shutil

import pytest
import torch
from transformers import AutoConfig

from mafioso import prompts
from mafioso.worker import engine as engine_module
from mafioso.prompts.lines import line
from mafioso.worker.control import Control
from mafioso.worker.engine import Generation, adapter_folder, base_of
from mafioso.worker.engines import load_engine
from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.core.errors import ModelError
from tests.worker.helpers import engine_with


@pytest.fixture
def engine16(engine):
    """The reference engine on the tiny model, 16 new tokens."""
    return engine_with(engine, GenerationConfig(max_new_tokens=16))


@pytest.fixture
def forced(engine):
    """``force(text)``: the model (every engine's on the tiny model) writes ``text`` token by token (then repeats
    its last token)."""
    handles = []

    def force(text: str, eos: bool = False) -> list[int]:
        ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = ids + [engine.tokenizer.eos_token_id] if eos else ids
        step = {"n": 0}

        def hook(module, args, output):
            target = ids[min(step["n"], len(ids) - 1)]
            output.logits[:, -1, :] = -1e9
            output.logits[:, -1, target] = 100.0
            step["n"] += 1
            return output

        handles.append(engine.model.register_forward_hook(hook))
        return ids

    yield force
    for handle in handles:
        handle.remove()


def test_generate_answers_a_batch_in_order(engine):
    results = engine.generate([("print(1)", None), ("def f(x):\n    return x * 2\n" * 4, "why?"), ("x = 1", "")])
    assert len(results) == 3
    for result in results:
        assert isinstance(result, Generation) and isinstance(result.text, str)
        assert 1 <= result.tokens <= 8
        assert result.finished or result.tokens == 8
    assert engine.generate([]) == []


def test_prompt_ids_are_the_training_encoding(engine, monkeypatch):
    seen = []
    monkeypatch.setattr(engine, "decode", lambda ids, controls=None, grounding=None: seen.extend(ids) or [([], None) for _ in ids])
    engine.generate([("print(1)", None), ("x = 2", "what is x?")])
    assert seen == [prompts.encode(engine.tokenizer, "print(1)")["input_ids"],
                    prompts.encode(engine.tokenizer, "x = 2", "what is x?")["input_ids"]]


def test_a_prompt_is_encoded_once_for_the_guard_and_the_run(engine, monkeypatch):
    calls = []
    real = prompts.encode
    monkeypatch.setattr(prompts, "encode", lambda *a, **k: calls.append(a[1:3]) or real(*a, **k))
    code = "total = sum([4, 5])  # encoded once\n"
    assert engine.prompt_tokens(code, "why?") == len(real(engine.tokenizer, code, "why?")["input_ids"])
    first = engine.prompt_ids([(code, "why?")])[0]
    first.append(-1)  # a caller's list is its own
    assert engine.prompt_ids([(code, "why?")])[0] == real(engine.tokenizer, code, "why?")["input_ids"]
    assert calls == [(code, "why?")]


def test_stops_when_the_model_opens_a_new_section(engine16, forced):
    ids = forced("ok pal\n### CODE:")
    [a, b] = engine16.generate([("print(1)", None), ("x = 1\n" * 3, None)])
    assert a == b
    assert a.text == "ok pal" and a.finished and not a.code_leak
    marker_end = len(engine16.tokenizer("ok pal\n###", add_special_tokens=False)["input_ids"])
    assert a.tokens == marker_end < len(ids)


def test_a_requests_stop_strings_end_its_row_where_the_text_completes_one(engine16, forced):
    """OpenAI's ``stop``: the row ends at the token that completes a stop string (a row beside it runs on); the
    worker cuts the text before it (worker/service.py, tests/worker/test_sampling.py)."""
    ids = forced("Listen up pal. Then the boss walks in and the books get burned")
    stopped, other = engine16.generate([("print(1)", None)] * 2, [Control(stop=("boss", "zzz")), Control()])
    completed = len(engine16.tokenizer("Listen up pal. Then the boss", add_special_tokens=False)["input_ids"])
    assert stopped.tokens == completed and stopped.finished
    assert "Then the boss" in stopped.text and "walks" not in stopped.text
    assert other.tokens == 16 and not other.finished and len(ids) > 16


def test_stops_at_eos(engine16, forced):
    ids = forced("Capisce", eos=True)
    [result] = engine16.generate([("print(1)", None)])
    assert result == Generation(text="Capisce", tokens=len(ids), finished=True)


def test_unfinished_answer_runs_to_max_new_tokens(engine16, forced):
    forced("ba" * 20)
    [result] = engine16.generate([("print(1)", None)])
    assert result.tokens == 16 and not result.finished


def test_a_count_that_runs_on_is_stopped_and_cut_back(engine, forced):
    """The count half of the loop rule on the reference path (tests/worker/test_loop_guard.py holds both paths to
    each other on a model that repeats itself)."""
    count = [("for i in range(1, 40):\n    print(i)", None)]
    ids = forced("It counts up. It prints " + ", ".join(map(str, range(1, 40))))
    [result] = engine_with(engine, GenerationConfig(max_new_tokens=80)).generate(count)
    tenth = len(engine.tokenizer("It counts up. It prints " + ", ".join(map(str, range(1, 11))) + ",",
                                 add_special_tokens=False)["input_ids"])
    assert result == Generation(text="It counts up.", tokens=tenth, finished=True, looped=True)
    assert tenth < len(ids)
    forced("It counts up. It prints " + ", ".join(map(str, range(1, 40))))  # from the start again
    [result] = engine_with(engine, GenerationConfig(max_new_tokens=80, stop_loops=False)).generate(count)
    assert result.looped and result.text.startswith("It counts up. It prints 1, 2, 3,") and result.tokens == 80


def test_code_in_the_answer_is_removed_and_flagged(engine16, forced):
    forced("x = 1\nok pal", eos=True)
    [result] = engine16.generate([("print(1)", None)])
    assert result.code_leak and result.text == "ok pal"


def test_context_budget(engine):
    assert engine.max_prompt_tokens == 4096 - 8
    assert engine.prompt_tokens("print(1)") == len(prompts.encode(engine.tokenizer, "print(1)")["input_ids"])


@pytest.mark.parametrize("penalize_prompt", [True, False])
def test_the_repetition_penalty_on_generate_s_rows_is_transformers_own(engine, penalize_prompt):
    """The reference path's penalty (worker/repetition_penalty.py through a logits processor) scores a left-padded
    batch exactly as transformers' processor did: with ``penalize_prompt`` the prompt's tokens count, its padding
    never; without it only the answer's tokens."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    rows = [[2, 10, 11, 12, 10, 13], [2, 13, 10]]  # repeats, and a shorter row padded on the left
    width, pad = 6, 7  # a pad id whose logit is not 0 (the tokenizer's, 0, has a zero logit: penalised the same)
    batch = dict(input_ids=torch.tensor([[pad] * (width - len(ids)) + ids for ids in rows]),
                 attention_mask=torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows]),
                 max_new_tokens=10, do_sample=False, pad_token_id=pad, output_scores=True,
                 return_dict_in_generate=True)
    seen = rows if penalize_prompt else [[] for _ in rows]
    ours = LogitsProcessorList([engine_module._RepetitionPenalty(1.3, seen, width, pad, "cpu")])
    answer_only = RepetitionPenaltyLogitsProcessor(1.3, prompt_ignore_length=width)
    theirs = {"repetition_penalty": 1.3} if penalize_prompt else {"logits_processor": LogitsProcessorList([answer_only])}
    with torch.inference_mode():
        got = engine.model.generate(**batch, logits_processor=ours)
        want = engine.model.generate(**batch, **theirs)
        plain = engine.model.generate(**batch)
    assert torch.equal(got.sequences, want.sequences)
    assert all(torch.equal(g, w) for g, w in zip(got.scores, want.scores, strict=True))
    assert not torch.equal(got.scores[1], plain.scores[1])  # the penalty did act


def test_adapter_is_merged_on_cpu_and_base_read_from_mafioso_json(tiny_model_dir, tiny_adapter_dir):
    # float32, not auto: on a busy CPU the dtype measurement may pick int8 weights, which torch.equal cannot read
    engine = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                                      fast_decode=False), GenerationConfig(max_new_tokens=4))
    merged = load_engine(WorkerConfig(adapter=str(tiny_adapter_dir), device="cpu", dtype="float32"),
                         GenerationConfig(max_new_tokens=4))
    assert type(merged.model) is type(engine.model)  # a plain model: merge_and_unload removed PEFT
    assert not any("lora" in name for name, _ in merged.model.named_modules())
    layer = lambda e: e.model.model.layers[0].self_attn.q_proj.weight  # noqa: E731
    assert not torch.equal(layer(merged), layer(engine))
    [result] = merged.generate([("print(1)", None)])
    assert 1 <= result.tokens <= 4


def test_a_truncated_adapter_file_is_a_clear_model_error(tmp_path, tiny_adapter_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_adapter_dir, broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a copy cut short (issue 19: was a SafetensorError traceback)
    with pytest.raises(ModelError, match="cannot load the adapter .*broken"):
        load_engine(WorkerConfig(adapter=str(broken), device="cpu"), GenerationConfig(max_new_tokens=4))


def test_an_adapter_folder_without_its_weights_is_a_clear_model_error(tmp_path, tiny_adapter_dir):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_adapter_dir, partial)
    (partial / "adapter_model.safetensors").unlink()  # a copy without its weights (was peft's "Repo id must be ...")
    with pytest.raises(ModelError, match="partial has no weights .*adapter_model.safetensors"):
        load_engine(WorkerConfig(adapter=str(partial), device="cpu"), GenerationConfig(max_new_tokens=4))


def test_adapter_folder_and_base(tmp_path, monkeypatch, caplog, tiny_adapter_dir, tiny_model_dir):
    monkeypatch.setattr(engine_module, "SHIPPED_ADAPTERS_DIR", tmp_path)  # nothing shipped there
    with caplog.at_level(logging.WARNING, logger="mafioso.worker.engine"):
        assert adapter_folder("default") is None
    assert "bare base model" in caplog.text
    assert adapter_folder("none") is None
    assert adapter_folder(str(tiny_adapter_dir)) == tiny_adapter_dir
    with pytest.raises(ModelError, match="adapter_config.json"):
        adapter_folder(str(tmp_path))
    assert base_of("", tiny_adapter_dir) == str(tiny_model_dir)
    assert base_of("some/model", tiny_adapter_dir) == "some/model"
    assert base_of("", None) == "embedded"


def test_an_adapter_is_served_in_the_prompt_format_it_was_trained_on(tmp_path, tiny_adapter_dir):
    from mafioso.worker.engine import adapter_prompt_format

    def with_format(name, value):
        folder = tmp_path / name
        shutil.copytree(tiny_adapter_dir, folder)
        info = json.loads((folder / "mafioso.json").read_text())
        info.pop("prompt_format")
        if value is not None:
            info["prompt_format"] = value
        (folder / "mafioso.json").write_text(json.dumps(info))
        return folder

    older = with_format("older", None)  # trained before the format was recorded: format 1
    assert adapter_prompt_format(tiny_adapter_dir) == prompts.PROMPT_FORMAT == 2
    assert adapter_prompt_format(None) == prompts.PROMPT_FORMAT and adapter_prompt_format(older) == 1
    code = "def f(x):\n    if x:\n        return 1\n    return 0\n"
    engines = {folder.name: load_engine(WorkerConfig(adapter=str(folder), device="cpu", dtype="float32"),
                                        GenerationConfig(max_new_tokens=2)) for folder in (older, tiny_adapter_dir)}
    for engine, fmt in zip(engines.values(), (1, 2)):
        assert engine.prompt_format == fmt
        expected = prompts.encode(engine.tokenizer, code, None, prompt_format=fmt)["input_ids"]
        assert engine.plain.prompt_ids([(code, None)]) == [expected]  # the fast engine's prompts too
    old_text, new_text = (engine.tokenizer.decode(engine.plain.prompt_ids([(code, None)])[0]) for engine in
                          engines.values())
    assert "returns 1 or 0" in old_text and "returns 1 if x or 0" in new_text
    with pytest.raises(ModelError, match="prompt format 3, which this Mafioso does not write"):
        adapter_prompt_format(with_format("newer", 3))


def test_serving_dtype(monkeypatch, tiny_model_dir):
    from mafioso.worker.engine import serving_dtype

    asked = []
    monkeypatch.setattr(engine_module, "cpu_dtype",
                        lambda hidden, vocab: asked.append((hidden, vocab)) or torch.bfloat16)
    assert serving_dtype("auto", "cuda") is torch.bfloat16
    assert serving_dtype("float32", "cuda") is torch.float32
    assert serving_dtype("float32", "cpu", str(tiny_model_dir)) is torch.float32
    assert asked == []  # only auto on a CPU measures
    assert serving_dtype("auto", "cpu", str(tiny_model_dir)) is torch.bfloat16
    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert asked == [(config.hidden_size, config.vocab_size)]  # shaped like this model's decode


def test_max_tokens_cuts_each_row_at_its_own_limit(engine):
    """Issue 19 item 7: the batch runs to its longest limit; each row is cut at its own, as unfinished."""
    pairs = [("print(1)", None), ("x = 1", None), ("def f():\n    pass", "why?")]
    full = engine.generate(pairs)
    assert all(r.tokens == 8 and not r.finished for r in full)  # the random tiny model never stops by itself
    cut = engine.generate(pairs, [Control(max_tokens=2), Control(), Control(max_tokens=5)])
    assert cut[1] == full[1]
    assert (cut[0].tokens, cut[0].finished, cut[2].tokens, cut[2].finished) == (2, False, 5, False)
    assert full[0].text.startswith(cut[0].text) and full[2].text.startswith(cut[2].text)


def test_cancelled_rows_stop_at_the_next_step_and_a_batch_ends_with_its_last_live_row(engine):
    """Issue 19 item 6: a started request decoded to the end for nobody."""
    forwards = []
    hook = engine.model.register_forward_hook(lambda *args: forwards.append(1))
    try:
        gone, kept = Control(), Control()
        gone.cancel()
        [dropped, answer] = engine.generate([("print(1)", None), ("x = 1", None)], [gone, kept])
        assert dropped.tokens <= 1 and answer.tokens == 8 and len(forwards) == 8
        forwards.clear()
        both = [Control(), Control()]
        for control in both:
            control.cancel()
        engine.generate([("print(1)", None), ("x = 1", None)], both)
        assert len(forwards) == 1  # the prefill: nobody wanted more
        forwards.clear()
        later = Control()

        def cancel_at_3(*args):  # after the third forward: the client hangs up mid-answer
            if len(forwards) == 3:
                later.cancel()

        cancel_at_3 = engine.model.register_forward_hook(cancel_at_3)
        try:
            [answer] = engine.generate([("print(1)", None)], [later])
        finally:
            cancel_at_3.remove()
        assert len(forwards) == 3 and answer.tokens == 3  # stopped mid-decode, 5 steps early
    finally:
        hook.remove()


def test_the_claim_post_check_drops_what_the_code_contradicts_and_says_so(engine16, forced):
    # Engine.generate applies it, so the fast engine (which only replaces decode) does too
    forced("`f` is recursive, pal.", eos=True)
    [answer] = engine16.generate([("def f():\n    return 1\n", None)])
    assert answer.text == line("nothing_sure") and answer.dropped == 1
    assert answer.raw_text == "`f` is recursive, pal."


def test_an_engine_says_its_persona_s_post_check_lines(engine16, forced, monkeypatch):
    monkeypatch.setattr(engine16, "persona", "noir")
    forced("`f` is recursive, pal.", eos=True)
    [answer] = engine16.generate([("def f():\n    return 1\n", None)])
    assert answer.text == line("nothing_sure", "noir")


def test_the_claim_post_check_can_be_switched_off(engine16, forced):
    engine = engine_with(engine16, dataclasses.replace(engine16.gen, drop_unsupported=False))
    forced("`f` is recursive, pal.", eos=True)
    [raw] = engine.generate([("def f():\n    return 1\n", None)])
    assert raw.text == "`f` is recursive, pal." and raw.dropped == 0
