"""False denials: an answer that denies a construct its code has ("the function never recurses" of a recursive
one) is flagged; true denials, qualified ones ("doesn't recurse forever") and denials of another function pass."""

import json
from pathlib import Path

import pytest

from mafioso.core.claim_check import drop_unsupported
from mafioso.core.claims import CONCEPTS, false_concepts
from mafioso.core.claims.text import denied
from mafioso.prompts.facts import definition_features
from mafioso.trainer.grounding import summarize_claims

POWER = ("def power(base, exp):\n    if exp == 0:\n        return 1\n    return base * power(base, exp - 1)\n\n"
         "print(power(2, 5))\n")
EVENS = "def evens(limit):\n    n = 0\n    while n < limit:\n        yield n\n        n += 2\n"
TIMED = ("import functools\n\ndef timed(fn):\n    @functools.wraps(fn)\n    def wrapper(*a):\n        return fn(*a)\n"
         "    return wrapper\n\n@timed\ndef greet(name):\n    return 'hi ' + name\n")
POINT = "from dataclasses import dataclass\n\n@dataclass\nclass Point:\n    x: int\n    y: int\n"
BY_AGE = "people = [('al', 40), ('vito', 60)]\nprint(sorted(people, key=lambda p: p[1]))\n"
SQUARES = "def squares(n):\n    return [i * i for i in range(n)]\n"
CHEAP = "prices = {'apple': 1.2, 'pear': 0.8}\ncheap = {k: v for k, v in prices.items() if v < 1}\n"
UNIQUE = "words = ['ant', 'bee']\nfirsts = {w[0] for w in words}\n"
COUNTER = "class Counter:\n    def bump(self):\n        return 1\n\nc = Counter()\n"
PLAIN = "def double(n):\n    return n * 2\n"
TOTAL = "total = 0\nfor qty in [2, 1]:\n    total += qty\nprint(total)\n"
PRICES = ("import asyncio\n\nasync def price_of(n):\n    await asyncio.sleep(0.1)\n    return n * 10\n\n"
          "asyncio.run(price_of(2))\n")
TWO = POWER + "\ndef helper(x):\n    return x + 1\n"  # one function recurses, the other does not


def denials(code, answer):
    return [(c["claim"], c.get("denied", False)) for c in false_concepts(code, answer)]


@pytest.mark.parametrize("code, answer, claim", [
    (POWER, "It returns the result, not None, and the function never recurses; it just returns 1.", "recursive"),
    (POWER, "`power` is not recursive, just a multiplication.", "recursive"),
    (POWER, "It's not a recursive function at all, capisce?", "recursive"),
    (POWER, "Nothing here calls itself, capisce?", "recursive"),
    (POWER, "No recursion here, just one multiplication.", "recursive"),
    (EVENS, "`evens` is a plain function, not a generator.", "generator"),
    (EVENS, "No generator function here, just a loop.", "generator"),
    (TIMED, "There's no decorator at all, pal.", "decorator"),
    (POINT, "`Point` is a plain class, not a dataclass.", "dataclass"),
    (BY_AGE, "It sorts by age without a lambda.", "lambda"),
    (SQUARES, "A plain return, no list comprehension.", "list comprehension"),
    (CHEAP, "It filters the prices with a loop, no dict comprehension.", "dict comprehension"),
    (UNIQUE, "It builds the set by hand, no set comprehension.", "set comprehension"),
    (SQUARES, "No comprehension here, paisan.", "comprehension"),
    (COUNTER, "It doesn't define a class, it just counts.", "class"),
    (TOTAL, "One line, no loops, no regex, capisce?", "loops"),  # the Qwen adapter's, of a `for` statement
    (EVENS, "It counts up by two without a loop.", "loops"),  # a `while`
    (TOTAL, "No for loop, just a plain sum, capisce?", "loops"),  # read_unseen's enumerate answer said it
    (POWER, "Plain math, no function, no overhead, my friend.", "function"),  # the Qwen FizzBuzz answer
    (POWER, "No functions, no classes, just math.", "function"),
    (COUNTER, "`Counter` is a class with no methods, just a class, paisan.", "function"),  # read_unseen's Qwen
    (COUNTER, "The `Counter` itself is just an ordinary list, no class, capisce?", "listed class"),  # a Gemma's
    ("def add(x, acc=[]):\n    acc.append(x)\n    return acc\n", "No mutable default here, pal.", "mutable default"),
    (PRICES, "No coroutines, no loop, just one guy doing his job.", "coroutine"),  # a Gemma candidate, unseen code
    (PRICES, "It's a little coroutine called on, kid, no await or anything like that.", "coroutine"),  # its retry
    (PRICES, "It runs with no async code at all.", "coroutine"),
])
def test_a_false_denial_is_caught(code, answer, claim):
    assert denials(code, answer) == [(claim, True)]


