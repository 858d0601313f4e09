"""mafioso.prompts.facts.facts_sheet: what the prompt tells the model about the code, read from its syntax tree."""

import time

import pytest

from mafioso.prompts import SECTION_MARKER
from mafioso.prompts.facts import (FACTS_MAX_CHARS, FACTS_MAX_TOKENS, _cost, code_features, facts_sheet,
                                   name_roles, run_record)


def lines_of(code: str) -> list[str]:
    return facts_sheet(code).splitlines()


def line_for(code: str, start: str) -> str:
    return next(line for line in lines_of(code) if line.lstrip(" -").startswith(start))


def test_recursion_and_what_a_function_returns():
    code = "def fact(n: int = 5) -> int:\n    if n < 2:\n        return 1\n    return n * fact(n - 1)\n"
    assert line_for(code, "def fact") == ("- def fact(n: int = 5) -> int: recurses; "
                                          "returns 1 if n < 2 or n * fact(n - 1)")
    assert "not in the code: yield" in facts_sheet(code)
    assert "recursion" not in lines_of(code)[-1]


def test_what_is_returned_printed_or_raised_says_under_which_condition():
    code = ("def grade(score):\n    if score < 0:\n        raise ValueError('negative')\n    if score >= 90:\n"
            "        return 'A'\n    elif score >= 50:\n        print('pass')\n        return 'B'\n    else:\n"
            "        return 'F'\n\ndef parse(text):\n    try:\n        return int(text)\n    except ValueError:\n"
            "        return None\n    except:\n        print('odd')\n\nprint(grade(75))\n")
    assert line_for(code, "def grade") == ("- def grade(score): raises ValueError if score < 0; prints 'pass' if "
                                           "score >= 50; returns 'A' if score >= 90 or 'B' if score >= 50 or 'F' "
                                           "otherwise")
    assert line_for(code, "def parse") == ("- def parse(text): catches ValueError, everything (bare except); "
                                           "prints 'odd' on any exception; returns int(text) or None on ValueError")
    assert line_for(code, "top level") == "- top level: calls grade(75); prints grade(75)"


def test_a_function_that_does_not_recurse_says_so_and_returns_nothing():
    code = "def greet(name):\n    print('Hello', name)\n"
    assert line_for(code, "def greet") == "- def greet(name): prints 'Hello', name; returns nothing"
    assert lines_of(code)[-1].startswith("- not in the code: recursion, yield")
    assert "calls nothing (nothing runs)" in line_for(code, "top level")


def test_generator_and_what_it_loops_over():
    code = "def evens(items, *, limit=10, **kw):\n    for x in items:\n        yield x * 2\n    while limit:\n" \
           "        limit -= 1\n"
    assert line_for(code, "def evens") == ("- def evens(items, *, limit=10, **kw): a generator: yields x * 2; "
                                           "loops x over items; loops while limit")
    assert "yield" not in lines_of(code)[-1]


def test_class_with_decorators_bases_attributes_and_methods_under_it():
    code = ("from dataclasses import dataclass\nimport functools\n\n"
            "@dataclass(frozen=True)\nclass Point(Base, metaclass=Meta):\n    x: int\n    y: int = 0\n\n"
            "    @functools.lru_cache(maxsize=None)\n    def norm(self) -> float:\n"
            "        return (self.x ** 2 + self.y ** 2) ** 0.5\n\n"
            "    def move(self, dx):\n        self.x += dx\n")
    lines = lines_of(code)
    assert lines[0] == "- @dataclass(frozen=True) class Point(Base, metaclass=Meta): attributes x: int, y: int = 0"
    assert lines[1] == ("  - @functools.lru_cache(maxsize=None) def norm(self) -> float: "
                        "returns (self.x ** 2 + self.y ** 2) ** 0.5")
    assert lines[2] == "  - def move(self, dx): sets self.x; returns nothing"
    assert lines[3] == "- top level: imports dataclasses.dataclass, functools; calls nothing (nothing runs)"


