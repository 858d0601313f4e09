"""The claim post-check: sentences the code contradicts are dropped, the rest of the answer stays."""

from mafioso.core.claim_check import drop_unsupported

LOOP = "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n"
RECURSION = "def factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)\n"


def test_a_false_concept_sentence_is_dropped_and_the_rest_kept():
    answer = ("`factorial` is a recursive little racket, pal. It multiplies `result` by every `i` up to `n` and "
              "returns it. Capisce?")
    text, dropped = drop_unsupported(LOOP, answer)
    assert dropped == 1
    assert text == "It multiplies `result` by every `i` up to `n` and returns it. Capisce?"


def test_true_claims_and_denials_are_kept_word_for_word():
    for code, answer in ((RECURSION, "`factorial` is recursive, kid: it calls itself on `n` minus one."),
                         (LOOP, "No recursion here, pal: `factorial` loops over `range` and returns `result`.")):
        assert drop_unsupported(code, answer) == (answer, 0)


def test_an_invented_name_is_dropped_in_every_sentence_it_appears():
    answer = "It calls `math.prod` on the range, boss. Then `math.prod` hands back the total. It returns `result`."
    text, dropped = drop_unsupported(LOOP, answer)
    assert dropped == 2 and text == "It returns `result`."


def test_a_false_claim_made_in_three_sentences_is_dropped_from_each():
    """The checks report a claim once per answer; the post-check asks again until no sentence is left with one."""
    answer = ("`factorial` is a recursive racket, pal. It recurses down to one. Then the recursion unwinds. "
              "It returns `result`.")
    text, dropped = drop_unsupported(LOOP, answer)
    assert dropped == 3 and text == "It returns `result`."


def test_code_that_does_not_parse_loses_nothing():
    answer = "This ain't Python, pal, it's SQL: a recursive query."
    assert drop_unsupported("WITH RECURSIVE t AS (SELECT 1) SELECT * FROM t", answer) == (answer, 0)


def test_a_sentence_longer_than_a_claims_quote_is_dropped_too():
    long = ("`factorial` is a recursive racket that starts `result` at one, multiplies it by every `i` from two up "
            "to `n` in a plain loop, one after the other like a crew counting the take at the end of a long night, "
            "and hands the product back.")
    assert len(long) > 200  # a claim quotes its sentence's first 200 characters
    text, dropped = drop_unsupported(LOOP, long + " Capisce?")
    assert dropped == 1 and text == "Capisce?"


def test_an_interactive_session_is_checked_against_its_statements_and_its_own_record():
    """A ``>>>`` paste was read as not Python, so nothing was checked: "the list comprehension walks `nums`" was
    served for a session with no comprehension. Its traceback supports "raises", as a run's would."""
    session = (">>> nums = [3, 1, 2]\n>>> sorted(nums)\n[1, 2, 3]\n>>> nums[5]\nTraceback (most recent call last):\n"
               "  File \"<stdin>\", line 1, in <module>\nIndexError: list index out of range\n")
    answer = ("`sorted` hands back a new list, pal. The list comprehension walks `nums` and keeps three items. "
              "Index 5 raises IndexError.")
    assert drop_unsupported(session, answer) == ("`sorted` hands back a new list, pal. Index 5 raises IndexError.", 1)
    quiet = ">>> nums = [3, 1, 2]\n>>> sorted(nums)\n[1, 2, 3]\n"  # no traceback: nothing raised
    assert drop_unsupported(quiet, "Sorting never fails, but `sorted` raises a TypeError here.")[1] == 1


def test_code_pasted_with_its_traceback_is_checked_and_its_traceback_supports_raises():
    pasted = ('settings = {"region": "us-east"}\nwait = settings["timeout"]\n\nTraceback (most recent call last):\n'
              '  File "deploy.py", line 2, in <module>\nKeyError: \'timeout\'\n')
    answer = "The lookup raises a KeyError, pal. The recursive call never ends. Add the key, capisce?"
    assert drop_unsupported(pasted, answer) == ("The lookup raises a KeyError, pal. Add the key, capisce?", 1)


def test_what_stays_keeps_its_own_line_breaks_and_extends_the_text_before_the_first_dropped_sentence():
    """An answer of one sentence a line lost its line breaks when a sentence was dropped ("A.\\nB." came back as
    "A. B."), so a stream that had shown "A.\\nB." had to replace it with the final text."""
    from mafioso.core.claim_check import first_unsupported

    answer = ("It multiplies `result` by every `i`, pal.\nThen it returns `result`.\n\n"
              "`factorial` is a recursive racket.\nCapisce?")
    text, dropped = drop_unsupported(LOOP, answer)
    assert dropped == 1
    assert text == "It multiplies `result` by every `i`, pal.\nThen it returns `result`.\n\nCapisce?"
    at = first_unsupported(LOOP, answer)
    assert text.startswith(answer[:at].rstrip())
    assert drop_unsupported(LOOP, "`factorial` is recursive, pal.\nIt returns `result`.") == ("It returns `result`.", 1)
