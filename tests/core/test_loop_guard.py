"""The loop rule (core/loop_guard.py): what counts as a loop, what never does, and how a looping answer is cut.

The detector works on token ids; these tests use a word-level stand-in tokenizer that, like Gemma's, writes
numbers one digit per token and glues a leading space to a word.
"""

import json
import pathlib
import re

import pytest

from mafioso.core.loop_guard import LoopGuard, LoopRule, TokenPieces, cut_loop, find_loop
from mafioso.core.config import GenerationConfig
from mafioso.core.errors import ConfigError
from tests.helpers import SNIPPETS

DATA = pathlib.Path(__file__).parents[2] / "data"


class WordTokenizer:
    """Words (with their leading space), single digits, single other characters."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.pieces: list[str] = []

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in re.findall(r" ?[^\W\d]+|\d| ?[^\w\s]|\s", text):
            if piece not in self.vocab:
                self.vocab[piece] = len(self.pieces)
                self.pieces.append(piece)
            ids.append(self.vocab[piece])
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


@pytest.fixture(scope="module")
def tok():
    return WordTokenizer()


def loop_of(tok, text: str, rule: LoopRule = LoopRule()):
    return find_loop(tok.encode(text), rule, TokenPieces(tok))


def cut(tok, text: str) -> tuple[str, str]:
    """The loop's kind and the answer as cut; the text must loop."""
    ids = tok.encode(text)
    loop = find_loop(ids, LoopRule(), TokenPieces(tok))
    assert loop is not None, text
    guard = LoopGuard(LoopRule(), TokenPieces(tok))
    fired = next(i + 1 for i, token in enumerate(ids) if guard.add(token))
    return loop.kind, cut_loop(tok.decode, ids[:fired], loop)  # cut where a decode path stops


COUNTING = "There's a bug, boss. " + " ".join(
    f"Counting to {word}, then dividing by how many there are, and you get the real average."
    for word in ("one", "two", "three", "four", "five", "six", "seven", "eight"))  # the tuned Qwen, asked "a bug?"


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("Listen, pal. This function calls itself. No, no, " + "no, " * 30, "repeat",
     "Listen, pal. This function calls itself."),
    ("It adds one. " * 10, "repeat", "It adds one."),
    ("Boss says so. " + "It adds one to the pile. " * 8, "repeat", "Boss says so. It adds one to the pile."),
    ("Yes. No. " * 12, "repeat", "Yes. No. Yes."),  # the first "Yes" has no space: the unit is ". No. Yes"
    ("The loop counts up, see? It prints " + ", ".join(map(str, range(1, 42))), "count",
     "The loop counts up, see?"),
    ("Every fifth crate: " + ", ".join(map(str, range(0, 200, 5))), "count", "Every fifth crate: 0"),
    ("The tab is 120, " + "120, " * 20, "repeat", "The tab is 120"),
    ("Steps back: " + ", ".join(str(-i) for i in range(1, 30)), "count", "Steps back: -1"),
    ("Rates: " + ", ".join(f"{i / 2:.1f}" for i in range(1, 30)), "count", "Rates: 0.5"),
    ("It rolls the dice.\n" + "!" * 40, "repeat", "It rolls the dice.\n"),
    # a unit of 13-64 tokens from its third copy (a tuned adapter's answer, validation row oneliner-v03); the
    # repetition begins after "average" in the second copy, so its first sentence is kept: a stream showed it
    ("The fix is to divide by the length. Omertà on this one? Not really, pal: the sum of the whole bunch comes "
     "home divided by the length. " + "Omertà on this one? Not really, pal: the average of the whole bunch comes "
     "home divided by the length. " * 4, "repeat", "The fix is to divide by the length. Omertà on this one? Not "
     "really, pal: the sum of the whole bunch comes home divided by the length. Omertà on this one?"),
    ("Listen. " + "It adds one to the pile, see? Then the pile goes back to the boss, pal. " * 4, "repeat",
     "Listen. It adds one to the pile, see? Then the pile goes back to the boss, pal."),  # both sentences kept
    ("It reads the file.\n" + "- 1940s: the first time I saw this film noir, see.\n" * 3, "repeat",
     "It reads the file.\n- 1940s: the first time I saw this film noir, see."),
    # one sentence with a word counting on: six in a row, and only the first is kept
    (COUNTING, "variant", "There's a bug, boss. Counting to one, then dividing by how many there are, and you get "
                          "the real average."),
])
def test_loops_are_found_and_cut_back(tok, text, kind, expected):
    assert cut(tok, text) == (kind, expected)


