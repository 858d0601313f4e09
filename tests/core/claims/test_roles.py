"""False roles: "it loops `seen` through `set`" of a name no loop uses, "it calls `base`" of a number the code
only multiplies, "it returns `ZeroDivisionError`" of code that catches it, are flagged; the roles the code gives
its names, denials, advice and unparseable code pass."""

import json
from pathlib import Path

import pytest

from mafioso.core.claim_check import drop_unsupported
from mafioso.core.claims import false_roles, static_claims
from mafioso.prompts.facts import name_roles
from mafioso.trainer.grounding import summarize_claims

POWER = ("def power(base, exp):\n    if exp == 0:\n        return 1\n    return base * power(base, exp - 1)\n\n"
         "print(power(2, 5))\n")
FIRST_DUP = ("def first_duplicate(items):\n    seen = set()\n    for item in items:\n        if item in seen:\n"
             "            return item\n        seen.add(item)\n    return None\n")
RANKED = ("def score(row):\n    return row[1]\n\nrows = [('al', 3), ('vito', 5)]\ntotal = 0\n"
          "best = sorted(rows, key=score)\nnames = [name for name, _ in best]\nshout = lambda s: s.upper()\n")
HANDLER = "import atexit\n\ndef bye(flush):\n    print('bye')\n\ncleanup = bye\natexit.register(cleanup)\n"
APPLY = "def apply(f, x):\n    return f(x)\n\nprint(apply(abs, -3))\n"
FIZZ = ("def fizzbuzz(n):\n    for i in range(1, n + 1):\n        print('Fizz' if i % 3 == 0 else i)\n\n"
        "def check(x):\n    if x < 0:\n        return None\n    print(x)\n\n"
        "def outer():\n    def inner():\n        return 5\n    inner()\n")
ROSTERS = ("teams = ['red', 'blue']\nrosters = dict.fromkeys(teams, [])\nlimit = 3\nlabel = 'crew'\n\n"
           "def mentions_cops(text):\n    return 'cops' in text\n\nclass Crew(dict):\n    size = 0\n")

SAFE_DIV = ("def safe_div(a, b):\n    try:\n        return a / b\n    except ZeroDivisionError:\n"
            "        return None\n\nprint(safe_div(1, 0))\n")
PAIR = ("def total(xs):\n    result = sum(xs)\n    return result\n\ndef label(name):\n    return f'{name}!'\n\n"
        "class Counter:\n    def bump(self):\n        self.n += 1\n        return self.n\n\n"
        "def evens(limit):\n    n = 0\n    while n < limit:\n        yield n\n        n += 2\n")
SQUARES = "def squares_gen(limit):\n    for n in range(limit):\n        yield n * n\n\ngen = squares_gen(4)\n"
RETRY = ("def retry(times):\n    def decorator(func):\n        def wrapper(*args):\n            return func(*args)\n"
         "        return wrapper\n    return decorator\n")
TEST = "def double(x):\n    return 2 * x\n\ndef test_double(expected=4):\n    assert double(2) == expected\n"

# kinds a call makes: a builtin's value, an instance of a plain class, a comparison; what each function returns
KINDS = ("class Oven:\n    def __init__(self, heat):\n        self.heat = heat\n\noven = Oven(100)\n"
         "words = ['ant', 'bee']\nunique = sorted(set(words))\n\n"
         "def merge(a, b):\n    out = dict(a)\n    out.update(b)\n    return out\n\n"
         "def adult(age):\n    if age < 0:\n        return None\n    return age >= 18\n")
# the same words where the code binds `set` itself, subclasses a list, makes a callable, mixes or yields kinds
OWN_KINDS = ("def set(items):\n    return list(items)\n\nclass Stack(list):\n    pass\n\n"
             "class Tally:\n    def __call__(self):\n        return 1\n\ns = Stack()\nt = Tally()\nv = set([1])\n\n"
             "def pick(flag):\n    if flag:\n        return [1]\n    return {1: 2}\n\ndef rows():\n    yield {}\n")