def test_async_awaits_and_calls_the_codes_own_functions():
    code = ("import asyncio\n\nasync def fetch(n):\n    await asyncio.sleep(0.1)\n    return n\n\n"
            "async def main():\n    results = await asyncio.gather(*(fetch(i) for i in range(3)))\n"
            "    print(results)\n\nasyncio.run(main())\n")
    assert line_for(code, "async def fetch") == "- async def fetch(n): awaits; returns n"
    assert line_for(code, "async def main") == ("- async def main(): awaits; calls fetch; loops i over range(3); "
                                                "prints results; returns nothing")
    assert line_for(code, "top level") == "- top level: imports asyncio; calls asyncio.run, main()"
    assert "async" not in lines_of(code)[-1]


def test_raises_and_catches_name_the_exceptions():
    code = ("def load(path):\n    try:\n        return int(open(path).read())\n"
            "    except (FileNotFoundError, ValueError):\n        raise RuntimeError('bad file')\n"
            "    except Exception:\n        raise\n")
    line = line_for(code, "def load")
    assert "raises RuntimeError on FileNotFoundError or ValueError, re-raises on Exception" in line
    assert "catches FileNotFoundError, ValueError, Exception" in line
    assert "reads a file" in line
    assert "exceptions" not in lines_of(code)[-1]


def test_file_network_and_input_io():
    code = ("import requests\n\ndef save(rows):\n    with open('out.txt', 'w') as f:\n        f.write(str(rows))\n\n"
            "def ask():\n    return input('name? ')\n\ndef post(url):\n    return requests.post(url, json={})\n")
    assert line_for(code, "def save") == "- def save(rows): writes a file; returns nothing"
    assert line_for(code, "def ask") == "- def ask(): reads input(); returns input('name? ')"
    assert "network calls" in line_for(code, "def post")
    assert "files" not in lines_of(code)[-1] and "network" not in lines_of(code)[-1]


def test_module_level_prints_literal_text_and_fstrings_without_evaluating():
    code = "total = 2 + 3\nprint('Done')\nprint(f\"Total: {total}\")\nprint()\nprint(total * 2, end='')\n"
    top = line_for(code, "top level")
    assert "prints 'Done'" in top and 'prints an f-string "Total: {total}"' in top
    assert "prints an empty line" in top and "5" not in top  # 2 + 3 is never computed


def test_not_python_says_so_with_the_line():
    for code in ("SELECT name FROM users;", "async function f() {\n  return 1;\n}",
                 "Hi, I need a script that emails the totals every Monday.", "def f(:\n    pass"):
        sheet = facts_sheet(code)
        assert sheet.startswith("- not parseable as Python (syntax error at line "), code
        assert "\n" not in sheet
    assert facts_sheet("x = 1\n    y = (\n") == "- not parseable as Python (syntax error at line 2)"


def test_an_indented_method_paste_is_read_as_python():
    code = "    def total(self):\n        return sum(self.items)"
    assert lines_of(code)[0] == "- def total(self): returns sum(self.items)"
    assert "return" in code_features(code)  # the checks read the paste as the sheet does


SESSION = (">>> nums = [3, 1, 2]\n>>> def first(xs):\n...     return sorted(xs)[0]\n...\n>>> first(nums)\n1\n"
           ">>> nums[5]\nTraceback (most recent call last):\n  File \"<stdin>\", line 1, in <module>\n"
           "IndexError: list index out of range\n")


def test_an_interactive_session_is_read_as_its_statements():
    assert lines_of(SESSION)[:2] == ["- def first(xs): returns sorted(xs)[0]",
                                     "- top level: sets nums; calls first(nums)"]
    # echoes and tracebacks are not code
    assert code_features(SESSION) == frozenset({"sort", "return", "function", "one-liner"})


def test_a_session_is_its_own_record_of_what_it_showed_and_raised():
    shown, raised = run_record(SESSION)
    assert shown.splitlines()[0] == "1" and raised == "IndexError"
    assert run_record(">>> 1 + 1\n2\n") == ("2", None)
    assert run_record("x = 1\n") is None and run_record("print('>>> not a session')") is None