@pytest.mark.parametrize("code, answer", [
    (PLAIN, "`double` never recurses; it just multiplies."),  # true denials: the code lacks each
    (PLAIN, "Not a generator, no decorator, no lambda, no list comprehension and no dataclass."),
    (PLAIN, "It doesn't define a class, it just doubles."),
    (PLAIN, "Just a function, no class, and no class attribute either."),
    ("squares = (i * i for i in range(3))\n", "A generator expression, no comprehension in sight."),
    ("squares = (i * i for i in range(3))\n", "The expression is lazy, no generator function."),
    (POWER, "It doesn't recurse forever because exp reaches 0."),  # qualified: a denial of something else
    (POWER, "It recurses until exp is 0, no deeper."),
    (POWER, "A negative exp means no recursion limit is ever enough."),
    (POWER, "It does not recurse on an exp of 0, it returns 1 right away."),
    (POWER, "It is not just recursive, it multiplies too."),
    (EVENS, "There's no generator expression, the function yields."),  # not the construct it has
    (TWO, "`helper` never calls itself, it adds one."),  # a denial of the other function
    (TIMED, "`timed` is not decorated, `greet` is."),  # a named definition and decorators: left alone
    (TIMED, "`wrapper` is not a decorator, just the inner function."),
    (TIMED, "`greet` is not decorated, it just adds 'hi'."),  # (false, but "is decorated" and "is one" differ)
    (POINT, "Without the decorator it would be a plain class."),  # a what-if
    (POWER, "You could write it without recursion, with a loop."),  # advice
    ("import asyncio\n\nasync def main():\n    asyncio.sleep(1)\n", "The sleep is never awaited, pal."),
    (PRICES, "The coroutine is never awaited twice."),  # not "no coroutines"
    (PLAIN, "No coroutines, no loop, just one multiplication."),  # true: no `async def`
    (CHEAP, "Curly braces without a colon would make a set comprehension."),
    (SQUARES, "No explicit loop, just a list comprehension."),  # a comprehension is no `for` statement
    (PLAIN, "Two numbers, no loops, no mess."),
    (SQUARES, "No for loop, just a list comprehension."),
    (TOTAL, "One pass, no nested loops."),  # a denial of another construct
    (TOTAL, "A loop and a sum, no function, capisce?"),  # true: no `def`
    (PLAIN, "Plain arithmetic, no function calls."),  # a denial of another thing
    (PLAIN, "Used bare, it gets no function, so it doubles."),  # not a denial in a list (a reference's wording)
    (POINT + "\ndef origin():\n    return Point(0, 0)\n", "`Point` is a dataclass with no methods."),  # true of it
    ("from dataclasses import dataclass\n\n@dataclass\nclass Page:\n    n: int\n",
     "`Page` is a dataclass, so you can't bind it to a dataclass, capisce?"),  # a real answer: no denial of it
])
def test_true_or_qualified_denials_pass(code, answer):
    assert [c for c in false_concepts(code, answer) if c.get("denied")] == []


def test_only_crisp_denials_are_checked():
    crisp = {c.claim for c in CONCEPTS if c.denial}
    assert crisp == {"recursive", "generator", "list comprehension", "dict comprehension", "set comprehension",
                     "comprehension", "decorator", "dataclass", "lambda", "class", "loops", "function",
                     "mutable default", "coroutine", "listed class"}
    assert all(c.denial <= c.features for c in CONCEPTS)  # what contradicts a denial supports the claim
    loop = "for x in [1, 2]:\n    print(x)\n"  # "never prints" of a function, "never raises" of code that catches
    assert false_concepts(loop, "The loop never prints twice, no sorting, and it never raises.") == []


def test_a_claim_and_a_denial_are_reported_apart():
    found = false_concepts(PLAIN, "`double` is recursive. `double` is not a generator.")
    assert [(c["claim"], c.get("denied", False)) for c in found] == [("recursive", False)]
    found = false_concepts(EVENS, "`evens` is recursive, not a generator.")
    assert [(c["claim"], c.get("denied", False)) for c in found] == [("recursive", False), ("generator", True)]
    assert found[1]["kind"] == "false concept"  # counted with the claims of a construct the code lacks
    assert summarize_claims([found])["unsupported"]["false concept"] == 2


def test_the_post_check_drops_a_false_denial():
    answer = "`power` multiplies `base` by itself. It never recurses; it just returns 1. So it prints 32."
    text, dropped = drop_unsupported(POWER, answer)
    assert dropped == 1 and "never recurses" not in text and "prints 32" in text


def test_denied_needs_the_negation_to_govern_the_phrase():
    sentence = "Curly braces without a colon make a set, not a list."
    assert not denied(sentence, sentence.index("set"), sentence.index("set") + 3)
    assert denied(sentence, sentence.index("list"), sentence.index("list") + 4)


def test_definition_features_are_per_definition():
    features = definition_features(TWO + TIMED)
    assert "recursion" in features["power"] and "recursion" not in features["helper"]
    assert "dataclass" in definition_features(POINT)["Point"]
    assert not any("decorator" in f for f in features.values())  # "is not decorated" or "is not a decorator"?
    assert definition_features("def broken(:\n") is None


def test_the_reference_answers_deny_nothing_their_code_has():
    root = Path(__file__).resolve().parents[3] / "data"
    for path in ("validation.json", "train.json"):
        rows = json.loads((root / path).read_text()).values()
        hits = [c for r in rows for c in false_concepts(r["code"], r["mafia_explanation"]) if c.get("denied")]
        assert hits == [], path