@pytest.mark.parametrize("text", [
    "`MAX_LOANS` caps the loans; once `MAX_LOANS` is hit, MAX_LOANS wins. MAX_LOANS, MAX_LOANS, MAX_LOANS.",
    "`__init__` sets up the crew, and `__init__` runs once per `__init__` call.",
    "The name a_b_c_d_e_f_g_h_i_j_k_l_m_n_o_p_q_r_s_t_u_v_w_x_y_z is long.",
    "One, two, three strikes and you're out, pal. Capisce?",
    "It prints 1, 2, 3 and stops.", "It prints 1, 2, 3, 4.", "It prints 1, 2, 3, 4, 5, 6.",
    "range(10) gives 0, 1, 2, 3, 4, 5, 6, 7, 8, 9. That's ten numbers.",
    "Fibonacci: 0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233.",
    "Python prints 1/3 as 0.3333333333333333 and 0.1 + 0.2 as 0.30000000000000004, pal.",
    "x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, all lined up.",
    "No, no, no, no. Not like that.", "Ha! Ha! Ha! Ha! Ha!",
    "OK, OWES, OK, OWES, OK: the ledger alternates.",
    "1,000, 2,000, 3,000, 4,000, 5,000, 6,000, 7,000, 8,000, 9,000, 10,000 dollars",
    # a long sentence said twice is not yet a loop; three near-copies that differ in a word are none
    "So it prints the total of the whole crew's take. So it prints the total of the whole crew's take. Capisce?",
    " ".join(f"Row {word} gets the whole family's share of the take, pal." for word in ("one", "two", "three", "four")),
    # five are a list still; two changed words, another length or a short sentence are no variants
    " ".join(f"Row {word} gets the whole family's share of the take, pal." for word in ("one", "two", "3", "4", "5")),
    " ".join(f"Row {word} gets the {word} share of the take, pal." for word in ("one", "two", "3", "4", "5", "6", "7")),
    " ".join(f"Row {'1' * k} gets the whole family's share of the take, pal." for k in range(1, 9)),
    " ".join(f"Row {word} wins." for word in ("one", "two", "3", "4", "5", "6", "7")),
])
def test_names_lists_and_prose_are_not_loops(tok, text):
    assert loop_of(tok, text) is None


def test_no_reference_answer_in_the_shipped_data_loops(tok):
    answers = [row["mafia_explanation"] for name in ("train.json", "validation.json")
               for row in json.loads((DATA / name).read_text()).values()]
    assert len(answers) > 500
    assert [a for a in answers if loop_of(tok, a) is not None] == []


def test_the_rule_is_tuned_by_span_and_count(tok):
    assert loop_of(tok, "No, no, no, no, no, no. Go.") is None  # 11 tokens of period 2
    assert loop_of(tok, "No, no, no, no, no, no. Go.", LoopRule(span=8)).start == 1
    assert loop_of(tok, "It prints 1, 2, 3, 4, 5, 6.") is None
    assert loop_of(tok, "1/3 is 0.3333333333333333.", LoopRule(span=16)).period == 1  # why the span is 20
    assert loop_of(tok, "It prints 1, 2, 3, 4, 5, 6.", LoopRule(count=5)).kind == "count"
    assert loop_of(tok, "It adds one. " * 10, LoopRule(span=0)) is None  # 0: that half off (the guard's own)
    assert LoopRule.of(GenerationConfig(loop_span=30, loop_count=12)) == LoopRule(span=30, count=12)
    with pytest.raises(ConfigError, match="MAFIOSO_LOOP_SPAN"):
        GenerationConfig(loop_span=4)
    with pytest.raises(ConfigError, match="MAFIOSO_LOOP_COUNT"):
        GenerationConfig(loop_count=3)


def _brute_force_loop(rule: LoopRule, ids: list[int]):
    """Where the repeat rule first fires, by checking every period over every prefix: (end, start, period)."""
    for end in range(1, len(ids) + 1):
        for p in range(1, rule.long_period + 1):
            run = 0  # positions i < end, counted back from end - 1, with ids[i] == ids[i - p]
            while end - 1 - run - p >= 0 and ids[end - 1 - run] == ids[end - 1 - run - p]:
                run += 1
            copies, least = (rule.repeats, rule.span) if p <= rule.max_period else (rule.long_repeats, 0)
            if run and run + p >= max(copies * p, least):
                return end, end - run - p, p
    return None


@pytest.mark.parametrize(("span", "symbols", "unit", "copies", "seed", "fired"), [
    (10, 4, (1, 5), 6, 7, (50, 250)),  # short units (1-12 tokens, 4 copies)
    (20, 12, (13, 30), 4, 11, (60, 180)),  # long units (13-64 tokens, 3 copies)
])
def test_the_incremental_repeat_rule_matches_a_brute_force_one(span, symbols, unit, copies, seed, fired):
    """Random answers over a few tokens (so runs start, break and restart), a unit repeated amid noise: the guard
    fires at the same token, with the same loop, as a check of every period over every prefix."""
    import random

    rule = LoopRule(span=span, count=10**6)
    pieces = {t: ("x", False, True, False) for t in range(symbols)}
    rng = random.Random(seed)
    found = 0
    for _ in range(250):
        repeated = [rng.randrange(symbols) for _ in range(rng.randint(*unit))]
        ids = [rng.randrange(symbols) for _ in range(rng.randint(0, 40))]
        ids += repeated * rng.randint(1, copies) + [rng.randrange(symbols) for _ in range(rng.randint(0, 30))]
        guard = LoopGuard(rule, pieces)
        at = next((i + 1 for i, token in enumerate(ids) if guard.add(token)), None)
        assert ((at, guard.loop.start, guard.loop.period) if at else None) == _brute_force_loop(rule, ids), ids
        found += at is not None
    assert fired[0] < found < fired[1]


