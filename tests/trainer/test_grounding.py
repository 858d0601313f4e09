"""The ``grounded`` check: each kind of unsupported claim is caught, true claims and denials pass, and the
sandbox that runs dataset snippets stops what it must."""

import json
import re
import time
from pathlib import Path

import pytest

from tests.helpers import write_dataset
from mafioso.trainer import grounding
from mafioso.trainer.grounding.__main__ import main as score_references
from mafioso.trainer.grounding import false_concepts, false_outputs, invented_names, summarize_claims, unsupported_claims
from mafioso.trainer.sandbox import SnippetRunner, isolation, run_snippet

LOOP = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n\nprint(total([1, 2, 3]))\n"
PLAIN = "def double(n):\n    return n * 2\n"
RECURSIVE = "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n"
GENERATOR = "def count_up(n):\n    i = 0\n    while i < n:\n        yield i\n        i += 1\n"
STACK = "plates = ['red', 'blue']\nright = plates.pop()\nleft = plates.pop()\n"
HIT = "from dataclasses import dataclass\n\n@dataclass\nclass Hit:\n    name: str\n"
FIZZBUZZ = ("def fizzbuzz(n):\n    for i in range(1, n + 1):\n        if i % 15 == 0:\n            print('FizzBuzz')\n"
            "        elif i % 3 == 0:\n            print('Fizz')\n        else:\n            print(i)\n")


def claims(found):
    return [(c["kind"], c["claim"]) for c in found]


# ------------------------------------------------------------------------------------------ names


def test_an_invented_backticked_name_is_caught():
    assert claims(invented_names(LOOP, "`total` adds up `xs` with `accumulate_all`, pal.")) == [
        ("invented name", "accumulate_all")]


def test_dotted_names_need_the_full_text_or_an_attribute_the_code_has():
    code = "import asyncio\n\nasync def main():\n    await asyncio.sleep(1)\n\nasyncio.run(main())\n"
    assert claims(invented_names(code, "It calls `asyncio.get` and then `asyncio.sleep`.")) == [
        ("invented name", "asyncio.get")]
    assert claims(invented_names(code, "Then asyncio.gather waits.")) == [("invented name", "asyncio.gather")]
    crew = "class Crew:\n    def __init__(self):\n        self.members = []\n"
    assert invented_names(crew, "`self.members` starts empty and `Crew` holds it.") == []


def test_a_builtin_function_is_a_name_but_types_exceptions_and_keywords_describe():
    assert claims(invented_names(PLAIN, "`double` calls `len` on `n`.")) == [("invented name", "len")]
    assert invented_names(PLAIN, "`double` takes an `int` and returns `None` never; a `TypeError` for "
                                 "strings? No, `for` and `return` are keywords.") == []


def test_an_underscore_the_code_never_binds_is_invented():
    """"the dict's `_` key" (the shipped Gemma, unseen code): `_` is a soft keyword only in a match's wildcard."""
    census = "counts = {}\nfor ch in 'abca':\n    counts[ch] = counts.get(ch, 0) + 1\n"
    assert claims(invented_names(census, "It walks `counts` with `get`, and the dict's `_` key.")) == [
        ("invented name", "_")]
    assert invented_names("for _ in range(3):\n    print('hi')\n", "The loop throws its number into `_`.") == []
    assert invented_names("match cmd:\n    case _:\n        pass\n", "The `_` case catches the rest.") == []


def test_python_s_special_names_describe_but_an_invented_dunder_is_caught():
    crew = "class Crew:\n    def __init__(self):\n        self.members = []\n"
    assert invented_names(crew, "Define `__eq__` and `__hash__` together; `__enter__` needs `__exit__`.") == []
    assert invented_names(crew, "A dataclass would write `__init__` and `__post_init__` runs after it.") == []
    # the shipped Gemma's, in read_unseen and in eval (`__borrow__`, `__setter__`, `__super__`)
    assert claims(invented_names(crew, "Then `__property__` swaps the old one for the new one.")) == [
        ("invented name", "__property__")]


