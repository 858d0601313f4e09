"""Denied names: "it has no `__init__`" of a class that defines one is flagged (and dropped by the post-check);
denials of what the code lacks, of a type, of a call's argument or of another definition's names pass."""

import pytest

from mafioso.core.claim_check import drop_unsupported
from mafioso.core.claims import claim_kind, denied_names, static_claims

COUNTER = ("class Counter:\n    def __init__(self):\n        self.n = 0\n    def bump(self):\n        self.n += 1\n"
           "        return self.n\n\nc = Counter()\nc.bump()\nprint(c.bump())\n")
TAB = ("import json\n\ndef settle_tab(*amounts, tip=0):\n    # no cache here\n"
       "    return max(amounts, key=abs) + tip\n\n"
       "def helper(x):\n    return json.dumps(x)\n")


@pytest.mark.parametrize(("code", "answer", "name"), [
    (COUNTER, "`Counter` is a plain class, pal: it has no `__init__`, just a counter in `n`.", "__init__"),
    (COUNTER, "The class lacks a `bump` method, capisce?", "bump"),
    (COUNTER, "`Counter` doesn't have `bump`.", "bump"),
    (COUNTER, "There's no `print` call anywhere, kid.", "print"),
    (COUNTER, "No `bump`, no mess, capisce?", "bump"),
    (COUNTER, "A plain class with no `__init__` at all.", "__init__"),
    (TAB, "There is no `helper` function here.", "helper"),
    (TAB, "The code has no `json` import, so it stays plain.", "json"),
    ("```python\n" + COUNTER + "```\n", "It has no `__init__`.", "__init__"),  # a fenced paste, read as Python
    (">>> crew = ['al']\n>>> crew.append('vito')\n", "There's no `append` call here.", "append"),  # a session
])
def test_a_denied_name_the_code_has_is_flagged(code, answer, name):
    [claim] = denied_names(code, answer)
    assert claim["claim"] == f"no `{name}`" and claim_kind(claim) == "false concept (denied)"
    assert claim in static_claims(code, answer)


@pytest.mark.parametrize(("code", "answer"), [
    (COUNTER, "It has no `reset` method, so the count only grows."),  # the code lacks it: true
    (TAB, "It has no `cache`."),  # only in a comment
    (TAB, "`settle_tab` is called with no `tip`, so the tip stays 0."),  # a parameter: the call's business
    (TAB, "`max` with no `key` would compare the raw amounts."),  # a keyword argument's name
    (TAB, "`settle_tab` has no `dumps` call."),  # another definition's name
    (TAB, "It never calls `helper`."),  # a call claim, not a denial of having it
    (COUNTER, "Python's None has no `bump`, and a dict has no `n`."),  # of a value or a type
    (COUNTER, "`bump` has no `else`, no `for` loop."),  # keywords: the concept check's business
    (COUNTER, "If it had no `__init__`, `n` would not exist."),  # a what-if: left to the advice rule
    ("def f(:\n    pass\n", "It has no `f`."),  # not Python: not read
])
def test_true_or_other_denials_pass(code, answer):
    assert denied_names(code, answer) == []


def test_the_post_check_drops_the_sentence_and_keeps_the_rest():
    answer = ("`Counter` keeps a count in `n`, pal. It has no `__init__`, so `n` comes from nowhere. `bump` adds one "
              "and hands it back, capisce?")
    kept, dropped = drop_unsupported(COUNTER, answer)
    assert dropped == 1 and "__init__" not in kept and kept.startswith("`Counter` keeps") and "`bump` adds" in kept
