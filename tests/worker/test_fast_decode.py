"""The fast decode path generates exactly what transformers' reference `generate` does."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mafioso import prompts
from mafioso.worker.control import Control
from mafioso.worker.fast_decode import FastDecoder
from tests.helpers import SNIPPETS
from tests.worker.helpers import recording_compiles, short_then_long_slot


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _reference(model, ids, n, penalty):
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         repetition_penalty=penalty, pad_token_id=0)
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("penalty", [1.0, 1.3])
@pytest.mark.parametrize("padded", [False, True], ids=["exact", "padded"])
@pytest.mark.parametrize("prefix", [False, True], ids=["whole", "prefix"])
def test_greedy_tokens_match_generate_with_requests_joining_mid_batch(model_and_tokenizer, penalty, padded, prefix):
    """``padded``: prefills padded to their bucket (as the GPU's prefill graphs run them), the padding rows'
    keys written to the spare cache rows while other slots are mid-answer. ``prefix``: the instruction's keys
    computed once (longer than the sliding window here) and each prompt prefilled from where it ends."""
    model, tokenizer = model_and_tokenizer
    prompts_ids = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:3]]
    assert max(map(len, prompts_ids)) > model.config.sliding_window  # the sliding window is exercised
    n = 24
    expected = [_reference(model, ids, n, penalty) for ids in prompts_ids]

    decoder = FastDecoder(model, slots=4, max_len=1024)
    decoder.pad_prefill = padded
    if prefix:
        decoder.set_prefix(prompts.shared_prefix_ids(tokenizer))
        assert len(decoder.prefix) > model.config.sliding_window
    decoder.set_repetition_penalty(penalty, penalize_prompt=True)
    got = {0: [decoder.prefill(0, prompts_ids[0])], 1: [decoder.prefill(1, prompts_ids[1])]}
    for step in range(n - 1):
        if step == 5:  # a third request joins while the others are mid-answer
            got[2] = [decoder.prefill(2, prompts_ids[2])]
        tokens = decoder.step(active=len(got)).tolist()
        for slot in got:
            if len(got[slot]) < n:
                got[slot].append(tokens[slot])
    for slot in (0, 1):
        assert got[slot] == expected[slot]
    while len(got[2]) < n:
        got[2].append(decoder.step(active=3).tolist()[2])
    assert got[2] == expected[2]


@pytest.mark.parametrize("penalty", [1.0, 1.3])
@pytest.mark.parametrize("padded", [False, True], ids=["exact", "padded"])
@pytest.mark.parametrize("prefix", [False, True], ids=["whole", "prefix"])
def test_prompts_prefilled_together_answer_as_if_alone(model_and_tokenizer, penalty, padded, prefix, monkeypatch):
    """One padded forward for prompts of different lengths (one past the sliding window), slots in any order;
    ``padded``: also padded to a bucket of 4 prompts of 512 tokens (as the GPU's prefill graphs run them);
    ``prefix``: three prompts start with the shared prefix and run only what follows it, the fourth does not
    and runs whole, in a batch of its own."""
    model, tokenizer = model_and_tokenizer
    prompts_ids = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:3]]
    prompts_ids.append(tokenizer("x = 1", add_special_tokens=True)["input_ids"])
    assert len({len(ids) for ids in prompts_ids}) == 4 and max(map(len, prompts_ids)) > model.config.sliding_window
    n = 12
    expected = [_reference(model, ids, n, penalty) for ids in prompts_ids]
    decoder = FastDecoder(model, slots=4, max_len=1024)
    decoder.pad_prefill = padded
    if padded and not prefix:
        assert decoder.prefill_bucket(4, max(map(len, prompts_ids))) == (4, 512)
    decoder.set_prefix(prompts.shared_prefix_ids(tokenizer) if prefix else [])
    shared = decoder.prefix
    runs = []
    forward = decoder._prefill_forward
    monkeypatch.setattr(decoder, "_prefill_forward",
                        lambda tokens, *args, **kw: runs.append((tuple(tokens.shape), kw.get("start", 0)))
                        or forward(tokens, *args, **kw))
    decoder.set_repetition_penalty(penalty, penalize_prompt=True)
    slots = [2, 0, 3, 1]
    got = {slot: [first] for slot, first in zip(slots, decoder.prefill_many(slots, prompts_ids))}
    rest = max(len(ids) - len(shared) for ids in prompts_ids[:3])
    if prefix:
        assert runs == [(decoder.prefill_bucket(3, rest) if padded else (3, rest), len(shared)),
                        ((1, len(prompts_ids[3])), 0)]
    else:
        assert runs == [((4, 512 if padded else max(map(len, prompts_ids))), 0)]
    for _ in range(n - 1):
        tokens = decoder.step(active=4).tolist()
        for slot in got:
            got[slot].append(tokens[slot])
    assert [got[slot] for slot in slots] == expected


def test_short_and_long_slots_answer_alike_and_refuse_what_does_not_fit(model_and_tokenizer):
    """Short slots keep a shorter full-attention cache (a second cache part): prompts in either kind of slot,
    decoded in one batch that spans both, answer as if alone; the sliding layer stays one part."""
    model, tokenizer = model_and_tokenizer
    short = tokenizer("x = 1", add_special_tokens=True)["input_ids"]
    longer = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:2]]
    n = 16
    window = model.config.sliding_window
    assert min(map(len, longer)) > window + 16
    decoder = FastDecoder(model, slots=4, max_len=1024, short_slots=2, short_len=window + 16)
    assert [len(parts) for parts in decoder.caches] == [1, 2]  # sliding: one part; full attention: two
    # the short part stores 192 positions (a multiple of 64, for aligned matmuls), its slots still hold 144
    assert decoder.caches[1][0]["length"] == 192 and decoder.capacity(0) == window + 16
    full = FastDecoder(model, slots=4, max_len=1024)
    assert decoder.cache_bytes < full.cache_bytes
    with pytest.raises(ValueError, match="does not fit slot 1"):
        decoder.prefill(1, longer[0])
    expected = [_reference(model, ids, n, 1.3) for ids in (short, longer[0], longer[1])]
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    full.set_repetition_penalty(1.3, penalize_prompt=True)
    slots = [1, 3, 2]  # a short slot, then two long ones: every step runs over both parts
    got = {slot: [first] for slot, first in zip(slots, decoder.prefill_many(slots, [short, *longer]))}
    full.prefill_many(slots, [short, *longer])
    for _ in range(n - 1):
        tokens = decoder.step(active=4).tolist()
        full.step(active=4)
        for slot in got:
            got[slot].append(tokens[slot])
    assert [got[slot] for slot in slots] == expected
    for slot, ids in zip(slots, [short, *longer]):  # every cached key and value where the one-part cache has it
        end = len(ids) + n - 1
        for split, whole in zip(decoder.caches, full.caches):
            part = next(p for p in split if p["first"] <= slot < p["stop"])
            kept = torch.arange(max(0, end - part["length"]), end) % part["length"]
            for name in ("k", "v"):
                assert torch.equal(part[name][slot - part["first"], :, kept],
                                   whole[0][name][slot, :, kept]), (slot, name)


def test_padded_prefill_splits_a_batch_no_bucket_holds_and_spans_both_cache_parts(model_and_tokenizer, monkeypatch):
    """Buckets hold at most ``prefill_tokens`` padded tokens (one prompt: a whole slot); a larger batch is split
    until it fits, a padding row fills a bucket. Prompts into short and long slots together answer as if alone,
    and the spare rows took the padding's keys."""
    model, tokenizer = model_and_tokenizer
    window = model.config.sliding_window
    short = tokenizer("x = 1", add_special_tokens=True)["input_ids"]
    longer = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:2]]
    longer[1] = longer[1][-200:]  # every whole prompt is over 256 tokens here (the tiny tokenizer spells out)
    assert 256 < len(longer[0]) <= 512 and 128 < len(longer[1]) <= 256
    decoder = FastDecoder(model, slots=6, max_len=1024, short_slots=3, short_len=window + 16, prefill_tokens=1024)
    assert decoder.prefill_buckets == [(1, 64), (1, 128), (1, 256), (1, 512), (1, 1024), (2, 64), (2, 128),
                                       (2, 256), (2, 512), (4, 64), (4, 128), (4, 256), (8, 64), (8, 128)]
    decoder.pad_prefill = True
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    batches = []
    padded = decoder._prefill_last
    monkeypatch.setattr(decoder, "_prefill_last", lambda shape, *args: batches.append(shape) or padded(shape, *args))
    spare = decoder.caches[0][0]["k"][-1]
    spare.fill_(7.0)
    slots, asked = [1, 4, 3, 0, 2], [short, longer[0], longer[1], short, short]
    got = decoder.prefill_many(slots, asked)
    assert batches == [(2, 512), (4, 256)]  # 8 x 512 is over the budget: halves, the second with a padding row
    assert (spare != 7.0).any()
    n = 8
    answers = {slot: [first] for slot, first in zip(slots, got)}
    for _ in range(n - 1):
        tokens = decoder.step(active=6).tolist()
        for slot in answers:
            answers[slot].append(tokens[slot])
    assert [answers[slot] for slot in slots] == [_reference(model, ids, n, 1.3) for ids in asked]


