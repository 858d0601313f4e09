"""The decoding rules both paths apply to an answer (mafioso.worker.decoding_rules), on a letters tokenizer."""

from types import SimpleNamespace

from mafioso.core.config import GenerationConfig
from mafioso.worker.decoding_rules import ClaimCut, DecodingRules, host_bans

PIECES = ["a", " b", "#", "##", "c#", "x", ", ", "1"]
TEXT = SimpleNamespace(decode=lambda ids: "".join(PIECES[i] for i in ids))


def feed(rules, tokens):
    """The token at which the answer was ended (its 1-based count), or None."""
    return next((n for n, token in enumerate(tokens, 1) if rules.add(token)), None)


def test_the_answer_stops_once_its_text_holds_the_section_marker_across_tokens():
    rules = DecodingRules(GenerationConfig(stop_loops=False), TEXT)
    answer = rules.for_answer()
    assert feed(answer, [0, 1, 4, 2, 5]) is None  # "a bc##x": two marks only
    answer = rules.for_answer()
    assert feed(answer, [0, 4, 3, 5]) == 3 and answer.stop == 3  # "ac###": the third token completes it
    assert answer.add(2) is False and answer.stop == 3  # padding after the end changes nothing


def test_a_loop_ends_the_answer_and_ngram_bans_follow_it():
    looping = [0, 1] * 30
    off = DecodingRules(GenerationConfig(stop_loops=False), TEXT).for_answer()
    assert feed(off, looping) is None and off.banned() == set()
    on = DecodingRules(GenerationConfig(stop_loops=True), TEXT).for_answer()
    stop = feed(on, looping)
    assert stop is not None and stop < len(looping) and on.stop == stop
    bans = DecodingRules(GenerationConfig(stop_loops=False, no_repeat_ngram=2), TEXT).for_answer()
    for token in [0, 1, 5, 0]:
        bans.add(token)
    assert bans.banned() == {1}  # "a b" came before


def test_a_stop_string_ends_the_answer_even_when_byte_tokens_spell_it():
    """A request's stop strings, found across tokens; a byte-level tokenizer spends four tokens on one emoji."""
    data = "la 🙂🙂 fin".encode()
    byte_text = SimpleNamespace(decode=lambda ids: bytes(ids).decode(errors="replace"))
    answer = DecodingRules(GenerationConfig(stop_loops=False), byte_text).for_answer(("🙂🙂",))
    assert feed(answer, list(data)) == len("la 🙂🙂".encode())  # the token completing the second emoji
    letters = DecodingRules(GenerationConfig(stop_loops=False), TEXT)
    assert feed(letters.for_answer(("b c",)), [0, 1, 0, 1, 4]) is None  # "a ba bc#": no "b c"
    assert feed(letters.for_answer(("x, ",)), [0, 5, 6, 7]) == 3


def test_host_bans_says_when_a_step_must_see_the_last_token():
    assert not host_bans(GenerationConfig(no_repeat_ngram=0, grounded_decoding=False))
    assert host_bans(GenerationConfig(no_repeat_ngram=3, grounded_decoding=False))
    assert host_bans(GenerationConfig(no_repeat_ngram=3, grounded_decoding=True))
    assert not host_bans(GenerationConfig(no_repeat_ngram=0, grounded_decoding=True))  # followed on the device


def test_before_stop_cuts_at_the_earliest_stop_string():
    from mafioso.worker.decoding_rules import before_stop

    assert before_stop("a boss and a capo", ("capo", "boss")) == "a "
    assert before_stop("a boss", ()) == "a boss" and before_stop("a boss", ("zzz",)) == "a boss"
    assert before_stop("Listen.\n\nCapisce?", ("\n\n",)) == "Listen."


def test_the_claim_cut_ends_the_answer_after_the_first_sentence_the_check_drops():
    """Checked when a sentence has just ended; the answer keeps that sentence, not the token that began the next."""
    words = ["It returns 1.", " `f` is recursive,", " pal.", " It", " is short.", " 3", ".5 of them."]
    text = SimpleNamespace(decode=lambda ids, **_: "".join(words[i] for i in ids))
    rules = DecodingRules(GenerationConfig(stop_loops=False), text)
    code = "def f():\n    return 1\n"
    cut = ClaimCut(code)
    answer = rules.for_answer(cut=cut)
    assert feed(answer, [0, 3, 4, 5, 6, 1, 2, 3, 4]) == 8 and answer.stop == cut.at == 7
    assert text.decode([0, 3, 4, 5, 6, 1, 2, 3, 4][:answer.stop]).endswith("recursive, pal.")
    clean = ClaimCut(code)
    assert feed(rules.for_answer(cut=clean), [0, 3, 4, 3, 4, 5, 6]) is None and clean.at is None
    kept = rules.for_answer(kept=[0, 3, 4], cut=ClaimCut(code))  # a retry's kept tokens passed already
    assert feed(kept, [3, 4]) is None