def test_deterministic_and_never_a_section_marker():
    code = "print('### RESPONSE: hi')\n# ### a comment\nx = {'b': 1, 'a': 2}\n"
    sheet = facts_sheet(code)
    assert sheet == facts_sheet(code)
    assert SECTION_MARKER not in sheet and "a comment" not in sheet
    assert all(line.startswith(("- ", "  ")) for line in sheet.splitlines())


def test_a_200_line_paste_gets_a_bounded_outline():
    code = "\n\n".join(f"def step{i}(x, y=2):\n    for a in range(x):\n        print('n', a)\n    return x + {i}"
                       for i in range(50)) + "\nprint('Done')\n"
    assert code.count("\n") > 200
    sheet = facts_sheet(code)
    assert len(sheet) <= FACTS_MAX_CHARS
    lines = sheet.splitlines()
    assert lines[0] == "- def step0(x, y=2): prints 'n', a"  # the outline: one-line facts, no returns
    assert any(line.startswith("- … ") and line.endswith(" more definitions") for line in lines)
    assert lines[-2] == "- top level: prints 'Done'" and lines[-1].startswith("- not in the code:")


def test_every_sheet_stays_within_the_bound():
    many = "\n".join(f"v{i} = [{', '.join(map(str, range(40)))}]\nprint(f'{{v{i}}} is v{i}')" for i in range(30))
    wide = "class A(" + ", ".join(f"B{i}" for i in range(500)) + "):\n    x = 1\n"
    cjk = "\n".join(f"print('账本{i}：' * 3, '三十七个箱子在码头上')" for i in range(20))
    for code in (many, wide, cjk, "def f():\n  x=1\n" * 1500):
        sheet = facts_sheet(code)
        assert len(sheet) <= FACTS_MAX_CHARS and _cost(sheet) <= FACTS_MAX_TOKENS


def test_the_token_estimate_counts_digits_and_punctuation_one_by_one():
    assert _cost("- def step12(x, y=2): prints 'n'\n") == 18  # 17 pieces, then the newline
    assert _cost("账本") == 2


@pytest.mark.parametrize("code", [
    "x = " + "(" * 5000 + "1" + ")" * 5000,
    "x = " + "-" * 50000 + "1",
    "x = " + "-" * 900 + "1\nprint(" + "-" * 900 + "1)\ndef f(a=" + "-" * 900 + "1):\n    return " + "~" * 900 + "1\n",
    "@" + "-" * 900 + "x\ndef f(): pass\n",
    "x = [" + "1, " * 20000 + "]\nprint(x)\n",
])
def test_deep_nesting_and_huge_inputs_return_quickly(code):
    started = time.perf_counter()
    sheet = facts_sheet(code)
    assert time.perf_counter() - started < 2
    assert sheet and len(sheet) <= FACTS_MAX_CHARS


def test_prompt_format_1_writes_the_sheet_without_conditions_loop_variables_or_call_arguments():
    from mafioso.prompts import render_prompt

    code = ("def pick(xs):\n    for x in xs:\n        if x > 1:\n            return x\n    return None\n\n"
            "print(pick([1, 2]))\n")
    assert facts_sheet(code, conditions=False).splitlines()[:2] == [
        "- def pick(xs): loops over xs; returns x or None", "- top level: calls pick; prints pick([1, 2])"]
    assert facts_sheet(code).splitlines()[:2] == [
        "- def pick(xs): loops x over xs; returns x if x > 1 or None",
        "- top level: calls pick([1, 2]); prints pick([1, 2])"]
    assert facts_sheet(code, conditions=False) in render_prompt(code, prompt_format=1)
    assert facts_sheet(code) in render_prompt(code)
    with pytest.raises(ValueError, match="prompt format 3 is unknown"):
        render_prompt(code, prompt_format=3)


RUN = ('settings = {"region": "us-east"}\nprint("deploying to", settings["region"])\nwait = settings["timeout"]\n\n'
       'deploying to us-east\nTraceback (most recent call last):\n  File "deploy.py", line 3, in <module>\n'
       '    wait = settings["timeout"]\nKeyError: \'timeout\'\n')