def test_prose_names_count_only_when_they_look_like_code():
    assert claims(invented_names(PLAIN, "It calls get_total() on n.")) == [("invented name", "get_total")]
    assert claims(invented_names(PLAIN, "A function named triple does the work.")) == [
        ("invented name", "triple")]
    assert invented_names(PLAIN, "The main function doubles the item(s), e.g. 2 becomes 4.") == []


def test_standard_types_of_imported_modules_and_printed_words_are_not_invented():
    code = "from datetime import date\nprint((date(2024, 3, 1) - date(2024, 2, 1)).days)\n"
    assert invented_names(code, "Subtracting two dates gives a `timedelta`; it prints 29.", "29\n") == []
    shout = "print('al'.upper())\n"
    assert invented_names(shout, "It prints `AL`.", "AL\n") == []
    assert claims(invented_names(shout, "It prints `AL`.")) == [("invented name", "AL")]  # output unknown


def test_advice_and_denials_do_not_present_names():
    assert invented_names(LOOP, "The builtin `sum` would do the same job.") == []
    assert invented_names(LOOP, "Use `sum` instead, kid.") == []
    assert invented_names(LOOP, "There's no `reduce` here, pal.") == []


# --------------------------------------------------------------------------------------- concepts


@pytest.mark.parametrize("code, answer, claim", [
    (LOOP, "`total` is a recursive function that adds the list.", "recursive"),
    (LOOP, "The base case says an empty list gives 0.", "recursive"),
    (PLAIN, "`double` is a generator that hands back twice `n`.", "generator"),
    (PLAIN, "A list comprehension doubles `n`.", "list comprehension"),
    (GENERATOR, "`count_up` is a generator expression that yields each number.", "generator expression"),
    (PLAIN, "The decorator wraps `double`.", "decorator"),
    (PLAIN, "It awaits the result asynchronously.", "async"),
    (PLAIN, "A lambda does the doubling.", "lambda"),
    (PLAIN, "It defines a class for the doubling.", "class"),
    (PLAIN, "So it prints 42.", "prints"),
    (PLAIN, "It raises a ValueError for strings.", "raises"),
    (PLAIN, "It loops over `n`.", "loops"),
    (PLAIN, "It sorts the numbers first.", "sorts"),
    (LOOP, "`total` loops forever, so it never gets close to zero.", "loops forever"),
    (LOOP, "An infinite loop walks `xs`.", "loops forever"),
    (LOOP, "`total` is a nested loop over `xs`.", "nested loop"),
    (PLAIN, "It reads the ledger file.", "reads a file"),
    (LOOP, "`total` walks the Fibonacci numbers in `xs`.", "fibonacci"),
    (LOOP, "`total` is a one-liner that adds `xs`.", "one-liner"),  # a four-line function
    (LOOP, "`total` is a one-line version of a sum.", "one-liner"),
    # the shipped Gemma on unseen code: one comprehension over a zip, a class whose methods take no defaults
    ("grid = [[1, 2]]\nflipped = [list(row) for row in zip(*grid)]\n", "`flipped` is a nested list comprehension.",
     "nested comprehension"),
    ("class Counter:\n    def __init__(self):\n        self.n = 0\n", "`Counter` is a mutable default argument.",
     "mutable default"),
    ("def add(x):\n    return [x]\n", "A mutable default means the list is shared, capisce?", "mutable default"),
    # the Qwen adapter on unseen code: a second print of one print of one value, an error caught with no try
    ("oven = 100\nprint(oven * 9 / 5 + 32)\n", "The first print shows 212, and the second shows it rounded.",
     "several prints"),
    ("oven = 100\nprint(oven)\n", "It prints twice, boss.", "several prints"),
    ("import os\n\ndef biggest(d):\n    return max(os.listdir(d), key=len)\n",
     "An empty folder gives ValueError, which the function catches.", "catches"),
    ("import os\n\ndef biggest(d):\n    return max(os.listdir(d), key=len)\n",
     "It catches the OSError of a missing folder.", "catches"),
    # a Gemma candidate on unseen code: a catch named by the class, a division in code that only multiplies
    ("class Counter:\n    def bump(self):\n        self.n += 1\n        return self.n\n",
     "The second call raises `TypeError`, which the `Counter` catches.", "catches"),
    ("def power(b, e):\n    return 1 if e == 0 else b * power(b, e - 1)\n",
     "It does this by dividing by the base, so 2 becomes 5.", "divides"),
    # "instead" after what the code is said to do is a contrast, not advice (the Qwen adapter, unseen code)
    ("import os\n\ndef biggest(d):\n    return max(os.listdir(d), key=len)\n",
     "An empty folder gives OSError, which the function catches and returns None instead.", "catches"),
    (PLAIN, "This isn't Python, boss, it's pseudo-code.", "not python"),
    ("from typing import Literal\nMode = Literal['r', 'w']\n", "A `Literal` here is no Python, so it never runs.",
     "not python"),
    # Python's own facts, false of any code
    (PLAIN, "A dict is immutable, so you can't change it.", "immutable container"),
    (PLAIN, "Tuples are mutable, so `n` can grow.", "mutable tuple or string"),
    (PLAIN, "A set keeps the order of its first appearance.", "ordered set"),
    ("d = {'y': 1}\nprint(d)\n", "It shows the dict, keys first, because dictionaries are unordered.",
     "unordered dict"),
    (PLAIN, "A dict's order is not guaranteed, pal.", "unordered dict"),
    (PLAIN, "The plus quantifier means zero or more digits.", "regex quantifier"),
    (PLAIN, "The `*` means one or more spaces.", "regex quantifier"),
    # what a named call or decorator does (the Qwen adapter, unseen code): a list's pop() takes the last item, a
    # dataclass is frozen only when it says so
    (STACK, "`pop` takes and returns the first one off.", "pop takes the first"),
    (STACK, "It pops the front plate off the list.", "pop takes the first"),
    (HIT, "@dataclass writes the Hit class so you can't change it.", "frozen dataclass"),
    (HIT, "`Hit` is a frozen dataclass.", "frozen dataclass"),
    (FIZZBUZZ, "A three-layer loop, the classic fizzbuzz, boss.", "nested loop"),
    (LOOP, "The inner loop adds each of `xs`.", "nested loop"),
    ("crew = {'sonny': 1, 'fredo': 2}\nfor name in crew:\n    print(name)\n",
     "The names come out sorted alphabetically, so fredo goes first.", "sorts"),
    # one print that runs once writes one line (the Qwen adapter, unseen code)
    ("import re\nprint(re.findall(r'\\w+@\\w+', 'a@b c@d'))\n", "It prints each one on its own line.", "several lines"),
    ("evens = [0, 2, 4, 6]\nprint(evens)\n", "So the print shows the even numbers, one per line.", "several lines"),
    # bench/read_unseen.py's second twenty (Gemma, Qwen): a running sum "multiplied", numbers "in alphabetical
    # order", a try with only a finally that "catches", a while loop "calling itself"
    ("def take(values):\n    total = 0\n    for v in values:\n        total += v\n        yield total\n",
     "`take` takes each value of `values`, multiplies it by `v`, and yields the total.", "multiplies"),
    ("payoffs = [5, 3, 8, 1]\npayoffs.sort(reverse=True)\n", "`sort` puts the payoffs in alphabetical order.",
     "alphabetical"),
    ("def read_config(path):\n    handle = open(path)\n    try:\n        return handle.read()\n    finally:\n"
     "        handle.close()\n", "The `try` catches the FileNotFoundError, boss.", "catches"),
    ("def cut(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n",
     "It keeps calling itself until `b` runs out.", "recursive"),
])
def test_a_false_concept_is_caught(code, answer, claim):
    assert claims(false_concepts(code, answer)) == [("false concept", claim)]