class _ReplayedGraph:
    """A CPU stand-in for a captured CUDA graph: replaying re-runs the captured function into the output
    tensor of the capture, as a graph rewrites the same memory."""

    def __init__(self, run, out):
        self.run, self.out = run, out

    def replay(self):
        out = self.run()
        if out is not None:
            self.out.copy_(out)


@pytest.mark.parametrize("prefix", [False, True], ids=["whole", "prefix"])
def test_graph_plumbing_captures_at_warm_up_and_replays_with_live_slots_untouched(model_and_tokenizer, monkeypatch,
                                                                                  prefix):
    """The CUDA-graph paths on a CPU, with graphs that re-run what they captured: warm-up captures every
    decode and prefill bucket while a request is mid-answer (capturing must not change it), then prefills
    replay through their bucket's fixed inputs and answer as ``generate`` does; with a shared prefix, the
    prefill graphs run what follows it."""
    model, tokenizer = model_and_tokenizer
    ids = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:3]]
    decoder = FastDecoder(model, slots=4, max_len=1024, prefill_tokens=1024)
    decoder.cuda_graphs = decoder.pad_prefill = True
    if prefix:
        decoder.set_prefix(prompts.shared_prefix_ids(tokenizer))
        assert max(n for _, n in decoder.prefill_buckets) == 1024 - len(decoder.prefix)
    monkeypatch.setattr(decoder, "_record", lambda run, warm=True: (_ReplayedGraph(run, out := run()), out))
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    n = 10
    got = {0: [decoder.prefill(0, ids[0])]}  # captures its bucket on first use
    got[0] += [int(decoder.step(active=1)[0]) for _ in range(3)]
    # slot 0's cache holds positions [0, written); the next step writes `written`, which in a ring takes the
    # entry of the one position no later step reads
    written = int(decoder.positions[0])
    kept = [torch.arange(max(0, written - part["length"] + 1), written) % part["length"]
            for parts in decoder.caches for part in parts]
    before = [part[name][0, :, at].clone() for parts in decoder.caches for part, at in zip(parts, kept)
              for name in ("k", "v")]
    decoder.warm_up()
    after = [part[name][0, :, at] for parts in decoder.caches for part, at in zip(parts, kept) for name in ("k", "v")]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert set(decoder.graphs) == {(b, span) for b in decoder.buckets for span in decoder.key_spans}
    assert set(decoder.prefill_graphs) == set(decoder.prefill_buckets)
    got.update({slot: [first] for slot, first in zip((2, 1), decoder.prefill_many([2, 1], ids[1:]))})
    while any(len(answer) < n for answer in got.values()):
        tokens = decoder.step(active=3).tolist()
        for slot, answer in got.items():
            if len(answer) < n:
                answer.append(tokens[slot])
    assert [got[slot] for slot in (0, 2, 1)] == [_reference(model, prompt, n, 1.3) for prompt in ids]