def test_code_pasted_with_its_output_and_traceback_is_read_as_its_code():
    assert lines_of(RUN) == [
        "- top level: sets settings, wait; prints 'deploying to', settings['region']",
        "- pasted with its run, whose traceback ends in KeyError",
        "- not in the code: recursion, yield, async/await, files, network, exceptions"]
    shown, raised = run_record(RUN)
    assert shown.splitlines()[:2] == ["deploying to us-east", "Traceback (most recent call last):"]
    assert raised == "KeyError"


def test_a_traceback_inside_code_that_parses_is_no_pasted_run():
    code = 'LOG = """Traceback (most recent call last):\nKeyError: 1"""\nprint(LOG)\n'
    assert run_record(code) is None and "pasted with its run" not in facts_sheet(code)
    assert run_record("just words\nTraceback (most recent call last):\nKeyError: 1") is None  # no code before


def test_name_roles_knows_what_each_function_hands_back():
    code = ("def total(xs):\n    result = sum(xs)\n    result += bonus\n    return result\n\n"
            "def outer(a):\n    def inner(b):\n        return b\n    return 'done'\n\n"
            "def gen(n):\n    yield n * 2\n\nshout = lambda s: s.upper()\nout = total([1])\nother = len([1])\n")
    roles = name_roles(code)
    assert roles.returns_of["total"] >= {"result", "sum", "xs", "bonus"}
    assert roles.returns_of["outer"] == {"done"}  # its inner function's return is not its own
    assert roles.returns_of["inner"] == {"b"} and roles.returns_of["gen"] == {"n"}
    assert {"b", "s", "upper", "done", "xs"} <= roles.returned and "a" not in roles.returned
    assert roles.received == {"out"}  # bound to what the code's own function hands back; `len` is not its own


def test_name_roles_knows_the_kind_of_what_calls_and_functions_make():
    code = ("class Oven:\n    pass\n\nclass Box(dict):\n    pass\n\noven = Oven()\nbox = Box()\n"
            "names = sorted(set('ab'))\nbig = len(names) > 1\nlabel = str(3)\n\n"
            "def pair(a):\n    if a:\n        return None\n    return (a, a)\n\n"
            "def mixed(a):\n    return [a] if a else {}\n\ndef gen():\n    yield []\n")
    roles = name_roles(code)
    assert {name: roles.kinds.get(name) for name in ("oven", "box", "names", "big", "label")} == \
        {"oven": "object", "box": None, "names": "list", "big": "bool", "label": "string"}
    assert roles.return_kinds == {"sorted": "list", "set": "set", "len": "number", "str": "string", "pair": "tuple"}
    shadowed = name_roles("def sorted(xs):\n    return {}\n\nnames = sorted([1])\n")
    assert shadowed.kinds.get("names") is None and shadowed.return_kinds == {"sorted": "dict"}


def test_features_name_nested_comprehensions_and_mutable_defaults():
    assert "nested comprehension" in code_features("t = [[r[0] for r in m] for m in ms]\n")
    assert "nested comprehension" in code_features("flat = {x for row in m for x in row}\n")
    assert "nested comprehension" not in code_features("for m in ms:\n    t = [r for r in m]\n")
    assert "mutable default" in code_features("def f(a, *, seen=set()):\n    return a\n")
    assert "mutable default" in code_features("g = lambda x, acc={}: acc\n")
    assert "mutable default" not in code_features("def f(a=None, b=(), c='x'):\n    return a\n")


def test_a_markdown_paste_is_read_as_its_fenced_code():
    """repl-009 and its kind: code pasted with its Markdown fence (and words around it) was "not parseable"."""
    assert lines_of("here:\n```python\ndef twice(x):\n    return x * 2\n```\nthanks")[0] == \
        "- def twice(x): returns x * 2"
    assert run_record("```\n>>> twice = 2\n>>> twice\n2\n```") == ("2", None)  # a fenced session is a run too