def test_a_guard_fires_once_and_stays_fired(tok):
    ids = tok.encode("It adds one. " * 10)
    guard = LoopGuard(LoopRule(), TokenPieces(tok))
    fired = [guard.add(token) for token in ids]
    first = fired.index(True)
    # the first "It" has no space before it: the unit " adds one. It" repeats from the second token, 20 tokens
    assert first == 20 and all(fired[first:])
    assert guard.loop == find_loop(ids, LoopRule(), TokenPieces(tok))


# ------------------------------------------------------------------------- both decode paths, end to end


def looping_model(tiny_model_dir, answer: str):
    """The tiny Gemma 3 turned into a bigram model that answers every prompt with ``answer``, looping on.

    Its layers add nothing to the residual (o_proj and down_proj zero), so the last hidden state is the
    current token's normalised embedding; an untied lm_head maps it to the next token of ``answer`` (the
    token after the prompt's last one is its first). Both decode paths run these weights with their own maths.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mafioso import prompts

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    last = prompts.encode(tokenizer, "x = 1")["input_ids"][-1]  # every prompt ends with the same token
    ids = [last] + tokenizer(answer, add_special_tokens=False)["input_ids"]
    successor: dict[int, int] = {}
    for token, following in zip(ids, ids[1:]):
        assert successor.setdefault(token, following) == following, "the answer must be a bigram chain"
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.zero_()  # Gemma's norm scales by 1 + weight
        embed = model.model.embed_tokens.weight
        unit = embed / embed.pow(2).mean(-1, keepdim=True).sqrt()
        head = torch.zeros_like(embed)
        for token, following in successor.items():
            head[following] += 10 * unit[token]
    model.lm_head.weight = torch.nn.Parameter(head)
    model.config.tie_word_embeddings = False
    return model, tokenizer


@pytest.mark.parametrize(("answer", "expected", "tokens"), [
    # "Capisce?" is 6 tokens, then 4 copies of a 7-token sentence
    ("Capisce? Python and code, explain that." + " Python and code, explain that." * 8,
     "Capisce? Python and code, explain that.", 6 + 28),
    # "Capisce? No" is 8 tokens, then 10 copies of ", no"
    ("Capisce? No" + ", no" * 30, "Capisce?", 8 + 20),
], ids=["sentence", "no-no-no"])
@pytest.mark.parametrize("lookahead", [False, True])
def test_a_looping_model_is_stopped_and_cut_alike_on_both_paths(tiny_model_dir, answer, expected, tokens, lookahead):
    """Stopped where the loop is found (finished, looped, the slot freed), cut back to before it, the same
    answers on the reference path and the fast one; with stop_loops off the answer runs on, still flagged."""
    from mafioso.worker.engine import GenerateEngine, Generation
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine

    model, tokenizer = looping_model(tiny_model_dir, answer)
    gen = GenerationConfig(max_new_tokens=60)
    reference = GenerateEngine(model, tokenizer, gen, "cpu")
    requests = [(code, request) for request, code, _ in SNIPPETS] * 2  # more requests than slots
    stopped = Generation(text=expected, tokens=tokens, finished=True, looped=True)
    assert reference.generate(requests[:3]) == [stopped] * 3  # a padded batch of three
    fast = FastEngine(model, tokenizer, gen, "cpu", DecoderSettings(slots=4, max_len=1024, lookahead=lookahead))
    try:
        assert fast.generate(requests) == [stopped] * len(requests)
        waves = -(-len(requests) // fast.decoder.slots)
        assert fast.stats.steps <= waves * stopped.tokens  # each slot freed at the stop, not at 60 tokens
    finally:
        fast.close()

    off = GenerationConfig(max_new_tokens=60, stop_loops=False)
    [unstopped] = GenerateEngine(model, tokenizer, off, "cpu").generate(requests[:1])
    assert unstopped.tokens == 60 and not unstopped.finished and unstopped.looped
    assert unstopped.text.startswith(expected) and len(unstopped.text) > len(expected) + 20
    if lookahead:
        fast = FastEngine(model, tokenizer, off, "cpu", DecoderSettings(slots=4, max_len=1024, lookahead=lookahead))
        try:
            assert fast.generate(requests[:2]) == [unstopped] * 2
        finally:
            fast.close()