# parameters given one kind by every call of the code's own (a Gemma candidate on unseen code: "`merge` takes a
# list `a`" of dicts, "`letters`, a list of ints" of a string); a default counts for a call that leaves it out
WORD_LENGTHS = "def word_lengths(sentence):\n    return {w: len(w) for w in sentence.split()}\n\nprint(word_lengths('a b'))\n"
CALLED = ("def merge(a, b):\n    out = dict(a)\n    out.update(b)\n    return out\n\n"
          "def census(letters, start=0):\n    return len(letters) + start\n\n"
          "print(merge({'x': 1}, {'y': 2}))\nprint(census('abca'))\nprint(census(letters='ab', start=1))\n")


def roles(code, answer):
    return [c["claim"] for c in false_roles(code, answer)]


@pytest.mark.parametrize("code, answer, claim", [
    (POWER, "It first calls `base` for 0 and returns 1.", "calls base"),
    (POWER, "`power` calls `exp` until it hits zero.", "calls exp"),
    (FIRST_DUP, "It loops `seen` through `set` and returns None for the rest.", "loops with seen"),
    (FIRST_DUP, "The function walks `seen` over the list, kid.", "loops with seen"),
    (RANKED, "Then it iterates `total` across the rows.", "loops with total"),
    (RANKED, "`score` calls `row` and hands back the second item.", "calls row"),
    (HANDLER, "`bye` calls `flush` on its way out.", "calls flush"),
    (FIZZ, "`fizzbuzz` returns the words in a list, capisce?", "fizzbuzz returns a value"),
    (FIZZ, "Then `check` hands back the number.", "check returns a value"),
    (FIZZ, "`outer` returns 5.", "outer returns a value"),  # its inner function's return is not its own
    (ROSTERS, "`teams` is a dict keyed by team name, kid.", "teams is a dict"),
    (ROSTERS, "Because `mentions_cops` is a list, the first print shows it.", "mentions_cops is a list"),
    (ROSTERS, "The nested dict `limit` caps the crew.", "limit is a dict"),
    (ROSTERS, "`Crew` is a function that counts heads.", "Crew is a function"),
    (ROSTERS, "`label` is a number, like the count of the family.", "label is a number"),
    # a name the code has, said to be handed back where no return hands it back
    (SAFE_DIV, "It takes `a` and divides by `b`, so dividing by zero raises `ZeroDivisionError`, which the "
               "function returns instead of returning None.", "returns ZeroDivisionError"),
    (SAFE_DIV, "`safe_div` hands back `ZeroDivisionError` when `b` is zero.", "safe_div returns ZeroDivisionError"),
    (FIRST_DUP, "It returns `seen` once a repeat shows up.", "returns seen"),
    (FIRST_DUP, "`first_duplicate` walks `items` and returns `seen` at the end.", "first_duplicate returns seen"),
    (FIRST_DUP, "It fills `seen`, which the function gives back when it is done.", "returns seen"),
    (PAIR, "`label` returns `xs` with a bang on it.", "label returns xs"),  # `total`'s, not `label`'s
    (TEST, "Here `double` returns `expected` times two.", "double returns expected"),
    # the shipped Gemma on unseen code: "`oven` is a class" of an instance, "`set` returns a dictionary"
    (KINDS, "`oven` is a class with an `__init__` method.", "oven is a class"),
    (KINDS, "`set` returns a dictionary keyed by the word.", "set returns a dictionary"),
    (KINDS, "`unique` is a set of the words, no repeats.", "unique is a set"),
    (KINDS, "`merge` hands back a new list of the keys.", "merge returns a list"),
    (KINDS, "`adult` returns a string, boss.", "adult returns a string"),
    (KINDS, "Because `words` is an int, the loop fails.", "words is a int"),  # the shipped Gemma, of a list
    (KINDS, "`unique` is the set whose keys are the letters.", "unique is a set"),
    (KINDS, "`sorted` puts them in order, so `unique` comes out as a set.", "unique is a set"),  # its retry
    (CALLED, "Here's the deal: `merge` takes a list `a` and a dict `b`.", "a is a list"),
    (CALLED, "`census` takes `letters`, a list of ints, and counts them.", "letters is a list"),
    (CALLED, "`start` is a string of blanks.", "start is a string"),
    (PAIR, "It keeps `n` as a tuple, and the loop uses `yield`.", "n is a tuple"),  # the shipped Gemma, unseen code
    # the shipped Gemma, unseen code: what "then returns" hands back is the lead's, after its opener
    (WORD_LENGTHS, "Listen, kid: `word_lengths` takes a sentence and uses `split`, then returns a list of counts.",
     "word_lengths returns a list"),
    (CALLED, "`merge` copies `a` and returns a new list.", "merge returns a list"),
    # a Gemma candidate, unseen code: a class with no base is no kind of list
    (KINDS, "`Oven` is a plain list, kid, not a dict.", "Oven is a list"),
    # the shipped Gemma, read_unseen's second twenty: an instance called a dataclass
    ("from dataclasses import dataclass\n\n@dataclass\nclass Hit:\n    target: str\n\nthe_hit = Hit('x')\n",
     "`the_hit` is a dataclass that stores a `target`.", "the_hit is a dataclass"),
])
def test_a_planted_false_role_is_flagged(code, answer, claim):
    assert roles(code, answer) == [claim]
    assert summarize_claims([static_claims(code, answer)])["unsupported"]["false role"] == 1