def test_steps_launched_ahead_through_the_graphs_each_bring_back_their_own_tokens(model_and_tokenizer, monkeypatch):
    """The engine's lookahead through the CUDA-graph path (graphs that re-run what they captured, on a CPU): a
    step's graph also copies its tokens to the host buffer its launch names (twin graphs, one per buffer), so a
    step launched before the last one is read leaves that one's tokens where they are; both slots answer as
    ``generate`` does."""
    model, tokenizer = model_and_tokenizer
    ids = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:2]]
    decoder = FastDecoder(model, slots=2, max_len=1024)
    decoder.cuda_graphs = True
    monkeypatch.setattr(decoder, "_record", lambda run, warm=True: (_ReplayedGraph(run, out := run()), out))
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    got = [[first] for first in decoder.prefill_many([0, 1], ids)]
    pending = decoder.launch(2)
    for _ in range(7):
        launched = decoder.launch(2)  # the next step runs (here: at once) before this one's tokens are read
        for answer, token in zip(got, decoder.collect(pending), strict=True):
            answer.append(token)
        pending = launched
    assert len(decoder.graphs) == 1 and all(len(twins) == 2 for twins in decoder.graphs.values())
    assert got == [_reference(model, prompt, 8, 1.3) for prompt in ids]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_on_a_gpu_launches_through_captured_graphs_bring_back_the_eager_steps_tokens(tiny_model_dir):
    """On a GPU, the real thing: steps launched ahead through captured twin graphs (each copies its tokens to a
    page-locked buffer and records that buffer's event inside the graph) bring back, step by step, the tokens
    of the same decoder's eager steps; across span and bucket changes too. Grounded decoding on: the tables of
    a prefill's slots reach the device through the page-locked staging, a slot without them bans nothing."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).cuda().eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:3]]
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    tables = [tuple(torch.rand(vocab, generator=generator) < share for share in (0.2, 0.9, 0.05)) for _ in range(2)]
    answers = []
    for graphs in (False, True):
        decoder = FastDecoder(model, slots=4, max_len=1024, cuda_graphs=graphs)
        decoder.set_repetition_penalty(1.3, penalize_prompt=True)
        decoder.enable_grounding()
        if graphs:
            decoder.warm_up()
        got = [[first] for first in decoder.prefill_many([0, 1, 2], ids, [tables[0], None, tables[1]])]
        for slot, three in ((0, tables[0]), (1, None), (2, tables[1])):
            expected = torch.stack(three) if three else torch.zeros(3, vocab, dtype=torch.bool)
            assert torch.equal(torch.cat([decoder.ground[slot], decoder.ground_flips[slot, None]]).cpu(), expected)
        pending = None
        for step in range(40):
            active = 3 if step < 20 else 2  # bucket 4, then 2
            launched = decoder.launch(active, max(map(len, ids)) + (40 if step % 2 else 400))  # span 512 or 1,024
            if pending is not None:
                tokens = decoder.collect(pending)
                for slot in range(min(len(tokens), 3)):
                    got[slot].append(tokens[slot])
            pending = launched
        answers.append(got)
    assert answers[1] == answers[0]
    assert all(len(twins) == 2 for twins in decoder.graphs.values())


def test_grounding_follows_the_span_on_the_device_and_capturing_keeps_its_state(model_and_tokenizer, monkeypatch):
    """Grounded decoding in the decoder, with every token a span flip (so the masks alternate): the tokens read
    inside a span come from its allowed few and the others do not have to; capturing the graphs mid-answer
    leaves the slot's span state as it was (the answer goes on exactly as a decoder's that never captured); a
    slot reused without grounding answers freely."""
    model, tokenizer = model_and_tokenizer
    ids = prompts.encode(tokenizer, SNIPPETS[0][1], SNIPPETS[0][0])["input_ids"]
    decoders = [FastDecoder(model, slots=4, max_len=1024) for _ in range(2)]
    captured = decoders[1]
    captured.cuda_graphs = True
    monkeypatch.setattr(captured, "_record", lambda run, warm=True: (_ReplayedGraph(run, out := run()), out))
    vocab = decoders[0].vocab
    allowed = torch.arange(20, 40)
    inside = torch.ones(vocab, dtype=torch.bool)
    inside[allowed] = False
    tables = (torch.zeros(vocab, dtype=torch.bool), inside, torch.ones(vocab, dtype=torch.bool))
    answers = []
    for decoder in decoders:
        decoder.set_repetition_penalty(1.3, penalize_prompt=True)
        decoder.enable_grounding()
        answer = [decoder.prefill_many([0], [ids], [tables])[0]]
        answer += [int(decoder.step(active=1)[0]) for _ in range(3)]
        if decoder is captured:
            state = decoder.inside.clone()
            decoder.warm_up()  # captures every (bucket, key span) but (1, widest), captured at the first step
            assert set(decoder.graphs) == {(b, span) for b in (1, 2, 4) for span in decoder.key_spans}
            assert torch.equal(decoder.inside, state)
        answer += [int(decoder.step(active=1)[0]) for _ in range(8)]
        answers.append(answer)
    assert answers[0] == answers[1]
    assert all(token in allowed for token in answers[0][1::2])  # read inside a span
    assert any(token not in allowed for token in answers[0][0::2])  # outside: the model's own choice
    decoder = decoders[0]
    free = [decoder.prefill_many([0], [ids], [None])[0]] + [int(decoder.step(active=1)[0]) for _ in range(9)]
    assert free == _reference(model, ids, 10, 1.3)


def test_a_slot_reused_by_a_new_request_forgets_the_old_one(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = [prompts.encode(tokenizer, code, req)["input_ids"] for req, code, _ in SNIPPETS[3:5]]
    decoder = FastDecoder(model, slots=1, max_len=1024)
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    decoder.prefill(0, ids[0])
    for _ in range(10):
        decoder.step(active=1)
    got = [decoder.prefill(0, ids[1])] + [int(decoder.step(active=1)[0]) for _ in range(9)]
    assert got == _reference(model, ids[1], 10, 1.3)


def test_decoding_across_the_sliding_window_edge(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    window = model.config.sliding_window
    ids = tokenizer("x = 1", add_special_tokens=True)["input_ids"]
    n = window - len(ids) + 20  # starts inside the window, ends 20 tokens past it
    decoder = FastDecoder(model, slots=2, max_len=512)
    got = [decoder.prefill(1, ids)] + [int(decoder.step(active=2)[1]) for _ in range(n - 1)]
    assert got == _reference(model, ids, n, 1.0)


def test_penalty_on_the_answer_only_matches_transformers_prompt_ignore_length(model_and_tokenizer):
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    model, tokenizer = model_and_tokenizer
    ids = prompts.encode(tokenizer, SNIPPETS[0][1], SNIPPETS[0][0])["input_ids"]
    n = 16
    processor = RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=len(ids))
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0,
                         logits_processor=LogitsProcessorList([processor]))
    expected = out[0, len(ids):].tolist()
    decoder = FastDecoder(model, slots=1, max_len=1024)
    decoder.set_repetition_penalty(1.5, penalize_prompt=False)
    got = [decoder.prefill(0, ids)] + [int(decoder.step(active=1)[0]) for _ in range(n - 1)]
    assert got == expected
    assert got != _reference(model, ids, n, 1.5)  # the prompt rule really changes the answer here


@pytest.mark.parametrize(("penalize_prompt", "no_repeat_ngram", "grounded", "lookahead"),
                         [(True, 0, True, False), (False, 0, True, False), (False, 2, True, False),
                          (True, 0, True, True), (False, 0, False, True)])
def test_fast_engine_answers_exactly_like_the_reference_engine(tiny_model_dir, penalize_prompt, no_repeat_ngram,
                                                               grounded, lookahead):
    """Same Generations (text, tokens, stop, post-check) as Engine.generate, for a batch and for stragglers,
    with each step launched before the last one is read (lookahead, the GPU default: grounded decoding keeps it,
    n-gram bans do not) or not."""
    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.core.config import GenerationConfig, WorkerConfig

    gen = GenerationConfig(max_new_tokens=12, repetition_penalty=1.3, penalize_prompt=penalize_prompt,
                           no_repeat_ngram=no_repeat_ngram, grounded_decoding=grounded)
    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                                         fast_decode=False), gen)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu",
                      DecoderSettings(slots=4, max_len=1024, lookahead=lookahead))
    assert fast.lookahead is lookahead
    try:
        requests = [(code, request) for request, code, _ in SNIPPETS[:6]]  # more requests than slots
        expected = [reference.generate([pair])[0] for pair in requests]  # one at a time: no padding effects
        shared = prompts.shared_prefix_ids(reference.tokenizer)  # prompts prefill after it
        assert fast.decoder.prefix == shared[:len(shared) // 16 * 16] and len(fast.decoder.prefix) % 16 == 0
        assert fast.generate(requests) == expected
        assert fast.generate(requests[2:3]) == expected[2:3]
        assert fast.stats.prefill_prompts == 7 and fast.stats.steps >= 11
        q_proj = reference.model.model.layers[0].self_attn.q_proj.weight
        assert q_proj.data_ptr() == fast.decoder.layers[0].weights["wqkv"].data_ptr()  # one copy of the weights
        assert reference.generate(requests[:1]) == expected[:1]  # the model still answers through the views
    finally:
        fast.close()
    with pytest.raises(RuntimeError, match="closed"):
        fast.generate(requests[:1])


@pytest.mark.parametrize("lookahead", [False, True])
def test_long_prompts_wait_for_a_long_slot_and_short_ones_do_not_wait_behind_them(tiny_model_dir, lookahead):
    """Three long prompts and one long slot: they take it in turn (deferred, not refused), while short prompts
    fill the short slots; every answer is the reference one."""
    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.core.config import GenerationConfig, WorkerConfig

    gen = GenerationConfig(max_new_tokens=10, repetition_penalty=1.3)
    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                                         fast_decode=False), gen)
    # the tiny tokenizer spells the instruction out: these prompts take 358 (short) to 384 (long), facts included
    settings = DecoderSettings(slots=4, max_len=1024, lookahead=lookahead, long_slots=1, short_prompt_tokens=365)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu", settings)
    try:
        assert fast.decoder.short_slots == 3 and fast.decoder.short_len == 365 + 10 + 1
        long = [(code, request) for request, code, _ in SNIPPETS[:3]]
        short = [(f"x = {i}", None) for i in range(5)]
        assert all(fast.prompt_tokens(*pair) + 10 >= 376 for pair in long)
        assert all(fast.prompt_tokens(*pair) + 10 < 376 for pair in short)
        requests = [long[0], short[0], long[1], short[1], short[2], long[2], short[3], short[4]]
        expected = [reference.generate([pair])[0] for pair in requests]
        assert fast.generate(requests) == expected
    finally:
        fast.close()


def test_engine_load_picks_the_fast_path_only_where_it_applies(tiny_model_dir):
    from mafioso.worker.engine import GenerateEngine
    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import CPU_SLOTS, FACTS_TOKENS, slot_length
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.core.config import GenerationConfig, WorkerConfig

    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu")
    fast = load_engine(cfg, GenerationConfig())
    try:
        assert type(fast) is FastEngine and fast.decoder.slots == CPU_SLOTS  # 64 asked, capped on CPU
        assert not fast.decoder.cuda_graphs
    finally:
        fast.close()
    import dataclasses

    assert type(load_engine(dataclasses.replace(cfg, fast_decode=False), GenerationConfig())) is GenerateEngine
    sampling = load_engine(cfg, GenerationConfig(do_sample=True))  # on a CPU its slots sample too
    try:
        assert type(sampling) is FastEngine
    finally:
        sampling.close()
    cpu = fast
    assert FastEngine.supports(cpu.model, GenerationConfig(), "none")
    assert FastEngine.supports(cpu.model, GenerationConfig(do_sample=True), "none")
    assert not FastEngine.supports(cpu.model, GenerationConfig(), "nf4")
    # a paste of max_input_chars at ~3 characters a token, the instruction and the facts sheet (decoder_settings)
    assert slot_length(WorkerConfig(), GenerationConfig()) >= 6000 // 3 + 200 + FACTS_TOKENS


@pytest.mark.parametrize(("admit_every", "lookahead"), [(1, False), (3, False), (1, True), (3, True)])
def test_worker_on_the_fast_engine_answers_concurrent_requests(tiny_model_dir, admit_every, lookahead):
    import asyncio

    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.worker.service import Worker
    from mafioso.core.config import GenerationConfig, WorkerConfig

    gen = GenerationConfig(max_new_tokens=6)
    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32", max_batch_size=4,
                       fast_decode=False)
    reference = load_engine(cfg, gen)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu",
                      DecoderSettings(slots=4, max_len=1024, lookahead=lookahead, admit_every=admit_every))
    codes = [f"print({i} * {i})" for i in range(12)]

    async def main():
        worker = Worker(fast, cfg, cold_start_limit=len(codes))  # 3 x its slots at once, before any answer
        await worker.start()
        try:
            return await asyncio.gather(*(worker.explain(code) for code in codes)), worker.registry
        finally:
            await worker.stop()

    try:
        answers, registry = asyncio.run(main())
    finally:
        fast.close()
    assert [a.text for a in answers] == [reference.generate([(code, None)])[0].text for code in codes]
    # the decode thread's counters, as /metrics shows them
    assert registry.get_sample_value("mafioso_prefill_prompts_total") == len(codes)
    steps = registry.get_sample_value("mafioso_decode_steps_total")
    assert steps == fast.stats.steps > 0 and registry.get_sample_value("mafioso_decode_step_rows_total") >= steps


def test_the_engine_sets_the_gil_switch_interval_it_is_given(tiny_model_dir):
    """DecoderSettings.switch_interval_s is the process's GIL switch interval from the engine's start (without
    CUDA graphs and without a value, Python's own stays)."""
    import sys

    from mafioso.core.config import GenerationConfig, WorkerConfig
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.engines import load_engine
    from mafioso.worker.fast_engine import FastEngine

    gen = GenerationConfig(max_new_tokens=4)
    plain = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                                     fast_decode=False), gen)
    before = sys.getswitchinterval()
    try:
        for value, expected in ((None, before), (0.002, 0.002)):
            fast = FastEngine(plain.model, plain.tokenizer, gen, "cpu",
                              DecoderSettings(slots=2, max_len=1024, switch_interval_s=value))
            fast.close()
            assert sys.getswitchinterval() == pytest.approx(expected)
    finally:
        sys.setswitchinterval(before)