@pytest.mark.parametrize("code, answer", [
    (RECURSIVE, "`fact` is recursive: it calls itself until `n` drops below 2."),
    (RECURSIVE, "`n` below 2 is the base case."),
    ("while True:\n    print(1)\n", "It loops forever, printing 1."),
    ("import itertools\nfor i in itertools.count():\n    print(i)\n", "An endless count, pal."),
    (LOOP, "`total` never loops forever: `xs` runs out."),  # a denial of what the code lacks is true
    (LOOP, "One pass, no nested loops."),
    ("grid = [[0] * 3 for _ in range(3)]\nfor row in grid:\n    for cell in row:\n        print(cell)\n",
     "A nested loop prints every cell."),
    ("pairs = [(a, b) for a in 'xy' for b in 'uv']\n", "A list comprehension with a nested loop over both."),
    (GENERATOR, "`count_up` is a generator: a loop that yields each number."),
    ("squares = (x * x for x in range(5))\n", "A generator expression that loops over five numbers."),
    ("ok = all(x > 0 for x in [1, 2])\n", "`all` walks a generator expression, no list is built."),
    ("names = [n.upper() for n in ['al']]\n", "A list comprehension loops over the names."),
    (LOOP, "`total` loops over `xs` and prints 6."),
    ("xs = [3, 1, 2]\nxs.sort()\n", "It sorts `xs` in place."),
    ("def bubble(a):\n    a[0], a[1] = a[1], a[0]\n", "It sorts by swapping neighbours."),  # a hand-written sort
    ("import logging\nlogging.warning('x')\n", "It prints a warning."),  # true by the output, below
    ("from collections import Counter\nc = Counter('aab')\n", "`Counter` is a class that tallies letters."),
    ("def steps(n):\n    return 1 if n < 2 else steps(n - 1) + steps(n - 2)\n", "The Fibonacci recurrence, kid."),
    ("a, b = 0, 1\nfor _ in range(5):\n    a, b = b, a + b\n", "It steps through Fibonacci numbers."),
    ("xs = [0, 1]\nwhile len(xs) < 9:\n    xs.append(xs[-1] + xs[-2])\n", "Fibonacci numbers, built in a list."),
    ("def fib_table(n):\n    return n\n", "A Fibonacci table, in name at least."),
    (PLAIN, "`double` is a one-liner."),  # a body of one line
    (PLAIN, "`double` is a one-line function."),
    ("def tens(score):\n    \"\"\"The tens.\"\"\"\n    return score // 10\n\n\nprint(tens(95))\nprint(tens(5))\n",
     "`tens` is a one-liner with a docstring."),  # a body of one line after its docstring
    ("xs = [1, 2]\nprint(sum(x * x for x in xs))\n", "A one-liner sums the squares."),
    ("m = [[1, 2]]\nflat = [x for row in m for x in row]\n", "`flat` is a nested list comprehension."),
    ("m = [[1, 2]]\nt = [[r[i] for r in m] for i in range(2)]\n", "A nested comprehension flips `m`."),
    ("def add(x, acc=[]):\n    acc.append(x)\n    return acc\n", "`acc` is a mutable default, shared by calls."),
    ("def add(x, seen=set()):\n    return seen\n", "A mutable default set, kid."),
    ("def add(x, acc=None):\n    return [x]\n", "Defaulting `acc` to None dodges the mutable default trap."),
    ("def add(x, acc=None):\n    return [x]\n", "Same trap as a mutable default list, avoided."),
    ("def add(x, acc=None):\n    return acc or [x]\n", "`acc=None` dodges the mutable default, pal."),
    ("from dataclasses import dataclass, field\n\n@dataclass\nclass Crew:\n    names: list = "
     "field(default_factory=list)\n", "`default_factory` keeps clear of a mutable default."),
    ("print(1, 2)\n", "The first print shows 1 and the second shows 2."),  # one print, two values
    (PLAIN, "Strings are immutable and lists are mutable; a dict isn't immutable and a set is unordered."),
    ("for n in (1, 2):\n    print(n)\n", "The second print shows 2."),
    ("def show(x):\n    print(x)\n\nshow(1)\nshow(2)\n", "It prints twice, once per call."),
    ("print(1)\nprint(2)\n", "Both prints run, the second print shows 2."),
    ("x = 1\nprint(x)\n", "Both print on one line? No: one value."),  # "print" a verb
    ("def f(d):\n    try:\n        return d['k']\n    except KeyError:\n        return 0\n", "It catches KeyError."),
    ("import os\n\ndef biggest(d):\n    return max(os.listdir(d), key=len)\n",
     "Nothing catches the ValueError of an empty folder."),
    ("match cmd:\n    case 'go':\n        pass\n    case _:\n        pass\n", "The `_` case catches everything else."),
    ("def f(d):\n    try:\n        return d['k']\n    except KeyError:\n        return 0\n",
     "A missing key raises `KeyError`, which the `f` catches."),
    ("def half(n):\n    return n / 2\n", "It divides `n` by two."),
    ("def parity(n):\n    return n % 2\n", "It divides by two and keeps the remainder."),
    ("import statistics\nprint(statistics.mean([1, 2]))\n", "The mean adds them and divides by the count."),
    (PLAIN, "It never divides by zero: it only multiplies."),  # a denial
    ("def settle(*amounts, tip=0):\n    return sum(amounts) + tip\n", "It multiplies nothing, it adds."),
    ("print(f'{0.25:.0%}')\n", "The percent format multiplies the ratio by 100."),
    ("names = ['sal', 'al']\nnames.sort()\n", "It sorts the names in alphabetical order."),
    (RECURSIVE, "`fact` keeps calling itself until `n` drops below 2."),
    ("name: tests\nversion: 3\n", "That's YAML, not Python, pal."),  # parses as two annotations
    (PLAIN, "Build a new list with a comprehension instead."),  # advice (a reference's), an imperative
    (PLAIN, "A comprehension would do it instead, or a lambda."),
    ("SELECT name FROM crew;\n", "This isn't Python, it's SQL."),  # does not parse: never read
    ("print('hi')\n", "Python 3, not Python 2, and nothing here is Python-specific, not Python-only either."),
    ("print('hi')\n", "If the input is not Python, say so."),  # the instruction, echoed by a bare base: a condition
    ("note = '{\"a\": 1}'\n", "The text inside `note` is plain text, not Python code."),  # said of a string
    ("def f(xs):\n    for x in xs:\n        return x\n",
     "It runs once per call, so nobody gets stuck in an infinite loop."),
    (PLAIN, "A set is unordered; a dict keeps insertion order, and dictionaries are not unordered any more."),
    (PLAIN, "The plus means one or more digits, the star zero or more, the question mark zero or one."),
    (STACK, "`pop` takes the last one off, so it pops `right` first, then `left`."),
    ("queue = [1, 2]\nprint(queue.pop(0))\n", "`pop` takes the first one off."),
    ("from collections import deque\nq = deque([1])\nq.popleft()\n", "`popleft` takes the first one off the front."),
    (HIT.replace("@dataclass", "@dataclass(frozen=True)"), "`Hit` is a frozen dataclass: you can't change it."),
    (HIT, "`Hit` is a dataclass, not frozen, so you can change `name`."),
    ("grid = [[1, 2]]\nfor row in grid:\n    for cell in row:\n        print(cell)\n",
     "The outer loop takes each row, the inner loop each cell: a two-level loop."),
    ("import pandas as pd\ndf = pd.DataFrame({'city': ['b', 'a'], 't': [1, 2]})\nprint(df.groupby('city').t.mean())\n",
     "It prints one average per city, sorted alphabetically."),  # groupby sorts its keys
    (LOOP, "It prints the total on one line."),  # one print, one line
    ("for n in [1, 2]:\n    print(n)\n", "It prints each number on its own line."),  # a print in a loop
    ("print('a')\nprint('b')\n", "It prints two lines, one per print."),
    ("print(*[1, 2], sep='\\n')\n", "It prints one per line."),  # sep= puts breaks in one print
    ("print('a\\nb')\n", "It prints two lines."),  # a line break in the literal
    ("import numpy as np\nprint(np.eye(2))\n", "It prints the matrix, one row per line."),  # a library's value
    ("import textwrap\nprint(textwrap.fill('a b c', 2))\n", "It prints the words one per line."),  # wrapped text
    ("class P:\n    def __str__(self):\n        return 'x'\n\nprint(P())\n", "It shows it line by line."),
    ("total = 3\nprint(total)\n", "It never prints one per line: one value, one line."),  # a denial
])
def test_a_true_concept_passes(code, answer):
    output = "WARNING:root:x\n" if "logging" in code else None
    assert false_concepts(code, answer, output) == []


