"""Twenty small snippets no training row uses, answered by an engine and printed for reading by hand (issue 16).

    python bench/read_unseen.py                                         # the default: Gemma + shipped adapter
    python bench/read_unseen.py --base-model qwen2.5-coder-0.5b         # Qwen + its shipped adapter
    python bench/read_unseen.py --base-model embedded --adapter DIR     # a candidate adapter
    python bench/read_unseen.py --set 2                                 # the second twenty

The static checks (``grounded``) cannot see a false claim about behaviour ("it returns the longest vowel"), so
each round's adapters are also read by hand on these twenty. Each snippet comes with what a true answer says, to
read against; the verdicts go into docs/BENCHMARKS.md. The names here are held out: data rows must not use them
(data/README.md). Each answer also gets eval's claim checks, the printed values among them: the snippets are
this bench's own, so, as ``mafioso eval`` does with the dataset's, each runs once in the sandbox
(:mod:`mafioso.trainer.sandbox`: time and memory limits, no network where the OS allows). Chat input never
does. The last line counts the answers with no claim found, served and before the post-check: at most that many
are true, since what the checks miss ("a palindrome test" of a vowel count) only a reader sees (Qwen, 2026-12-05:
19 of 20 with no claim found, 3-4 of 20 true by hand).

The readers' verdicts are kept in ``bench/unseen_verdicts.json`` (``--verdicts``), one per answer text: each
answer is printed with its key and, when an answer with the same text was read before (by any adapter, on any
machine), its verdict, so a round reads only the answers that changed (``--unread`` prints only those); the last
line then also counts them. A
verdict is a reader's ``{"set", "number", "right", "why", "read", "answered_by", "text"}`` (``why``: the false
sentence, quoted, and what is true; ``text``: the answer read, as printed, whose key it is), added by hand under
the printed key; strict: one false sentence makes an answer wrong. With the texts kept, the verdicts are also
labelled sentences (``bench/sentence_confidence.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
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

#: A second twenty (2026-12-06), for reading beside the first: other constructs (slicing, a subclass, a while
#: loop, setdefault, try/finally, *args, a keyword-only argument, map with a lambda, json, a dataclass), names
#: no data row uses
UNSEEN_SECOND = (
    ("def reads_same_backwards(phrase):\n    cleaned = ''.join(ch.lower() for ch in phrase if ch.isalnum())\n"
     "    return cleaned == cleaned[::-1]\n\nprint(reads_same_backwards('Never odd or even'))",
     "keeps the letters and digits, lower-cased, and compares them with their reverse; prints True"),
    ("def split_into_crews(members, size):\n    return [members[i:i + size] for i in range(0, len(members), size)]\n"
     "\nprint(split_into_crews(['a', 'b', 'c', 'd', 'e'], 2))",
     "slices the list into pieces of size with a list comprehension stepping by size; prints [['a', 'b'], ['c', 'd']"
     ", ['e']]"),
    ("class Informant:\n    def rat_out(self):\n        return '...'\n\nclass Rat(Informant):\n    def rat_out(self):\n"
     "        return 'everything'\n\nfor guy in [Informant(), Rat()]:\n    print(guy.rat_out())",
     "Rat subclasses Informant and overrides rat_out; the loop prints ... then everything"),
    ("from collections import Counter\n\nletters_seen = Counter('consigliere')\nprint(letters_seen.most_common(2))",
     "counts each letter of the word, then the two commonest; prints [('i', 2), ('e', 2)], ties: first seen first"),
    ("def common_cut(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n\nprint(common_cut(48, 18))",
     "Euclid's greatest common divisor with a while loop (no recursion); prints 6"),
    ("def unpack_shipments(nested):\n    out = []\n    for part in nested:\n        if isinstance(part, list):\n"
     "            out.extend(unpack_shipments(part))\n        else:\n            out.append(part)\n    return out\n\n"
     "print(unpack_shipments([1, [2, [3, 4]], 5]))",
     "flattens nested lists recursively; prints [1, 2, 3, 4, 5]"),
    ("import re\n\ndef find_emails(text):\n    return re.findall(r'[\\w.]+@[\\w.]+', text)\n\n"
     "print(find_emails('write vito@corleone.it or tom@hagen.com'))",
     "re.findall with a pattern for word characters and dots around an @; prints ['vito@corleone.it', 'tom@hagen.com"
     "']"),
    ("def pick_capo(votes_cast):\n    results = {}\n    for name in votes_cast:\n"
     "        results.setdefault(name, 0)\n        results[name] += 1\n    return max(results, key=results.get)\n\n"
     "print(pick_capo(['sal', 'tessio', 'sal']))",
     "counts the votes_cast with setdefault, returns the name with the most (max by results.get); prints sal"),
    ("weekly_cut = list(map(lambda week: week * 2, range(4)))\nprint(weekly_cut)",
     "map applies a lambda doubling each of 0..3, list collects them; prints [0, 2, 4, 6]"),
    ("def read_config(path):\n    handle = open(path)\n    try:\n        return handle.read()\n    finally:\n"
     "        handle.close()",
     "returns the file's whole text and closes it in finally whatever happens; nothing is called, so nothing runs"),
    ("payoffs = [5, 3, 8, 1]\npayoffs.sort(reverse=True)\nprint(payoffs[:2])",
     "sorts the list in place, largest first, then slices the first two; prints [8, 5]"),
    ("def salute(name, title='Don'):\n    return f'{title} {name}'\n\nprint(salute('Vito'))\n"
     "print(salute('Michael', title='Mr.'))",
     "title defaults to Don; two prints: Don Vito, then Mr. Michael"),
    ("def settle_tab(*amounts, tip=0):\n    return sum(amounts) + tip\n\nprint(settle_tab(10, 20, tip=5))",
     "any number of amounts are summed, plus a keyword-only tip; prints 35"),
    ("wine_rack = {'cannoli': 12, 'olive oil': 30, 'wine': 7}\n"
     "for item, qty in sorted(wine_rack.items(), key=lambda kv: kv[1], reverse=True):\n    print(f'{item}: {qty}')",
     "prints the items from the largest quantity down: olive oil: 30, cannoli: 12, wine: 7"),
    ("def launch_sequence(n):\n    while n > 0:\n        print(n)\n        n -= 1\n    print('Liftoff')\n\n"
     "launch_sequence(3)",
     "counts down with a while loop; prints 3, 2, 1 then Liftoff"),
    ("class Strongbox:\n    def __init__(self, balance=0):\n        self.balance = balance\n\n"
     "    def take_out(self, amount):\n        if amount > self.balance:\n"
     "            raise ValueError('not enough in the box')\n        self.balance -= amount\n"
     "        return self.balance\n\nstrongbox = Strongbox(100)\nprint(strongbox.take_out(30))",
     "take_out refuses more than the balance with ValueError, else subtracts and returns what is left; prints 70"),
    ("import json\n\nsealed_note = json.dumps({'boss': 'Vito', 'crew': 3})\nprint(json.loads(sealed_note)['crew'] + 1)",
     "dumps the dict to a JSON string and loads it back; prints 4"),
    ("def cumulative_take(values):\n    total = 0\n    for v in values:\n        total += v\n        yield total\n\n"
     "print(list(cumulative_take([1, 2, 3])))",
     "a generator of running sums; prints [1, 3, 6]"),
    ("from dataclasses import dataclass\n\n@dataclass\nclass Hit:\n    target: str\n    paid: bool = False\n\n"
     "the_hit = Hit('Sollozzo')\nprint(the_hit)",
     "a dataclass with a default for paid; prints Hit(target='Sollozzo', paid=False)"),
    ("ledger_rows = [[1, 2], [3, 4]]\nwhole_take = sum(sum(row) for row in ledger_rows)\nprint(whole_take)",
     "sums each row, then the row sums, through a generator expression; prints 10"),
)


#: The third twenty (2026-12-06): sorted keys, an early return, __repr__, try/except/else, set algebra, a closure,
#: pop and break, super(), str.count, *args with a keyword-only default, max over items, math, a filtered
#: comprehension, a classmethod, re.sub, all(), a negative range step, defaultdict, floor division in a while.
UNSEEN_THIRD = (
    ("def monogram(full_name):\n    return ''.join(part[0].upper() for part in full_name.split())\n\n"
     "print(monogram('vito andolini corleone'))",
     "the first letter of each word, upper-cased, joined by a generator expression; prints VAC"),
    ("payoff_book = {'rent': 300, 'wine': 45, 'bribes': 1200}\nfor item in sorted(payoff_book):\n"
     "    print(item, payoff_book[item])",
     "walks the keys in alphabetical order; prints three lines: bribes 1200, rent 300, wine 45"),
    ("def first_over_limit(amounts, limit):\n    for position, amount in enumerate(amounts):\n"
     "        if amount > limit:\n            return position\n    return -1\n\n"
     "print(first_over_limit([5, 12, 30], 10))\nprint(first_over_limit([1, 2], 10))",
     "returns the index of the first amount over limit, else -1; prints 1, then -1"),
    ("class Caporegime:\n    def __init__(self, name):\n        self.name = name\n\n    def __repr__(self):\n"
     "        return f'Caporegime({self.name!r})'\n\nprint([Caporegime('clemenza'), Caporegime('rocco')])",
     "__repr__ decides how each shows inside the printed list; prints [Caporegime('clemenza'), Caporegime('rocco')]"),
    ("def doubled_or_missing(table, key):\n    try:\n        value = table[key]\n    except KeyError:\n"
     "        return 'missing'\n    else:\n        return value * 2\n\n"
     "print(doubled_or_missing({'a': 4}, 'a'), doubled_or_missing({'a': 4}, 'b'))",
     "doubles the value in the else branch when the key is there, returns 'missing' when the KeyError is caught; "
     "prints 8 missing"),
    ("turf_north = {'bronx', 'queens', 'harlem'}\nturf_south = {'queens', 'brooklyn'}\n"
     "print(sorted(turf_north & turf_south), len(turf_north | turf_south))",
     "the sets' intersection, sorted into a list, and the size of their union; prints ['queens'] 4"),
    ("def make_clicker():\n    count = 0\n\n    def click():\n        nonlocal count\n        count += 1\n"
     "        return count\n    return click\n\nturnstile = make_clicker()\nturnstile()\n"
     "print(turnstile(), turnstile())",
     "a closure: click keeps count between calls through nonlocal; three calls, the print shows the second and "
     "third: 2 3"),
    ("crates_on_dock = [3, 8, 0, 5]\nwhile crates_on_dock:\n    crate = crates_on_dock.pop()\n    if crate == 0:\n"
     "        break\n    print(crate)",
     "pops from the end: prints 5, then the 0 stops the loop with break; 8 and 3 are never printed"),
    ("class Getaway:\n    def __init__(self, wheels):\n        self.wheels = wheels\n\nclass Sedan(Getaway):\n"
     "    def __init__(self):\n        super().__init__(4)\n\nprint(Sedan().wheels)",
     "Sedan runs Getaway's __init__ through super() with 4; prints 4"),
    ("overheard = 'the don and the consigliere and the capo'.split()\n"
     "print(overheard.count('the'), overheard.index('and'))",
     "counts 'the' among the words and finds the first 'and'; prints 3 2"),
    ("def shout_all(*phrases, sep=' | '):\n    return sep.join(p.upper() for p in phrases)\n\n"
     "print(shout_all('pay up', 'no witnesses'))",
     "upper-cases every phrase and joins them with sep, a keyword-only default; prints PAY UP | NO WITNESSES"),
    ("crew_headcount = {'north': 4, 'south': 9, 'east': 2}\n"
     "largest_crew = max(crew_headcount.items(), key=lambda kv: kv[1])\nprint(largest_crew)",
     "the (name, size) pair with the largest size, by a lambda key; prints ('south', 9)"),
    ("import math\n\ndef hypotenuse(a, b):\n    return math.sqrt(a ** 2 + b ** 2)\n\nprint(hypotenuse(3, 4))",
     "the square root of the sum of the squares; prints 5.0"),
    ("raw_tickets = ['7', 'x', '12', '']\nstub_numbers = [int(t) for t in raw_tickets if t.isdigit()]\n"
     "print(stub_numbers, sum(stub_numbers))",
     "keeps the all-digit strings as ints ('x' and '' are skipped); prints [7, 12] 19"),
    ("class Accountant:\n    rate = 0.1\n\n    @classmethod\n    def with_rate(cls, rate):\n"
     "        accountant = cls()\n"
     "        accountant.rate = rate\n        return accountant\n\n    def commission(self, amount):\n"
     "        return amount * self.rate\n\n"
     "print(Accountant().commission(200), Accountant.with_rate(0.5).commission(200))",
     "rate is a class attribute; with_rate is a classmethod making one with its own rate; prints 20.0 100.0"),
    ("import re\n\ndef digits_only(phone):\n    return re.sub(r'\\D', '', phone)\n\n"
     "print(digits_only('(555) 010-4477'))",
     "re.sub removes every character that is not a digit; prints 5550104477"),
    ("job_board = [('mon', 2), ('tue', 0), ('wed', 5)]\nbusy_days = [day for day, jobs in job_board if jobs]\n"
     "print(busy_days, all(jobs >= 0 for _, jobs in job_board))",
     "keeps the days with jobs (0 is falsy); prints ['mon', 'wed'] True"),
    ("def countdown_words(n):\n    return [str(i) for i in range(n, 0, -1)] + ['go']\n\n"
     "print(' '.join(countdown_words(3)))",
     "counts down from n to 1 with a negative step, then 'go'; prints 3 2 1 go"),
    ("from collections import defaultdict\n\nby_family = defaultdict(list)\n"
     "for member, family in [('sonny', 'corleone'), ('moe', 'greene'), ('fredo', 'corleone')]:\n"
     "    by_family[family].append(member)\nprint(dict(by_family))",
     "groups the members by family in a defaultdict of lists; prints {'corleone': ['sonny', 'fredo'], 'greene': "
     "['moe']}"),
    ("def halve_until_odd(n):\n    steps = 0\n    while n % 2 == 0:\n        n //= 2\n        steps += 1\n"
     "    return n, steps\n\nprint(halve_until_odd(40))",
     "halves n while it is even, counting the halvings, and returns both; prints (5, 3)"),
)

#: The sets by their ``--set`` number.
SETS = {1: UNSEEN, 2: UNSEEN_SECOND, 3: UNSEEN_THIRD}
VERDICTS = Path(__file__).resolve().parent / "unseen_verdicts.json"


def answer_key(which: int, number: int, text: str) -> str:
    """The key of an answer's verdict: its set, its snippet's number and its served text (whitespace aside)."""
    return hashlib.sha256(f"{which}:{number}:{' '.join(text.split())}".encode()).hexdigest()[:16]


def load_verdicts(path: Path) -> dict[str, dict]:
    """The verdicts file's entries by key (none when there is no file)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _verdict_line(verdict: dict | None, key: str) -> str:
    if verdict is None:
        return f"--- not read by hand yet (key {key})"
    said = "right" if verdict["right"] else "wrong"
    why = f": {verdict['why']}" if verdict.get("why") else ""
    return f"--- read by hand {verdict['read']}: {said}{why} (key {key})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="", help="as for mafioso explain (default: embedded)")
    parser.add_argument("--adapter", default="default", help="adapter folder, 'default' or 'none'")
    parser.add_argument("--set", type=int, choices=(1, 2, 3), default=1,
                        help="which twenty: 1 (UNSEEN, read every round since 2026-12-04), 2 (UNSEEN_SECOND) or 3 "
                             "(UNSEEN_THIRD)")
    parser.add_argument("--retry-unsupported", type=int, default=GenerationConfig.retry_unsupported, metavar="N",
                        help="GenerationConfig.retry_unsupported (default: the served one; 0: each first answer)")
    parser.add_argument("--verdicts", type=Path, default=VERDICTS,
                        help="readers' verdicts by answer key (default bench/unseen_verdicts.json)")
    parser.add_argument("--unread", action="store_true",
                        help="print only the answers no verdict covers yet (the counts still cover all twenty)")
    args = parser.parse_args(argv)
    verdicts = load_verdicts(args.verdicts)
    snippets = SETS[args.set]
    from mafioso.worker.engines import load_engine

    from mafioso.trainer.grounding import unsupported_claims
    from mafioso.trainer.sandbox import SnippetRunner

    runner = SnippetRunner()
    runs = [runner.run(code) for code, _ in snippets]  # this bench's own snippets, before the model loads
    engine = load_engine(WorkerConfig(base_model=args.base_model, adapter=args.adapter),
                         GenerationConfig(retry_unsupported=args.retry_unsupported))
    try:
        answers = engine.generate([(code, None) for code, _ in snippets])
    finally:
        engine.close()
    clean = {"served": 0, "model alone": 0}
    read = {"right": 0, "read": 0}
    for number, ((code, truth), answer, run) in enumerate(zip(snippets, answers, runs, strict=True), 1):
        served = unsupported_claims(code, answer.text, run.output, run.raised)
        # the model's own text, as eval scores it: its first answer when a retry replaced it, else the answer
        # before the post-check when that dropped something
        own = answer.first_text or answer.raw_text
        alone = unsupported_claims(code, own, run.output, run.raised) if own else served
        clean["served"] += not served
        clean["model alone"] += not alone
        found = "; ".join(f"{c['kind']}: {c['claim']}" for c in served) or "none"
        retried = f", decoded again {answer.retried}x" if answer.retried else ""
        key = answer_key(args.set, number, answer.text)
        if (verdict := verdicts.get(key)) is not None:
            read["read"] += 1
            read["right"] += bool(verdict["right"])
            if args.unread:
                continue
        print(f"=== {number}\n{code}\n--- a true answer: {truth}\n--- the answer ({answer.dropped} sentences "
              f"dropped{retried}; claims the checks find: {found}):\n{answer.text}\n{_verdict_line(verdict, key)}\n")
        for claim in alone if own else ():  # what the post-check dropped, to be read for a wrong drop
            print(f"--- dropped ({claim['kind']}: {claim['claim']}): {claim['text']}\n")
    print(f"answers with no claim found: {clean['served']} of {len(snippets)} served, {clean['model alone']} before "
          f"the post-check ({runner.summary()['runnable']} snippets ran; read them: the checks see only part)")
    print(f"read by hand: {read['right']} right of {read['read']} read before, {len(snippets) - read['read']} "
          f"not read yet ({args.verdicts.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