def test_prefill_groups_keep_similar_lengths_together_within_the_budget():
    from concurrent.futures import Future

    from mafioso.worker.fast_engine import _Row, prefill_groups

    lengths = [300, 10, 1000, 12, 290, 11]
    rows = [(slot, _Row([1] * length, Future(), 8, Control())) for slot, length in enumerate(lengths)]
    groups = prefill_groups(rows, budget=3 * 300)
    assert [[slot for slot, _ in group] for group in groups] == [[1, 5, 3], [4, 0], [2]]
    assert all(len(g) * max(len(r.prompt) for _, r in g) <= 3 * 300 or len(g) == 1 for g in groups)


def test_a_failed_prefill_fails_every_admitted_request_and_the_engine_keeps_serving(tiny_model_dir, monkeypatch):
    import threading
    import time
    from concurrent.futures import Future

    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine, _Row
    from mafioso.core.config import GenerationConfig, WorkerConfig

    gen = GenerationConfig(max_new_tokens=4)
    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu",
                                         dtype="float32", fast_decode=False), gen)
    # one prompt per prefill group
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu", DecoderSettings(slots=4, max_len=1024,
                                                                                         prefill_tokens=1))
    real, gate = fast.decoder.prefill_many, threading.Event()

    def failing(*args):
        gate.wait(5)
        raise RuntimeError("boom")

    monkeypatch.setattr(fast.decoder, "prefill_many", failing)
    try:
        rows = [_Row(reference.tokenizer(f"x = {i}")["input_ids"], Future(), 8, Control()) for i in range(4)]
        fast._inbox.put(rows[0])
        time.sleep(0.2)  # the decode thread now holds rows[0] in a prefill; the other three wait together
        for row in rows[1:]:
            fast._inbox.put(row)
        gate.set()
        for row in rows:  # three prefill groups admitted at once: all fail, none is left waiting
            with pytest.raises(RuntimeError, match="boom"):
                row.future.result(timeout=10)
        monkeypatch.setattr(fast.decoder, "prefill_many", real)
        assert fast.generate([("x = 1", None)]) == reference.generate([("x = 1", None)])
    finally:
        fast.close()