@pytest.mark.parametrize("answer", [
    "It is not recursive, just a multiplication.",
    "No loop here, kid.",
    "It never prints anything; it returns.",
    "It hands back twice `n` without a decorator.",
    "A plain return instead of a generator.",
    "`double` doesn't use recursion, it just multiplies.",
    "There's no sorting and nothing gets printed.",
    "A loop would be overkill here.",  # advice, not a claim
    "The `sort_key` and the `is_recursive` names are just names.",  # words inside backticks are names
])
def test_a_denial_or_advice_is_not_a_claim(answer):
    assert false_concepts(PLAIN, answer) == []


def test_concepts_are_not_checked_on_code_that_does_not_parse():
    assert false_concepts("def broken(:\n    pass", "A recursive generator with a decorator.") == []


def test_every_concept_row_names_real_features():
    from mafioso.prompts.facts import FEATURES

    assert all(concept.features <= FEATURES for concept in grounding.CONCEPTS)
    assert len({concept.claim for concept in grounding.CONCEPTS}) == len(grounding.CONCEPTS)


# ---------------------------------------------------------------------------------------- outputs


def test_a_printed_value_must_be_in_the_real_output():
    assert claims(false_outputs("So it prints 5, capisce?", "6\n")) == [("false output", "5")]
    assert false_outputs("So it prints 6, capisce?", "6\n") == []
    assert claims(false_outputs("It prints 'Hello, Vito' and then 'bye'.", "Hello,  Vito\nciao\n")) == [
        ("false output", "bye")]
    assert false_outputs('It shows ["al", "vito"] and True.', "['al', 'vito']\nTrue\n") == []
    assert false_outputs("It prints 3.14 and 1,000 and -1.", "3.14159\n1000\n-1\n") == []


