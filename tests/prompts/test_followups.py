"""A chat message of words, not code: a follow-up question about code sent earlier."""

import pytest

from mafioso.prompts.followups import prose


@pytest.mark.parametrize("text", ["is there a bug?", "explain", "thanks!", "and the second function?",
                                  "Why does it print None, pal?", "what about line 3\nand line 4?"])
def test_a_follow_up_is_prose(text):
    assert prose(text)


@pytest.mark.parametrize("text", ["x = 1", "print(x)", "def f():\n    return 1", "```\nwhy\n```", "", "  ",
                                  "for x in xs: total += x", "items.sort()",
                                  # code that does not parse is code still
                                  "def f(:\n    pass", "total = sum(xs\nprint(total)", "counts[word] += 1 +",
                                  "if x > 1 print(x):", "int main() {"])
def test_code_and_fences_are_not_prose(text):
    assert not prose(text)


def test_prose_is_linear_in_the_text():
    """Chat input is untrusted: long adversarial lines must not backtrack (the brief: parsing in linear time)."""
    import time

    started = time.perf_counter()
    for text in ("(" * 100_000, "a" * 100_000 + "=", " " * 100_000 + "(x", "is it " * 20_000 + "?", "a b\n" * 30_000):
        prose(text)
    assert time.perf_counter() - started < 2.0  # each is a few milliseconds; a quadratic one takes minutes
