"""Twenty small snippets no training row uses, answered by an engine and printed for reading by hand (issue 16).

    python bench/read_unseen.py                                         # the default: Gemma + shipped adapter
    python bench/read_unseen.py --base-model qwen2.5-coder-0.5b         # Qwen + its shipped adapter
    python bench/read_unseen.py --base-model embedded --adapter DIR     # a candidate adapter

The static checks (``grounded``) cannot see a false claim about behaviour ("it returns the longest vowel"), so
each round's adapters are also read by hand on these twenty. Each snippet comes with what a true answer says, to
read against; the verdicts go into docs/BENCHMARKS.md. The names here are held out: data rows must not use them
(data/README.md). Each answer also gets eval's claim checks, the printed values among them: the snippets are
this bench's own, so, as ``mafioso eval`` does with the dataset's, each runs once in the sandbox
(:mod:`mafioso.trainer.sandbox`: time and memory limits, no network where the OS allows). Chat input never
does. The last line counts the answers with no claim found, served and before the post-check: at most that many
are true, since what the checks miss ("a palindrome test" of a vowel count) only a reader sees (Qwen, 2026-12-05:
19 of 20 with no claim found, 3-4 of 20 true by hand).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402

#: (code, what a true answer says)
UNSEEN = (
    ("def count_vowels(word):\n    return sum(1 for ch in word.lower() if ch in 'aeiou')\n\n"
     "print(count_vowels('Godfather'))",
     "counts the vowels of the lower-cased word with a generator expression; prints 3"),
    ("class Counter:\n    def __init__(self):\n        self.n = 0\n    def bump(self):\n        self.n += 1\n"
     "        return self.n\n\nc = Counter()\nc.bump()\nprint(c.bump())",
     "bump adds 1 to n and returns it; bumped twice, one print: 2"),
    ("def merge(a, b):\n    out = dict(a)\n    out.update(b)\n    return out\n\n"
     "print(merge({'x': 1}, {'x': 2, 'y': 3}))",
     "a new dict, b's values win on shared keys; prints {'x': 2, 'y': 3}; a and b untouched"),
    ("import os\n\ndef largest_file(folder):\n    files = [os.path.join(folder, f) for f in os.listdir(folder)]\n"
     "    return max(files, key=os.path.getsize)",
     "full paths of the folder's entries, returns the biggest by size; an empty folder raises ValueError; "
     "nothing is called"),
    ("def power(base, exp):\n    if exp == 0:\n        return 1\n    return base * power(base, exp - 1)\n\n"
     "print(power(2, 5))",
     "recursive; exp 0 gives 1; prints 32; a negative exp never reaches 0 (RecursionError)"),
    ("words = ['ant', 'bee', 'cat', 'bee']\nunique = sorted(set(words))\nprint(len(unique), unique)",
     "set drops the duplicate bee, sorted makes a list; prints 3 ['ant', 'bee', 'cat']"),
    ("def safe_div(a, b):\n    try:\n        return a / b\n    except ZeroDivisionError:\n        return None\n\n"
     "print(safe_div(1, 0))",
     "returns a / b, or None when b is zero (the error is caught, not raised); prints None"),
    ("def evens(limit):\n    n = 0\n    while n < limit:\n        yield n\n        n += 2\n\n"
     "print(list(evens(7)))",
     "a generator of the even numbers below limit; prints [0, 2, 4, 6]"),
    ("prices = {'apple': 1.2, 'pear': 0.8}\ncheap = {k: v for k, v in prices.items() if v < 1}\nprint(cheap)",
     "a dict comprehension keeping prices under 1; prints {'pear': 0.8}"),
    ("def first_duplicate(items):\n    seen = set()\n    for item in items:\n        if item in seen:\n"
     "            return item\n        seen.add(item)\n    return None",
     "returns the first item seen twice, else None; a loop with a set, no recursion; nothing is called"),
    # the second ten (2026-12-05): a property, a raise, a lambda key, dict.get, a file, enumerate, a decorator,
    # zip(*...), asyncio.gather
    ("def word_lengths(sentence):\n    return {w: len(w) for w in sentence.split()}\n\n"
     "print(word_lengths('take the cannoli'))",
     "a dict comprehension from each word to its length; prints {'take': 4, 'the': 3, 'cannoli': 7}"),
    ("class Oven:\n    def __init__(self, heat_c):\n        self.heat_c = heat_c\n\n    @property\n"
     "    def heat_f(self):\n        return self.heat_c * 9 / 5 + 32\n\noven = Oven(100)\nprint(oven.heat_f)",
     "heat_f is a property (read without parentheses) computed from heat_c; prints 212.0"),
    ("def check_age(age):\n    if age < 0:\n        raise ValueError('age cannot be negative')\n"
     "    return age >= 18\n\nprint(check_age(21))",
     "raises ValueError for a negative age (nothing catches it), else returns whether age is 18 or more; prints True"),
    ("standings = [('ann', 82), ('bob', 95), ('cy', 78)]\ntop = max(standings, key=lambda pair: pair[1])\n"
     "print(top[0])",
     "max by each pair's second item through a lambda key, no sorting; prints bob"),
    ("def letter_census(letters):\n    counts = {}\n    for ch in letters:\n"
     "        counts[ch] = counts.get(ch, 0) + 1\n    return counts\n\nprint(letter_census('abca'))",
     "counts each character with get's default of 0; prints {'a': 2, 'b': 1, 'c': 1}"),
    ("def read_lines(path):\n    with open(path) as handle:\n        return [line.rstrip('\\n') for line in handle]",
     "opens the file for reading in a with block (closed after), returns its lines without their newline; a "
     "missing file raises FileNotFoundError; nothing is called"),
    ("family_names = ['vito', 'michael', 'sonny']\nfor position, name in enumerate(family_names, start=1):\n"
     "    print(position, name.title())",
     "numbers the names from 1; prints three lines: 1 Vito, 2 Michael, 3 Sonny"),
    ("import time\n\ndef clock_it(func):\n    def wrapper(*args):\n        start = time.perf_counter()\n"
     "        result = func(*args)\n        print(f'{func.__name__} took {time.perf_counter() - start:.3f}s')\n"
     "        return result\n    return wrapper\n\n@clock_it\ndef slow_add(a, b):\n    time.sleep(0.1)\n"
     "    return a + b",
     "clock_it is a decorator: each call of slow_add is timed and prints its name and seconds, then returns the "
     "sum; nothing is called, so nothing prints"),
    ("layout = [[1, 2, 3], [4, 5, 6]]\nflipped = [list(row) for row in zip(*layout)]\nprint(flipped)",
     "transposes with zip(*layout): rows become columns; prints [[1, 4], [2, 5], [3, 6]]"),
    ("import asyncio\n\nasync def price_of(n):\n    await asyncio.sleep(0.1)\n    return n * 10\n\n"
     "async def gather_prices():\n    results = await asyncio.gather(price_of(1), price_of(2), price_of(3))\n"
     "    print(results)\n\nasyncio.run(gather_prices())",
     "runs three coroutines at once with gather; prints [10, 20, 30] in the order given; no generator"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="", help="as for mafioso explain (default: embedded)")
    parser.add_argument("--adapter", default="default", help="adapter folder, 'default' or 'none'")
    args = parser.parse_args(argv)
    from mafioso.worker.engines import load_engine

    from mafioso.trainer.grounding import unsupported_claims
    from mafioso.trainer.sandbox import SnippetRunner

    runner = SnippetRunner()
    runs = [runner.run(code) for code, _ in UNSEEN]  # this bench's own snippets, before the model loads
    engine = load_engine(WorkerConfig(base_model=args.base_model, adapter=args.adapter), GenerationConfig())
    try:
        answers = engine.generate([(code, None) for code, _ in UNSEEN])
    finally:
        engine.close()
    clean = {"served": 0, "model alone": 0}
    for number, ((code, truth), answer, run) in enumerate(zip(UNSEEN, answers, runs, strict=True), 1):
        served = unsupported_claims(code, answer.text, run.output, run.raised)
        # the model's own text, as eval scores it: its first answer when a retry replaced it, else the answer
        # before the post-check when that dropped something
        own = answer.first_text or answer.raw_text
        alone = unsupported_claims(code, own, run.output, run.raised) if own else served
        clean["served"] += not served
        clean["model alone"] += not alone
        found = "; ".join(f"{c['kind']}: {c['claim']}" for c in served) or "none"
        retried = f", decoded again {answer.retried}x" if answer.retried else ""
        print(f"=== {number}\n{code}\n--- a true answer: {truth}\n--- the answer ({answer.dropped} sentences "
              f"dropped{retried}; claims the checks find: {found}):\n{answer.text}\n")
        for claim in alone if own else ():  # what the post-check dropped, to be read for a wrong drop
            print(f"--- dropped ({claim['kind']}: {claim['claim']}): {claim['text']}\n")
    print(f"answers with no claim found: {clean['served']} of {len(UNSEEN)} served, {clean['model alone']} before "
          f"the post-check ({runner.summary()['runnable']} snippets ran; read them: the checks see only part)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