def test_output_claims_are_skipped_when_the_output_is_unknown_or_the_value_is_not_printed():
    assert false_outputs("It prints 42.", None) == []
    assert false_outputs("It prints 'a', and 'b' falls through to 'c'.", "a\nc\n") == []  # 'b' is an input
    assert false_outputs("It prints 6 times 7.", "42\n") == []  # an expression, not a value
    assert false_outputs("It would print 9 if you passed 3.", "4\n") == []  # a what-if
    assert false_outputs("So you get 25.", "") == []  # a value, never printed: not an output claim


def test_unrepeatable_snippets_have_no_output_check():
    code = "import random\nprint(random.randint(1, 6))\n"
    assert unsupported_claims(code, "It prints 4.", "2\n") == []
    seeded = "import random\nrandom.seed(1)\nprint(random.randint(1, 6))\n"
    assert claims(unsupported_claims(seeded, "It prints 4.", "2\n")) == [("false output", "4")]


def test_a_claim_of_printing_with_no_print_in_the_code_is_caught_twice():
    found = unsupported_claims("x = 6 * 7\n", "So it prints 42.", "")
    assert claims(found) == [("false concept", "prints"), ("false output", "42")]


def test_the_summary_counts_answers_and_kinds():
    summary = summarize_claims([[], [{"kind": "false concept"}, {"kind": "false output"}], None, []])
    assert summary == {"grounded": pytest.approx(2 / 3), "grounded_samples": 3,
                       "unsupported": {"invented name": 0, "false concept": 1, "false role": 0, "false output": 1,
                                       "no answer": 0}}
    assert summarize_claims([None])["grounded"] is None