def test_no_repeat_ngram_bans_repeats_of_the_answer_only(tiny_model_dir):
    """With n=2 no pair of answer tokens comes twice (the tiny model loops without it), on both paths."""
    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.core.config import GenerationConfig, WorkerConfig

    def pairs_repeat(ids: list[int]) -> bool:
        pairs = list(zip(ids, ids[1:]))
        return len(pairs) != len(set(pairs))

    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                       fast_decode=False)
    loose = load_engine(cfg, GenerationConfig(max_new_tokens=40, repetition_penalty=1.0))
    codes = [code for _, code, _ in SNIPPETS[:4]]
    prompt_ids = [prompts.encode(loose.tokenizer, code)["input_ids"] for code in codes]
    assert any(pairs_repeat(ids) for ids, _ in loose.decode(prompt_ids))  # the test can fail
    gen = GenerationConfig(max_new_tokens=40, repetition_penalty=1.0, no_repeat_ngram=2)
    reference = load_engine(cfg, gen)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu", DecoderSettings(slots=4, max_len=1024))
    try:
        for engine in (reference, fast):
            for ids, stop in engine.decode(prompt_ids):
                end = min(stop or len(ids), next((i + 1 for i, t in enumerate(ids) if t in engine.eos_ids), len(ids)))
                assert not pairs_repeat(ids[:end])
    finally:
        fast.close()


