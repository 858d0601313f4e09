"""Exceptions the code cannot raise (core/claims/exceptions.py): a planted "would raise" of each checked kind is
caught, and what the code may raise, a denial, or code whose exceptions are out of sight passes."""

import pytest

from mafioso.core.claims import impossible_exceptions, static_claims
from mafioso.core.claims.exceptions import raisable

CHEAP = "prices = {'apple': 1.2, 'pear': 0.8}\ncheap = {k: v for k, v in prices.items() if v < 1}\nprint(cheap)\n"
COUNTDOWN = "def launch(n):\n    while n > 0:\n        print(n)\n        n -= 1\n    print('Liftoff')\n\nlaunch(3)\n"


def claims(found):
    return [claim["claim"] for claim in found]


@pytest.mark.parametrize("code, answer, claim", [
    # read by hand as false (the Qwen adapter and Gemma, bench/read_unseen.py)
    (CHEAP, "The second line would raise a `KeyError` for a fruit that's exactly 1.2.", "raises KeyError"),
    (COUNTDOWN, "The loop keeps going until `n` is zero or below, which would raise `ValueError`.",
     "raises ValueError"),
    (COUNTDOWN, "A zero would land in an IndexError, pal.", "raises IndexError"),
    ("def bump(total, step):\n    return total + step\n", "A zero step raises ZeroDivisionError.",
     "raises ZeroDivisionError"),
    ("def greet(name):\n    return 'hi ' + name\n", "It reads the file, or raises FileNotFoundError.",
     "raises FileNotFoundError"),
    ("def double(n):\n    return n * 2\n", "A big `n` blows the stack with a RecursionError.", "raises RecursionError"),
])
def test_an_exception_nothing_in_the_code_raises_is_a_false_claim(code, answer, claim):
    assert claims(impossible_exceptions(code, answer)) == [claim]
    assert claim in claims(static_claims(code, answer))  # the post-check's and eval's reading


@pytest.mark.parametrize("code, answer", [
    (CHEAP, "A set never raises a `KeyError`, pal."),  # a denial
    (CHEAP, "It returns a dict instead of raising `KeyError`."),
    ("d = {'a': 1}\nprint(d['b'])\n", "The lookup raises `KeyError`."),  # a subscript may
    ("counts = {}\ncounts['a'] += 1\n", "It raises KeyError: the key was never set."),  # read before it is set
    ("print(int('x'))\n", "`int` raises ValueError on 'x'."),
    ("a, b = [1, 2, 3]\n", "Too many values: ValueError."),  # unpacking
    ("print(10 / 0)\n", "It raises ZeroDivisionError."),
    ("print(0 ** -1)\n", "ZeroDivisionError, boss."),
    ("def gen():\n    yield 1\n", "After the yield the generator raises StopIteration."),
    ("from dataclasses import dataclass\n\n@dataclass\nclass Crew:\n    names: list = []\n",
     "A list default is refused with a `ValueError`."),
    ("class T:\n    @property\n    def temp(self):\n        return self.temp\n",
     "Reading `temp` ends in RecursionError."),
    ("try:\n    x = {}['a']\nexcept KeyError:\n    x = 0\n", "The KeyError is caught."),
    ("import requests\nrequests.get('http://x')\n", "It raises ValueError on a bad URL."),  # a library
    ("def f(x):\n    raise MyError(x)\n", "It raises ValueError."),  # a raise of its own
    ("def f(x):\n    return helper(x)\n", "It raises KeyError."),  # a call nobody here defines
    ("def broken(:\n", "It raises KeyError."),  # does not parse
    ("def double(n):\n    return n * 2\n", "Passing a string raises TypeError."),  # not a checked kind
])
def test_what_the_code_may_raise_or_cannot_be_seen_passes(code, answer):
    assert impossible_exceptions(code, answer) == []


def test_raisable_reads_what_may_raise_and_gives_up_out_of_sight():
    assert raisable("xs = [1]\nprint(xs.pop())\n") == {"KeyError", "IndexError"}
    assert raisable("print(len('abc'))\n") == frozenset()
    assert raisable("import numpy\n") is None