def test_long_malformed_answers_are_checked_in_linear_time():
    answer = ("`unclosed " + "word " * 2000 + "prints '" + "a" * 5000 + " recursion(" * 500) * 3
    started = time.perf_counter()
    unsupported_claims(LOOP, answer, "6\n")
    assert time.perf_counter() - started < 2


# ---------------------------------------------------------------------------------------- sandbox


def test_a_snippet_prints_and_fails_as_it_would():
    assert run_snippet("print(6 * 7)").output == "42\n"
    failed = run_snippet("{}['missing']")
    assert failed.output is None and failed.raised == "KeyError"
    assert run_snippet("input()").output is None  # stdin is closed
    assert run_snippet("import no_such_package_here").output is None


def test_the_sandbox_kills_an_infinite_loop_and_a_memory_bomb_quickly():
    started = time.perf_counter()
    looped = run_snippet("while True:\n    pass\n", time_limit_s=1)
    assert looped.output is None and looped.reason == "timeout"
    assert time.perf_counter() - started < 3
    started = time.perf_counter()
    bomb = run_snippet("x = bytearray(8 * 1024 ** 3)\nprint('allocated')\n")
    assert bomb.output is None and time.perf_counter() - started < 3


def test_the_snippet_runs_in_an_empty_folder_with_a_minimal_environment(tmp_path):
    out = run_snippet("import os\nprint(os.listdir('.'), sorted(os.environ))").output
    assert out.startswith("[] ") and "MAFIOSO" not in out and "PYTHONPATH" not in out


