"""The fast decode path on a Qwen2 model generates exactly what transformers' reference `generate` does.

tests/worker/test_fast_decode.py pins the cache, graphs and scheduling on Gemma 3; these tests pin the Qwen2 maths
(worker/models/qwen2.py: biases on q, k and v, no embedding scale, tied and untied heads, sliding layers) through
the same decoder, and the fast engine on a Qwen2 base.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

from mafioso import prompts
from mafioso.worker.fast_decode import FastDecoder
from mafioso.worker.models import decoder_model, supports
from mafioso.worker.models.qwen2 import Qwen2
from tests.helpers import SNIPPETS
from tests.worker.helpers import short_then_long_slot


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen_dir):
    return AutoTokenizer.from_pretrained(tiny_qwen_dir)


def _variant(tiny_qwen_dir, seed: int, **changes) -> Qwen2ForCausalLM:
    """The tiny Qwen2's config with ``changes`` and new random weights, its attention made position-sensitive:
    q and k weights ~10x transformers' initial ones (else the scores are ~0, every key weighs the same and RoPE
    hardly shows in the tokens) and q/k/v biases far from zero (they start at zero)."""
    config = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir).config
    for name, value in changes.items():
        setattr(config, name, value)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
                if proj is not layer.self_attn.v_proj:
                    proj.weight.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def tied(tiny_qwen_dir):
    """Head tied to the embedding, as Qwen2.5-Coder-0.5B's."""
    model = _variant(tiny_qwen_dir, 2)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    return model


@pytest.fixture(scope="module")
def untied(tiny_qwen_dir):
    """Its own LM head and Qwen2.5's RoPE theta (1e6; the tiny model's is 1e4)."""
    model = _variant(tiny_qwen_dir, 3, tie_word_embeddings=False,
                     rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    return model


def _reference(model, ids, n, penalty):
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         repetition_penalty=penalty, pad_token_id=0)
    return out[0, len(ids):].tolist()


def _prompts(tokenizer) -> list[list[int]]:
    """Four prompts of different lengths: three explanations and a bare line."""
    ids = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:3]]
    ids.append(tokenizer("x = 1", add_special_tokens=True)["input_ids"])
    assert len({len(one) for one in ids}) == 4
    return ids


def _decode_batched(decoder: FastDecoder, prompts_ids: list[list[int]], n: int) -> list[list[int]]:
    """Prompts 0 and 3 prefilled together into slots 2 and 0, prompts 1 and 2 joining mid-answer (slots 3, 1):
    each prompt's n greedy tokens."""
    got = dict(zip((2, 0), ([first] for first in decoder.prefill_many([2, 0], [prompts_ids[0], prompts_ids[3]]))))
    for step in range(3 * n):
        if step == 4:
            got.update(zip((3, 1), ([f] for f in decoder.prefill_many([3, 1], [prompts_ids[1], prompts_ids[2]]))))
        tokens = decoder.step(active=4).tolist()
        for slot in got:
            if len(got[slot]) < n:
                got[slot].append(tokens[slot])
        if all(len(ids) == n for ids in got.values()) and len(got) == 4:
            break
    return [got[slot] for slot in (2, 3, 1, 0)]


@pytest.mark.parametrize("head", ["tied", "untied"])
@pytest.mark.parametrize("prefix", [False, True], ids=["whole", "prefix"])
@pytest.mark.parametrize("padded", [False, True], ids=["exact", "padded"])
def test_qwen2_greedy_tokens_match_generate_batched_and_joining_mid_batch(request, tokenizer, head, prefix, padded):
    """Prompts of four lengths, prefilled two at a time into slots in any order, two joining while the others
    are mid-answer; ``prefix``: the shared instruction's keys computed once and three prompts prefilled from
    where it ends (the bare line runs whole); ``padded``: prefills padded to their bucket, as on the GPU."""
    model = request.getfixturevalue(head)
    prompts_ids = _prompts(tokenizer)
    n, penalty = 12, 1.3
    expected = [_reference(model, ids, n, penalty) for ids in prompts_ids]
    decoder = FastDecoder(model, slots=4, max_len=1024)
    assert isinstance(decoder.model, Qwen2)
    decoder.pad_prefill = padded
    if prefix:
        decoder.set_prefix(prompts.shared_prefix_ids(tokenizer))
        assert len(decoder.prefix) >= 64
    decoder.set_repetition_penalty(penalty, penalize_prompt=True)
    assert _decode_batched(decoder, prompts_ids, n) == expected


def test_qwen2_without_penalty_and_one_prompt_at_a_time(tied, tokenizer):
    """Plain greedy (penalty 1.0), one slot reused by prompt after prompt."""
    decoder = FastDecoder(tied, slots=1, max_len=1024)
    for ids in _prompts(tokenizer):
        got = [decoder.prefill(0, ids)] + [int(decoder.step(active=1)[0]) for _ in range(15)]
        assert got == _reference(tied, ids, 16, 1.0)