@pytest.mark.parametrize("code, answer", [
    (POWER, "`power` calls `power` again with `exp` minus one, and `print` calls it with 2 and 5."),
    (FIRST_DUP, "It loops `item` over `items` and calls `add` on `seen` for each new one."),
    (FIRST_DUP, "The loop walks `items` from the first to the last."),  # the iterable, not the target
    (RANKED, "`sorted` calls `score` on each row; the comprehension walks `best` through its pairs."),
    (RANKED, "It calls `shout` nowhere, but `shout` is a lambda you could call."),
    (RANKED, "It never calls `total`, and it doesn't loop `total` over anything."),  # denials
    (RANKED, "You could loop `total` over the rows instead."),  # advice
    (HANDLER, "`atexit` calls `cleanup` at exit, which is `bye`."),  # passed to a library: it may call it
    (APPLY, "`apply` calls `f` on `x`, and here `abs` is called on -3."),
    (POWER, "It calls `helper` first."),  # not the code's name at all: invented_names' business
    (FIZZ, "`fizzbuzz` returns nothing, it prints; `check` returns None for a negative `x`."),
    (POWER, "`power` returns `base` times the rest, and `print` shows it."),
    (ROSTERS, "`mentions_cops` returns True when the text names the cops."),
    (ROSTERS, "`teams` is a list, `rosters` is a dict, `limit` is a number and `label` is a string."),
    (ROSTERS, "The function `mentions_cops` checks the text; `Crew` is a dict with a class attribute `size`."),
    (ROSTERS, "`label` is a messy shopping list for the family."),  # "list" is not after a plain adjective
    (ROSTERS, "`size` is a class attribute, one counter for the whole `Crew`."),  # "class" is not the head
    (ROSTERS, "`teams` is not a dict, it is a list."),  # a denial
    (ROSTERS, "`rosters` is a dict, and the dict `rosters` shares one list."),  # a call's result: no kind
    (SAFE_DIV, "It returns `a` divided by `b`, or `None` when `b` is zero."),
    (SAFE_DIV, "It catches `ZeroDivisionError` and returns None instead of returning `ZeroDivisionError`."),
    (SAFE_DIV, "It never returns `ZeroDivisionError`, it catches it."),  # a denial
    (SAFE_DIV, "It would be safer if it returns `ZeroDivisionError` to the caller."),  # advice
    (FIRST_DUP, "It returns `item` the moment it shows up twice, which is what the function returns."),
    (FIRST_DUP, "It returns `None` when nothing repeats, and `True` is never involved."),  # literals
    (FIRST_DUP, "It returns `ghost` at the end."),  # not the code's name: invented_names' business
    (PAIR, "`total` returns `xs` summed up, and `label` hands back `name` with a bang."),  # via `result`
    (PAIR, "`bump` returns `self.n`, and then `bump` returns `n` again."),  # an attribute, by its last part
    (PAIR, "`evens` hands back `n` one even number at a time."),  # a generator yields it
    (SQUARES, "Calling `squares_gen` runs nothing yet; it hands back `gen`, which produces squares."),  # a result
    (RANKED, "The sort returns `names`, and `sorted` returns `total` for all we know."),  # not the code's function
    (RETRY, "`retry` returns `decorator`, which takes `func` and returns `wrapper`."),  # the clause's own subject
    (TEST, "The test checks that `double` returns `expected` for 2."),  # a test's check
    (TEST, "Pull up a chair: `double` is called with 2 and returns `expected`."),  # no subject the rule can tell
    (KINDS, "`Oven` is a class, `unique` is a list, `sorted` returns a list and `set` returns a set."),
    (KINDS, "`merge` returns a dict, `adult` returns a boolean (None below zero), `len` returns a list."),  # no len
    (OWN_KINDS, "`set` returns a list, `s` is a list, `t` is a function and `v` is a list."),
    (OWN_KINDS, "`Stack` is a list with a lid, and `Tally` is a class."),  # a subclass of list
    ("from dataclasses import dataclass\n\n@dataclass\nclass Hit:\n    target: str\n", "`Hit` is a dataclass, kid."),
    (OWN_KINDS, "`pick` returns a list or a dict, and `rows` returns a dict at a time."),
    ("import redis\ncache = redis.Redis()\ncache.set('k', 1)\n", "`set` returns a boolean, pal."),  # a method
    (CALLED, "`merge` takes a dict `a` and a dict `b`; `census` takes `letters`, a string, and `start`, a number."),
    (CALLED, "It stores `out` as a dict and keeps `start` as the number to add."),
    # two kinds given, the function passed as a value, a decorated one, a method: no kind for the parameter
    ("def census(letters):\n    return len(letters)\n\nprint(census('ab'))\nprint(census(['a']))\n",
     "`census` takes `letters`, a list of strings."),
    ("def census(letters):\n    return len(letters)\n\nfns = [census]\nprint(census('ab'))\n",
     "`letters` is a list."),
    ("import functools\n\n@functools.cache\ndef census(letters):\n    return len(letters)\n\ncensus('ab')\n",
     "`letters` is a list."),
    ("class Box:\n    def put(self, item):\n        return item\n\nBox().put('x')\n", "`item` is a list."),
    (WORD_LENGTHS, "Listen, kid: `word_lengths` splits the sentence and returns a dict of lengths."),
    # a clause with a subject of its own, and a sentence without one, say nothing of `word_lengths`
    (WORD_LENGTHS, "`word_lengths` calls `split`, which breaks the text and returns a list."),
    (WORD_LENGTHS, "Split on spaces and returns a list, the words come back."),
])
def test_true_roles_denials_and_advice_pass(code, answer):
    assert roles(code, answer) == []


def test_code_that_does_not_parse_has_no_roles():
    assert name_roles("def broken(:\n") is None
    assert roles("def broken(:\n    x", "It calls `x` and loops `x` over `broken`.") == []


def test_the_post_check_drops_a_false_role_sentence_and_keeps_the_rest():
    answer = "`power` is recursive, kid. It first calls `base` for 0 and returns 1. Capisce?"
    kept, dropped = drop_unsupported(POWER, answer)
    assert dropped == 1 and "calls `base`" not in kept and "recursive" in kept and "Capisce" in kept


@pytest.mark.parametrize("path", ["data/train.json", "data/validation.json", "data/personas/noir/train.json",
                                  "data/personas/noir/validation.json"])
def test_no_reference_answer_has_a_false_role(path):
    rows = json.loads((Path(__file__).resolve().parents[3] / path).read_text())
    flagged = {key: false_roles(row["code"], row.get("mafia_explanation") or row.get("explanation"))
               for key, row in rows.items()}
    assert {key: claims for key, claims in flagged.items() if claims} == {}
