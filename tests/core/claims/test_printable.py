"""Printed values without a run: "the last line prints 'None'" of FizzBuzz is caught from the syntax tree; what the
code may print is left alone."""

import pytest

from mafioso.core.claim_check import drop_unsupported
from mafioso.core.claims import static_claims
from mafioso.core.claims.outputs import false_prints
from mafioso.core.claims.printable import can_print, printable

FIZZBUZZ = ("def fizzbuzz(n):\n    for i in range(1, n + 1):\n        if i % 15 == 0:\n            print('FizzBuzz')\n"
            "        elif i % 3 == 0:\n            print('Fizz')\n        elif i % 5 == 0:\n            print('Buzz')\n"
            "        else:\n            print(i)\n\n\nfizzbuzz(15)\n")
RATE = ('def discount_rate(code):\n    if code == "FAMILY":\n        return 0.2\n    elif code == "FRIEND":\n'
        '        return 0.1\n\nprint(discount_rate("FAMILY"))\nprint(discount_rate("STRANGER"))\n')
GREET = 'def greet(name):\n    print(f"Hello, {name}!")\n    print(len(name), name == "Vito")\n\ngreet("Vito")\n'
SQUARES = "total = 0\nfor n in range(4):\n    total += n * n\n    print(f'{n} squared is {n * n}')\nprint('done')\n"


def claims(found):
    return [c["claim"] for c in found]


@pytest.mark.parametrize("code, answer, claim", [
    (FIZZBUZZ, "The first line prints 'FizzBuzz', the second 'Fizz', and the last 'None'.", "None"),
    (FIZZBUZZ, "For the rest it prints Fizz, Buzz or None.", "None"),
    (FIZZBUZZ, "Multiples of 15 get FizzBuzz, otherwise it prints Fizz, Buzz or None.", "None"),  # an else, told
    (FIZZBUZZ, "So it prints 'Fizz Buzz Bingo'.", "Fizz Buzz Bingo"),
    (SQUARES, "Each pass prints '3 cubed is 27'.", "3 cubed is 27"),
    (SQUARES, "At the end it prints 'finished', capisce?", "finished"),
    (SQUARES, "It prints [0, 1, 4, 9].", "[0, 1, 4, 9]"),
])
def test_a_printed_value_no_print_of_the_code_can_write_is_caught(code, answer, claim):
    assert claims(false_prints(code, answer)) == [claim]
    assert claim in claims(static_claims(code, answer))  # the post-check and eval (without a run) see it
    assert drop_unsupported(code, answer)[1] == 1


@pytest.mark.parametrize("code, answer", [
    (FIZZBUZZ, "It prints 'FizzBuzz' for multiples of 15, 'Fizz' for 3, 'Buzz' for 5, else the number: 1, 2, Fizz."),
    (FIZZBUZZ, "So it prints 7, then 'fizz'!"),  # a number, any case
    (FIZZBUZZ, "It never prints None."),  # a denial
    (FIZZBUZZ, "It prints each number, and returns None."),  # None is returned, not printed
    (FIZZBUZZ, "It would print None if you forgot the else."),  # a what-if
    (FIZZBUZZ, "Drop the else, otherwise it would print None."),  # a what-if with "otherwise"
    (RATE, "So it prints 0.2, then None for STRANGER."),  # a def that may end without a return
    (GREET, "It prints 'Hello, Vito!', then 4 True."),
    (GREET, "It prints 'Hello, Sonny!' for Sonny."),  # a parameter may be anything
    (SQUARES, "It prints '3 squared is 9' and then 'done'."),
    ("import numpy as np\nprint(np.arange(3))\n", "It prints 'None'."),  # a library may print anything
    ("import sys\nsys.stdout.write('hi')\nprint(1)\n", "It prints 'hi' and 1."),
    ("def f():\n    raise ValueError('bad')\nprint(1)\nf()\n", "It prints 1 and then 'ValueError: bad'."),
    ("print(1, end='')\nprint(2)\n", "It prints 12."),  # an end that joins lines
    ("x = [1, 2]\nprint(x)\n", "It prints [1, 2] and None."),  # a list may hold anything
])
def test_what_the_code_may_print_is_left_alone(code, answer):
    assert false_prints(code, answer) == []


def test_a_run_s_output_is_the_judge_where_there_is_one():
    answer = "The last line prints 'None'."
    assert claims(static_claims(FIZZBUZZ, answer)) == ["None"]
    assert static_claims(FIZZBUZZ, answer, output="1\n2\nFizz\n") == []  # eval checks it against the run instead


def test_the_lines_spell_literals_and_holes_and_a_claim_may_take_part_of_one():
    lines = printable(SQUARES)
    assert len(lines) == 2
    assert can_print(lines, "2 squared is 4") and can_print(lines, "SQUARED IS") and can_print(lines, "ed is 1")
    assert can_print(lines, "done, 0 squared is 0")  # listed across lines
    assert not can_print(lines, "2 squared is four")
    assert printable("print(undefined_thing)") is None and printable("def f(:\n") is None