def test_qwen2_sliding_layers_attend_within_their_window(tiny_qwen_dir, tokenizer):
    """A Qwen2 config with ``use_sliding_window``: layers from ``max_window_layers`` on keep only a window of
    keys (prompts and answers reach past it), the others every key."""
    model = _variant(tiny_qwen_dir, 4, use_sliding_window=True, sliding_window=16, max_window_layers=1,
                     layer_types=["full_attention", "sliding_attention"])
    decoder = FastDecoder(model, slots=4, max_len=1024)
    assert [layer.window for layer in decoder.layers] == [None, 16]
    prompts_ids = _prompts(tokenizer)
    expected = [_reference(model, ids, 12, 1.3) for ids in prompts_ids]
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    assert _decode_batched(decoder, prompts_ids, 12) == expected
    unwindowed = _variant(tiny_qwen_dir, 4)  # the same weights, every layer attending to every key
    assert expected[1:3] != [_reference(unwindowed, ids, 12, 1.3) for ids in prompts_ids[1:3]]  # the window shows


def test_the_fast_path_serves_gemma3_and_qwen2_and_names_them_when_refusing(tied, tiny_model_dir):
    import copy

    from transformers import LlamaConfig, LlamaForCausalLM

    from mafioso.worker.models import qwen2

    assert supports(tied) and supports(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    assert not supports(llama)
    with pytest.raises(ValueError, match="serves gemma3_text, qwen2 models, not llama"):
        decoder_model(llama)
    scaled = copy.deepcopy(tied.config)
    scaled.rope_parameters = {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}
    gelu = copy.deepcopy(tied.config)
    gelu.hidden_act = "gelu"
    assert qwen2.supports(tied.config) and not qwen2.supports(scaled) and not qwen2.supports(gelu)


def test_fast_engine_on_a_qwen2_base_answers_exactly_like_the_reference_engine(tiny_qwen_dir):
    """load_engine picks the fast engine for a Qwen2 base; its Generations (text, tokens, stop at either of
    Qwen's EOS ids) are the reference engine's, for more requests than slots."""
    import dataclasses

    from mafioso.core.config import GenerationConfig, WorkerConfig
    from mafioso.worker.engines import load_engine
    from mafioso.worker.fast_engine import FastEngine

    gen = GenerationConfig(max_new_tokens=10, repetition_penalty=1.3)
    cfg = WorkerConfig(base_model=str(tiny_qwen_dir), adapter="none", device="cpu", dtype="float32",
                       max_batch_size=3)
    reference = load_engine(dataclasses.replace(cfg, fast_decode=False), gen)
    fast = load_engine(cfg, gen)
    try:
        assert type(fast) is FastEngine and isinstance(fast.decoder.model, Qwen2)
        assert len(fast.eos_ids) == 2 and fast.decoder.prefix
        requests = [(code, request) for request, code, _ in SNIPPETS[:5]]
        expected = [reference.generate([pair])[0] for pair in requests]
        assert fast.generate(requests) == expected
    finally:
        fast.close()


def test_qwen2_int8_weights_decode_as_through_generate(untied, tokenizer):
    """With MAFIOSO_DTYPE=int8 (mafioso.core.cpu_quant) the fused q/k/v weight is a fused int8 copy and the
    biases stay fp32: the fast path answers as ``generate`` on the same int8 model (one prompt at a time: a batch
    quantizes each row's input on its own scale, a path of its own, whose rounding can swap this random model's
    near-tied logits)."""
    import copy

    from mafioso.core import cpu_quant

    if not cpu_quant.available():
        pytest.skip("int8 matmuls need fbgemm (x86)")
    model = cpu_quant.quantize(copy.deepcopy(untied))
    decoder = FastDecoder(model, slots=1, max_len=1024)
    assert not isinstance(decoder.layers[0].weights["wqkv"], torch.Tensor)  # an Int8Weight
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    for ids in _prompts(tokenizer):
        got = [decoder.prefill(0, ids)] + [int(decoder.step(active=1)[0]) for _ in range(11)]
        assert got == _reference(model, ids, 12, 1.3)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["step", "layer"])
def test_qwen2_compiled_decode_matches_generate_across_short_and_long_slots(untied, tokenizer, scope):
    """torch.compile of the whole step or of each layer (inductor's C++ backend here, Triton on a GPU), as the
    GPU serves: generate's tokens from a short slot, then from a step spanning both cache parts."""
    ids = _prompts(tokenizer)[:2]
    n = 12
    expected = [_reference(untied, prompt, n, 1.3) for prompt in ids]
    decoder = FastDecoder(untied, slots=8, max_len=1024, compile=True, short_slots=6, short_len=600,
                          compile_scope=scope)
    decoder.set_prefix(prompts.shared_prefix_ids(tokenizer))
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    assert short_then_long_slot(decoder, ids, n) == expected