def test_ngram_ban_counts_the_answer_not_the_prompt():
    from types import SimpleNamespace

    from mafioso.core.config import GenerationConfig
    from mafioso.worker.decoding_rules import DecodingRules
    from mafioso.worker.engine import _RulesBan, _RulesFeed
    from mafioso.worker.ngram_ban import NgramBan

    ban = NgramBan(3)
    for token in [5, 6, 7, 5]:
        ban.add(token)
    assert ban.banned() == set()
    ban.add(6)
    assert ban.banned() == {7}  # 5 6 7 again would repeat a trigram
    prompt = [1, 2, 1, 2, 1]  # the bigram 1 2 twice in the prompt: still allowed in the answer
    letters = SimpleNamespace(decode=lambda ids: "".join(chr(ord("a") + i) for i in ids))  # no "#" in sight
    rules = DecodingRules(GenerationConfig(no_repeat_ngram=2), letters)
    processor = _RulesBan(_RulesFeed([rules.for_answer()], prompt_len=len(prompt)))
    scores = processor(torch.tensor([prompt]), torch.zeros(1, 10))
    assert torch.isfinite(scores).all()
    scores = processor(torch.tensor([prompt + [2, 3, 2]]), torch.zeros(1, 10))
    assert torch.isinf(scores[0, 3]) and torch.isfinite(scores[0, [0, 1, 2, 4]]).all()  # 2 3 came before


@pytest.mark.parametrize("vocab", [262144, 151936, 1024, 1000, 997])
def test_chunked_argmax_is_argmax_ties_included(vocab):
    from mafioso.worker.fast_decode import chunked_argmax

    torch.manual_seed(0)
    logits = torch.randn(5, vocab)
    logits[1, :] = 0.0  # all tied: the first index
    logits[2, [7, vocab - 3]] = 50.0  # tied maxima in different slices: the first
    logits[3, :] = float("-inf")
    logits[3, vocab - 1] = 1.0  # the very last index
    logits[4, [vocab // 2, vocab // 2 + 1]] = 9.0  # tied neighbours
    assert chunked_argmax(logits).tolist() == logits.argmax(-1).tolist()
    assert chunked_argmax(logits).tolist()[1:3] == [0, 7]


def test_a_prefill_that_does_not_compile_falls_back_to_the_eager_layer(model_and_tokenizer, caplog):
    model, tokenizer = model_and_tokenizer
    decoder = FastDecoder(model, slots=1, max_len=256)

    def broken(*args):
        raise RuntimeError("inductor says no")

    decoder._prefill_layer_step = broken  # as torch.compile's wrapper would fail at its first call
    decoder.warm_up()
    assert decoder._prefill_layer_step == decoder._prefill_layer and "inductor says no" in caplog.text
    ids = tokenizer("x = 1", add_special_tokens=True)["input_ids"]
    assert decoder.prefill(0, ids) == _reference(model, ids, 1, 1.0)[0]


@pytest.mark.parametrize("arch", ["gemma3", "qwen2"])
def test_a_step_attends_over_its_key_span_only(tiny_model_dir, tiny_qwen_dir, arch):
    """A step told how far its rows reach reads the full-attention caches only that far (a sliding window's ring
    as ever): generate's tokens while the span covers the rows, and other tokens once a planted reach cuts keys
    the rows wrote (so the span is really what the step reads)."""
    folder = tiny_model_dir if arch == "gemma3" else tiny_qwen_dir
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    weights = torch.Generator().manual_seed(0)
    with torch.no_grad():  # larger random weights: the tiny Qwen2's own answer one token whatever it reads
        for weight in model.parameters() if arch == "qwen2" else ():
            weight.copy_(torch.randn(weight.shape, generator=weights) * 0.5)
    ids = torch.randint(3, model.config.vocab_size, (300,), generator=torch.Generator().manual_seed(5)).tolist()
    n = 12
    expected = _reference(model, ids, n, 1.0)
    answers = {}
    for reach in (len(ids) + n, 1):
        decoder = FastDecoder(model, slots=2, max_len=1024)
        decoder.set_repetition_penalty(1.0, penalize_prompt=True)
        assert decoder.key_spans == [256, 512, 1024]
        answers[decoder.key_span(reach)] = [decoder.prefill(0, ids)] + [
            int(decoder.step(active=1, reach=reach)[0]) for _ in range(n - 1)]
    assert answers[512] == expected  # 312 positions: half the slot
    assert answers[256] != expected  # 44 of the prompt's keys cut off


def test_steps_within_the_short_slots_share_a_graph_for_every_span_past_their_length(model_and_tokenizer,
                                                                                     monkeypatch):
    """Slots 0-5 hold 600 positions (640 stored), 6-7 hold 1,024: a step over the short slots reads 640 keys at
    most, so the spans 1,024 and 640 are one graph there (captured once); over all eight they are two. A long
    row still reads its whole span: generate's tokens."""
    model, tokenizer = model_and_tokenizer
    decoder = FastDecoder(model, slots=8, max_len=1024, short_slots=6, short_len=600, prefill_tokens=1024)
    decoder.cuda_graphs = decoder.pad_prefill = True
    monkeypatch.setattr(decoder, "_record", lambda run, warm=True: (_ReplayedGraph(run, out := run()), out))
    decoder.warm_up()
    assert decoder.key_spans == [256, 512, 1024]
    assert set(decoder.graphs) == {(b, span) for b in (1, 2, 4) for span in (256, 512, 640)} | {
        (8, span) for span in (256, 512, 1024)}
    ids = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:2]]
    n = 10
    assert short_then_long_slot(decoder, ids, n) == [_reference(model, prompt, n, 1.0) for prompt in ids]