@pytest.mark.skipif(isolation() == "none", reason="unshare -rn does not work on this machine")
def test_a_snippet_cannot_reach_the_network():
    run = run_snippet("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\nprint('reached')")
    assert run.output is None and run.raised == "OSError"


@pytest.mark.skipif("-rnp" not in isolation(), reason="no process namespace on this machine")
def test_nothing_a_snippet_starts_outlives_it(tmp_path):
    marker = tmp_path / "daemon-was-here"
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1)\n"
            f"    open({str(marker)!r}, 'w').close()\n    os._exit(0)\nprint('parent done')\n")
    assert run_snippet(code).output == "parent done\n"
    time.sleep(1.5)
    assert not marker.exists()


def test_runs_are_cached_per_code():
    runner = SnippetRunner()
    first = runner.run("print(1)")
    assert runner.run("print(1)") is first and runner.summary()["snippets"] == 1
    assert runner.summary()["runnable"] == 1 and runner.summary()["isolation"] == isolation()


def test_only_the_trainer_runs_snippets():
    # Chat input must never reach the sandbox: nothing in the worker, adapters or CLI imports it; only
    # trainer/evaluate.py, the reference scorer, the bench that re-scores an eval's answers, the bench of
    # twenty held-out snippets of its own, the bench that holds static printed-value flags against runs of the
    # dataset's snippets and the bench that asks what those snippets print do.
    root = Path(__file__).resolve().parents[2]
    imports = re.compile(r"^\s*(?:from mafioso\.trainer\.sandbox import|import mafioso\.trainer\.sandbox|from mafioso\.trainer import sandbox)",
                         re.MULTILINE)
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if imports.search(p.read_text(encoding="utf-8")) and "tests" not in p.parts)
    assert users == ["bench/check_printable.py", "bench/output_quiz.py", "bench/read_unseen.py",
                     "bench/ship_adapter.py", "trainer/evaluate.py", "trainer/grounding/__main__.py"]


# ------------------------------------------------------------------------------- reference scorer


