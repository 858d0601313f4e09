"""Another language's code is named in the facts sheet; Python with a mistake in it is not taken for one."""

import time

import pytest

from mafioso.prompts.facts import facts_sheet
from mafioso.prompts.language import other_language


@pytest.mark.parametrize("code, language", [
    ("SELECT name, COUNT(*) FROM orders\nWHERE total > 10\nGROUP BY name;", "SQL"),
    ("select * from users where id = 1;", "SQL"),
    ("function add(a, b) {\n  return a + b;\n}\nconsole.log(add(1, 2));", "JavaScript"),
    ("const xs = [1, 2, 3];\nconst ys = xs.map(x => x * 2);\n", "JavaScript"),
    ("#include <stdio.h>\nint main(void) {\n    printf(\"hi\\n\");\n    return 0;\n}\n", "C or C++"),
    ("public class Hello {\n  public static void main(String[] args) {\n    System.out.println(\"hi\");\n  }\n}",
     "Java"),
    ("package main\nimport \"fmt\"\nfunc main() {\n\tfmt.Println(\"hi\")\n}", "Go"),
    ("fn main() {\n    let mut x = 5;\n    println!(\"{}\", x);\n}", "Rust"),
    ("#!/bin/bash\nfor f in *.txt; do\n  echo $f\ndone\n", "shell"),
    ("<?php\n$x = 1;\necho $x;\n", "PHP"),
    ("<!DOCTYPE html>\n<html><body><p>hi</p></body></html>", "HTML"),
    ("```js\nlet total = 0;\nfor (const x of xs) { total += x; }\n}\n```", "JavaScript"),  # fenced, with its tag
])
def test_another_language_is_named(code, language):
    assert other_language(code) == language
    assert facts_sheet(code).endswith(f"; it reads as {language}")
    assert "reads as" not in facts_sheet(code, conditions=False)  # prompt format 1's sheet is as it was


@pytest.mark.parametrize("code", [
    "def f(x):\n    return x\n",
    "def f(x)\n    return x * 2\n",  # a missing colon: Python with a mistake, for the model to explain
    "for i in range(3:\n    print(i)\n",
    "print 'hello'\nx = 1\n",  # Python 2
    "cursor.execute(\"SELECT * FROM t\"\nrows = cursor.fetchall()\n",  # SQL inside broken Python
    "js = '''\nconst x = 1;\n}\n'''\nprint(js)\n",  # JavaScript inside a Python string
    "Why?\n```python\nfor i in range(3):\n    print(i)\n```\n",
    ">>> x = [1, 2]\n>>> x.append(3)\n>>> x\n[1, 2, 3]\n",
    "how do I reverse a list in python",
    "name: app\nversion: 1\n  deps:\n   - a\n",  # YAML: no language's lines, the model may try
    "d = {\n 'a': 1,\n 'b': 2,\n}\nprint(d[\n",
    "if x > 1:\n    y = x;\n}\n}\n",  # braces, but a Python block header
])
def test_python_and_unknown_text_are_not_named(code):
    assert "reads as" not in facts_sheet(code)


def test_long_lines_are_read_in_linear_time():
    for line in ("select " + "a " * 50_000, "if " + ":x" * 50_000, "function f(" + "(" * 50_000,
                 "x => " * 20_000, "-" * 100_000):
        started = time.perf_counter()
        other_language(line + "\n" + line)
        assert time.perf_counter() - started < 1, line[:20]