@pytest.mark.parametrize("long_slots", [None, 2], ids=["every-slot-long", "short-and-long-slots"])
def test_fast_engine_steps_over_the_span_its_rows_reach(tiny_model_dir, long_slots):
    """The engine asks each step for a span that covers its rows' prompts and whole answers: an answer that
    crosses a span's end (prompt 250 tokens, 12 new) is generate's, and the steps of a short one read its span;
    also with two short slots of 113 positions beside two long ones (the long prompt in a long slot, the short one
    in a short slot, read to 128 there whatever the span)."""
    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.core.config import GenerationConfig, WorkerConfig

    gen = GenerationConfig(max_new_tokens=12, drop_unsupported=False)
    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                                         fast_decode=False), gen)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu", DecoderSettings(
        slots=4, max_len=1024, long_slots=long_slots, short_prompt_tokens=100))
    assert fast.decoder.full_lengths == ([1024] if long_slots is None else [128, 1024])
    spans, real = [], fast.decoder.key_span
    fast.decoder.key_span = lambda reach: spans.append(real(reach)) or spans[-1]
    try:
        vocab = reference.model.config.vocab_size
        prompts_ids = [torch.randint(3, vocab, (length,), generator=torch.Generator().manual_seed(length)).tolist()
                       for length in (250, 40)]
        assert fast.decode(prompts_ids) == reference.decode(prompts_ids)
        assert set(spans) == {512}  # 250 + 12 reaches past 256
        spans.clear()
        assert fast.decode(prompts_ids[1:]) == reference.decode(prompts_ids[1:]) and set(spans) == {256}
    finally:
        fast.close()