def test_the_reference_scorer_lists_failing_rows(tmp_path, capsys):
    rows = [("explain", "print(2 + 3)", "It adds two and three and prints 5, pal."),
            ("explain", "print(3 + 2)", "A recursive capo: it prints 6, pal.")]
    data = write_dataset(tmp_path / "d.json", rows)
    assert score_references([str(data)]) == 0
    out = capsys.readouterr().out
    assert "grounded 0.500 (1/2)" in out and "-- s1 (ran, output '5\\n')" in out
    assert "false concept: 'recursive'" in out and "false output: '6'" in out and "-- s0" not in out


def test_the_shipped_reference_answers_are_grounded():
    root = Path(__file__).resolve().parents[2]
    from mafioso.trainer.dataset import load_samples

    samples = load_samples([str(root / "data" / "validation.json")])
    per_answer = [unsupported_claims(s.code, s.explanation) for s in samples]  # no run: a fast floor
    assert summarize_claims(per_answer)["grounded"] >= 0.9, json.dumps(
        [c for c in per_answer if c][:5], indent=1)


# ------------------------------------------------------------------------- mafioso.prompts.facts fixes


def test_facts_do_not_take_a_call_on_super_for_recursion():
    from mafioso.prompts.facts import code_features

    assert "recursion" not in code_features("class A(B):\n    def __init__(self):\n        super().__init__()\n")
    assert "recursion" in code_features("class A:\n    def go(self):\n        return self.go()\n")


@pytest.mark.parametrize("code, feature", [
    ("from pathlib import Path\nwith Path('t.json').open('w') as fh:\n    fh.write('1')\n", "file write"),
    ("import gzip\ngzip.open('x.gz', 'wt')\n", "file write"),
    ("import torch\ntorch.save({}, 'm.ckpt')\n", "file write"),
    ("import torch\nstate = torch.load('m.ckpt')\n", "file read"),
])
def test_facts_see_files_opened_by_a_path_or_a_library(code, feature):
    from mafioso.prompts.facts import code_features

    assert feature in code_features(code)


def test_advice_covers_its_clause_to_the_end_of_the_sentence_but_not_the_claims_before_it():
    answer = "`double` is a generator: if you wanted a list, a comprehension would do."
    assert claims(false_concepts(PLAIN, answer)) == [("false concept", "generator")]
    assert invented_names(LOOP, "It adds them up, but the builtin `sum` is the better choice.") == []
    assert invented_names(LOOP, "The fix is a default argument, or using `functools.partial`.") == []
    assert claims(false_outputs("It prints 'could not connect'.", "connected\n")) == [
        ("false output", "could not connect")]  # a quoted 'could' is not a what-if


def test_a_bare_you_get_is_about_values_not_output():
    assert false_outputs("You get 1, 2 and 3 from the range, so it prints 6.", "6\n") == []
    assert claims(false_outputs("So you get 7.", "6\n")) == [("false output", "7")]


def test_an_echoed_facts_sheet_denial_line_is_not_a_claim():
    from mafioso.trainer.grounding import false_concepts

    code = "def total(xs):\n    return sum(xs)\n"
    assert false_concepts(code, "- not in the code: recursion, yield, async/await, files, network") == []
    assert false_concepts(code, "It is recursive, pal.") != []  # the same words outside the line still count


def test_a_pasted_session_is_its_own_record_for_printed_values():
    """Running a ``>>>`` paste only fails on its prompts; what it echoed is what its statements show."""
    session = ">>> words = ['ant', 'bee', 'ant']\n>>> sorted(set(words))\n['ant', 'bee']\n"
    assert unsupported_claims(session, "It shows ['ant', 'bee'], pal.") == []
    [claim] = unsupported_claims(session, "It prints ['ant', 'bee', 'ant'], pal.")
    assert claim["kind"] == "false output"


def test_a_markdown_paste_runs_as_its_code():
    """A fenced snippet (the data's repl-v02) failed on its fence, and its SyntaxError supported "raises"."""
    run = SnippetRunner().run("```python\nprint(2 + 2)\n```")
    assert (run.output, run.raised) == ("4\n", None)
