"""Start values: "`seen` gets set to `None`" of ``seen = set()`` is caught; what the code may hold is left alone."""

import pytest

from mafioso.core.claims import static_claims
from mafioso.core.claims.values import false_values

FIRST_DUPLICATE = ("def first_duplicate(items):\n    seen = set()\n    for item in items:\n        if item in seen:\n"
                   "            return item\n        seen.add(item)\n    return None\n")
EVENS = "def evens(limit):\n    n = 0\n    while n < limit:\n        yield n\n        n += 2\n"
COUNT = "count = 0\nfor r in [3, -1, 4]:\n    if r > 0:\n        count += 1\nprint(count)\n"
COINS = "COINS = (25, 10, 5, 1)\nBANNED = {'rat'}\nscores = {}\nname = ''\n"


def claims(found):
    return [c["claim"] for c in found]


@pytest.mark.parametrize("code, answer, claim", [
    (FIRST_DUPLICATE, "A plain loop, so `seen` gets set to `None`.", "seen = None"),
    (EVENS, "It starts `n` at `limit` and yields `n` thereafter.", "n = limit"),
    (COUNT, "Zero gets skipped, so `count` starts at 1 and climbs.", "count = 1"),
    (COUNT, "`count` begins at one.", "count = one"),
    (COINS, "It checks words, and `BANNED` gets set to True.", "BANNED = True"),
    (COINS, "`scores` starts as an empty list.", "scores = an empty list"),
    (COINS, "`name` starts as `None`.", "name = None"),
    (COINS, "`COINS` starts at 10.", "COINS = 10"),
])
def test_a_start_value_the_code_never_assigns_is_caught(code, answer, claim):
    assert claims(false_values(code, answer)) == [claim]
    assert claim in claims(static_claims(code, answer))  # and the post-check and eval see it


@pytest.mark.parametrize("code, answer", [
    (FIRST_DUPLICATE, "`seen` starts as an empty set."),
    (EVENS, "`n` starts at 0 and climbs by two."),
    (EVENS, "`n` starts at zero."),
    (COUNT, "`count` starts at `0`."),
    (COINS, "`COINS` starts at 25 and goes down to 1."),  # a tuple starts with its first item
    (COINS, "`scores` starts as an empty dictionary, `name` as an empty string."),
    (COINS, "`name` starts as an empty string."),
    (COUNT, "`count` is set to 2 by the end."),  # changed in place (+=): any value may be true at some point
    (EVENS, "`limit` starts at 7."),  # a parameter: whatever the call passes
    ("n = 10\ndef countdown(n):\n    while n > 0:\n        n -= 1\ncountdown(3)\n",
     "`countdown` starts `n` at 3."),  # also a parameter (the module's n is another)
    ("for i in range(1, 5):\n    print(i)\n", "`i` starts at 1."),  # a loop's target
    ("unique = sorted(set(['b', 'a']))\n", "`unique` starts as an empty list."),  # a call: not read here
    ("a = 1\nb = a\n", "`b` starts at 5."),  # another name's value
    (FIRST_DUPLICATE, "`seen` is never set to `None`."),  # a denial
    (COUNT, "`count` could start at 1 instead."),  # advice
    (COUNT, "Each `line` starts with a '#'."),  # a string's start, not a value
    ("def broken(:\n", "`x` starts at 0."),
])
def test_true_unknown_or_unclaimed_values_pass(code, answer):
    assert false_values(code, answer) == []