def test_compiled_decoder_runs_one_row_in_the_batch_of_two_graph(model_and_tokenizer):
    """torch.compile specialises a batch of 1: compiled, the smallest bucket is 2 (one graph less to build);
    eager (a CPU), one row runs alone."""
    model, _ = model_and_tokenizer
    assert FastDecoder(model, slots=8, max_len=256, compile=True).buckets == [2, 4, 8]
    assert FastDecoder(model, slots=8, max_len=256).buckets == [1, 2, 4, 8]
    assert FastDecoder(model, slots=1, max_len=256, compile=True).buckets == [1]


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["step", "layer"])
def test_compiled_decode_matches_generate_on_both_sides_of_the_short_long_boundary(model_and_tokenizer, scope):
    """torch.compile of the whole step or of each layer (inductor's C++ backend here, Triton on a GPU, ~30 s a
    scope): the greedy tokens of generate, first in a step over the short slots only, then in one that spans
    both cache parts (a second compiled variant: of the step, or of a full-attention layer). The step's only
    symbolic size is the batch: every bucket of a side runs one compiled variant, and nothing else (weights,
    cache, head counts) is left symbolic for inductor to reason about (2.3x the compile time, docs/BENCHMARKS.md)."""
    model, tokenizer = model_and_tokenizer
    ids = [prompts.encode(tokenizer, code, request)["input_ids"] for request, code, _ in SNIPPETS[:2]]
    n = 12
    expected = [_reference(model, prompt, n, 1.3) for prompt in ids]
    torch._dynamo.reset()  # dynamo keeps a method's graphs per code, not per decoder: count this decoder's
    decoder = FastDecoder(model, slots=8, max_len=1024, compile=True, short_slots=6, short_len=600,
                          compile_scope=scope)
    compiled = decoder._decode_step if scope == "step" else decoder._decode_layer_step
    assert compiled != (decoder._decode if scope == "step" else decoder._decode_layer)  # a torch.compile wrapper
    decoder.set_prefix(prompts.shared_prefix_ids(tokenizer))
    decoder.set_repetition_penalty(1.3, penalize_prompt=True)
    decoder._decode_step, compiles = recording_compiles(decoder._decode_step)  # scope "layer": all its pieces
    decoder._prefill_layer_step, prefill_compiles = recording_compiles(decoder._prefill_layer_step)
    assert [len(prompt) + n for prompt in ids] == [427, 398]  # the key span 512 of a slot of 640 or 1,024
    assert short_then_long_slot(decoder, ids, n) == expected
    for active in (3, 5, 8):  # buckets 4 and 8 after 2 and 8, every key span: nothing more to compile
        for reach in (None, 100, 600, 1000):
            decoder.step(active, reach)
    if scope == "step":
        # the short variant and the long one, the batch and the key spans their symbolic sizes
        rows, short, long = "L['rows'].size()[0]", "L['keys'][640].size()[0]", "L['keys'][1024].size()[0]"
        assert compiles == {"graphs": 2, "symbolic": [rows, short, rows, short, long]}
    else:  # embedding, logits, a sliding layer, a full one over the short slots and one spanning both parts
        assert compiles["graphs"] == 5
        assert set(compiles["symbolic"]) == {f"L[{name}].size()[0]" for name in (
            "'tokens'", "'positions'", "'x'", "'cos'", "'sin'", "'keys'][640", "'keys'][1024")}  # the batch; the spans
    for count in (2, 3):  # two prompts, then three (one, above): a second variant, then none
        decoder.prefill_many(list(range(2, 2 + count)), [ids[0][:len(ids[0]) - cut] for cut in range(count)])
    # (a prompt is specialised): one variant for a prompt, one for several, the prompts and tokens symbolic
    assert prefill_compiles["graphs"] == 2
    assert set(prefill_compiles["symbolic"]) == {
        "L['x'].size()[0]", "L['x'].size()[1]", "L['cos'].size()[0]", "L['cos'].storage_offset()",
        "L['sin'].size()[0]", "L['mask'].size()[0]", "L['mask'].size()[2]", "L['mask'].size()[3]"}


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["step", "layer"])
def test_compiled_decode_follows_grounding_as_the_eager_one(model_and_tokenizer, scope):
    """Grounded decoding inside a compiled step (every token a span flip, spans allowing 20 tokens): the tokens
    of the eager decoder."""
    model, tokenizer = model_and_tokenizer
    ids = prompts.encode(tokenizer, SNIPPETS[1][1], SNIPPETS[1][0])["input_ids"]
    vocab = model.config.vocab_size
    inside = torch.ones(vocab, dtype=torch.bool)
    inside[20:40] = False
    tables = (torch.zeros(vocab, dtype=torch.bool), inside, torch.ones(vocab, dtype=torch.bool))
    answers = []
    for compile in (False, True):
        decoder = FastDecoder(model, slots=2, max_len=1024, compile=compile, compile_scope=scope)
        decoder.set_repetition_penalty(1.3, penalize_prompt=True)
        decoder.enable_grounding()
        answers.append([decoder.prefill_many([0], [ids], [tables])[0]]
                       + [int(decoder.step(active=1)[0]) for _ in range(10)])
    assert answers[0] == answers[1] and all(20 <= token < 40 for token in answers[0][1::2])


@pytest.mark.parametrize("lookahead", [False, True])
def test_fast_engine_honours_max_tokens_and_cancellation_like_the_reference(tiny_model_dir, lookahead):
    """Issue 19 items 6 and 7: each row stops at its own max_tokens (token-exact with Engine.generate) and a
    cancelled row leaves its slot at the next step, the others untouched."""
    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.core.config import GenerationConfig, WorkerConfig

    gen = GenerationConfig(max_new_tokens=12)
    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                                         fast_decode=False), gen)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu",
                      DecoderSettings(slots=4, max_len=1024, lookahead=lookahead))
    try:
        requests = [(code, request) for request, code, _ in SNIPPETS[:6]]
        limits = [1, 5, None, 12, 3, None]
        expected = [reference.generate([pair], [Control(limit)])[0] for pair, limit in zip(requests, limits)]
        assert [e.tokens for e in expected] == [1, 5, 12, 12, 3, 12]  # the random tiny model never stops itself
        assert fast.generate(requests, [Control(limit) for limit in limits]) == expected

        gone = Control()
        gone.cancel()
        dropped, kept = fast.generate(requests[:2], [gone, Control()])
        assert dropped.tokens == 0 and kept == reference.generate(requests[1:2])[0] and fast.stats.cancelled == 1

        later, launches = Control(), []
        real = fast.decoder.launch

        def launch(*args):  # the client hangs up after the third step
            launches.append(1)
            if len(launches) == 3:
                later.cancel()
            return real(*args)

        fast.decoder.launch = launch
        [answer] = fast.generate(requests[:1], [later])
        assert answer.tokens <= 4 and len(launches) <= 4 and fast.stats.cancelled == 2  # not 12 steps
        fast.decoder.launch = real
        assert fast.generate(requests[:1]) == [reference.generate(requests[:1])[0]]  # the slot came back
    finally:
        fast.close()


def test_fast_engine_ends_a_row_at_a_stop_string_like_the_reference(tiny_model_dir):
    """A request's stop strings: the row ends at the token that completes one, on both paths alike (the stop is a
    piece of the reference's own answer, since the tiny model writes gibberish)."""
    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.core.config import GenerationConfig, WorkerConfig

    gen = GenerationConfig(max_new_tokens=12, drop_unsupported=False)
    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                                         fast_decode=False), gen)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu", DecoderSettings(slots=4, max_len=1024))
    try:
        requests = [(code, request) for request, code, _ in SNIPPETS[:2]]
        [whole, _] = reference.generate(requests)
        stop = whole.text[len(whole.text) // 2:][:3]
        controls = [Control(stop=(stop,)), Control()]
        expected = reference.generate(requests, controls)
        assert expected[0].tokens < whole.tokens and expected[0].finished and stop in expected[0].text
        assert fast.generate(requests, [Control(stop=(stop,)), Control()]) == expected
    finally:
        fast.close()
