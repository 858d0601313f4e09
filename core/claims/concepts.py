"""False concepts: the answer says recursive, generator, decorator, ... and the code has no such construct, or it
denies one ("it never recurses") that the code has."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mafioso.core.claims.printable import PURE_MODULES
from mafioso.prompts.facts import code_features, definition_features
from mafioso.core.claims.text import FENCE, SENTENCE, SPAN, advice_from, denied, mask, negated, quoted, within

__all__ = ["CONCEPTS", "Concept", "false_concepts"]

_LOOPING = frozenset({"loop", "list comprehension", "dict comprehension", "set comprehension",
                      "generator expression"})
_COMPREHENSIONS = frozenset({"list comprehension", "dict comprehension", "set comprehension",
                             "generator expression"})
_BRACKETED = _COMPREHENSIONS - {"generator expression"}  # "no comprehension" may fairly say so of a genexp

@dataclass(frozen=True)
class Concept:
    """One row of :data:`CONCEPTS`: a claim, the phrase that makes it, and what in the code makes it true."""

    claim: str
    phrase: str  # regex, matched case-insensitively outside backticks and double quotes
    features: frozenset[str]  # any one of these mafioso.prompts.facts features supports the claim
    code: str | None = None  # or this regex on the code text, for what the syntax tree cannot name
    #: words that make this claim on their own: when the code lacks the construct, grounded decoding bans
    #: their first token (mafioso.worker.grounded_decoding); empty for claims that need a phrase
    words: tuple[str, ...] = ()
    #: a denial of the claim ("it never recurses", "no lambda here") is false when the code has one of these;
    #: empty where a denial can be true of code that has the construct ("it never prints" of a function, while
    #: the module prints; "never raises" of code that catches; "no explicit loop" of a comprehension)
    denial: frozenset[str] = frozenset()
    #: matched with the names in backticks read as words ("`pop` takes the first one off"), for claims about what
    #: a named call or operator does; other rows read a backticked name as one opaque word
    names: bool = False


# "no X" where a denial lists what the code lacks: at a clause's start or after "with" ("no functions, no
# classes", "with no methods"); "it gets no function" says something else
_LISTED_NO = r"(?:(?<=^no )|(?<=^ no )|(?<=[,;:] no )|(?<=\bwith no ))"

#: The vocabulary of concept claims, in one table. Two more kinds of support are added per answer: what the
#: code really printed supports "prints" (logging), a run that ended in a traceback supports "raises".
CONCEPTS: tuple[Concept, ...] = (
    # "the base case" too: every reference that says it is about recursive code (11 of 1,002 rows), and the
    # shipped Gemma said it of a loop, a conditional and a FizzBuzz
    Concept("recursive", r"\brecurs(?:ive|ively|ion|ions|es|ing|e)\b|\bcall(?:s|ing|ed)? (?:it|him|her)self\b"
                         r"|\bbase cases?\b",
            frozenset({"recursion"}), denial=frozenset({"recursion"}),
            code=r"rglob|\bwalk\(|\*\*/|/\*\*|recursive\s*=\s*True",  # a folder searched to the bottom
            words=("recursive", "recursively", "recursion")),
    Concept("generator", r"\bgenerators?\b", frozenset({"generator", "generator expression"}),
            words=("generator", "generators"), denial=frozenset({"generator"})),  # "a list, not a generator"
    # "`evens` is a generator expression" of a def with yield (no denial: "a generator, not a generator
    # expression" is true of such a def while its body may hold one)
    Concept("generator expression", r"\bgenerator expressions?\b", frozenset({"generator expression"})),
    Concept("list comprehension", r"\blist comprehensions?\b", frozenset({"list comprehension"}),
            denial=frozenset({"list comprehension"})),
    Concept("dict comprehension", r"\bdict(?:ionary)? comprehensions?\b", frozenset({"dict comprehension"}),
            denial=frozenset({"dict comprehension"})),
    Concept("set comprehension", r"\bset comprehensions?\b", frozenset({"set comprehension"}),
            denial=frozenset({"set comprehension"})),
    Concept("comprehension", r"(?<!list )(?<!dict )(?<!set )(?<!dictionary )\bcomprehensions?\b", _COMPREHENSIONS,
            words=("comprehension", "comprehensions"), denial=_BRACKETED),
    Concept("decorator", r"\bdecorat(?:or|ors|ed|es|ing)\b", frozenset({"decorator"}),
            words=("decorator", "decorators", "decorated"), denial=frozenset({"decorator"})),
    Concept("dataclass", r"\bdata ?class(?:es)?\b", frozenset({"dataclass"}), words=("dataclass",),
            denial=frozenset({"dataclass"})),
    Concept("async", r"\basync(?:hronous|hronously)?\b|\bawait(?:s|ed|ing)?\b|\bcoroutines?\b|\bevent loop\b",
            frozenset({"async"}), words=("asynchronous", "asynchronously", "coroutine", "coroutines")),
    # (no denial: "the coroutine was never awaited", "the loop itself isn't async" are true of async code)
    # but "No coroutines, no loop, just one guy doing his job" of two `async def`s (a Gemma candidate, unseen code):
    # "no coroutines" at a clause's start, as the "function" row below
    Concept("coroutine", _LISTED_NO + r"(?:coroutines?|async(?:hronous)?"
                         r"(?:\s+(?:functions?|code|calls?))?|awaits?)\b", frozenset({"async"}),
            denial=frozenset({"async"})),
    Concept("lambda", r"\blambdas?\b", frozenset({"lambda"}), words=("lambda", "lambdas"),
            denial=frozenset({"lambda"})),
    Concept("class", r"\b(?:defines?|defining|declares?|declaring|builds?|creates?|sets? up)\s+(?:a|an|the|"
                     r"its own|one|two|three)\s+(?:new\s+|custom\s+|little\s+|small\s+|simple\s+)?class(?:es)?\b"
                     r"|\bclass (?:called|named)\b|\bis an? (?:\w+ )?class\b", frozenset({"class"}),
            denial=frozenset({"class"}),  # "doesn't define a class": a `class` statement says otherwise
            code=r"(?<![\w.])[A-Z][a-z]\w*\("),  # "`Counter` is a class": the code makes an instance of one
    Concept("prints", r"\bprint(?:s|ed|ing)?\b", frozenset({"print"})),
    Concept("raises", r"\b(?:rais(?:es|e|ed|ing)|throws?|throwing)\s+(?:(?:a|an|the|its)\s+)?(?:\S+\s+){0,2}?"
                      r"(?:\w*error|\w*exception|exceptions?)\b", frozenset({"raise", "try"})),
    # denied ("no loops, no mess", "no for loop") of a `for` or `while` statement; "no explicit loop" of a
    # comprehension is true
    Concept("loops", r"(?<!event )\b(?:(?:for|while)[- ])?loop(?:s|ed|ing)?\b", _LOOPING, denial=frozenset({"loop"})),
    # "a nested loop" of one loop: 3 references say it of nested code, one denies it ("no nested loops") of a
    # single pass; the shipped Gemma said it of single loops 6 times in 372 answers
    # "A three-layer loop, the classic fizzbuzz" of one loop (the Qwen adapter's README answer); "the inner loop" is
    # said by 7 references, all of nested code
    Concept("nested loop", r"\bnested (?:for[- ]|while[- ])?loops?\b|\bloops? (?:inside|within) (?:a|another) "
                           r"loop\b|\bdouble loop\b|\b(?:two|three|four|double|triple)[- ](?:layer|level|deep|tier)"
                           r"(?:ed)?\s+(?:for[- ]|while[- ])?loops?\b|\b(?:inner|innermost|outer|outermost)\s+"
                           r"(?:for[- ]|while[- ])?loops?\b", frozenset({"nested loop"})),
    # "`flipped` is a nested list comprehension" of one comprehension over a zip (the shipped Gemma, unseen code);
    # both references that say it are of one with two fors
    Concept("nested comprehension", r"\bnested (?:list |dict(?:ionary)? |set )?comprehensions?\b"
                                    r"|\bcomprehensions? (?:inside|within) (?:a|another) comprehension\b",
            frozenset({"nested comprehension"})),
    # "`Counter` is a mutable default argument" of a class whose methods take no defaults (the shipped Gemma,
    # unseen code); 2 references say it of a list or dict default, 3 name "the mutable default trap" that code
    # dodges or is like ("same trap as a mutable default list"): a trap named is not a claim, and code with any
    # default (`acc=None`, a dataclass's `default_factory`) may be said to dodge one
    Concept("mutable default", r"(?<!\bas a )\bmutable defaults?\b(?!\s+(?:\w+\s+)?(?:traps?|pitfalls?|gotchas?))",
            frozenset({"mutable default", "default parameter"}), code=r"default_factory",
            denial=frozenset({"mutable default"})),
    # "the first print shows 212, and the second shows it rounded" of one print of one value (the Qwen adapter,
    # unseen code); the 78 references that count prints say it of code with several (or print passed on: map)
    Concept("several prints", r"\b(?:second|third|fourth) print(?:s| calls?| statements?| lines?)?\b"
                              r"|\b(?:both|two|three|four|last two) (?:prints|print calls|print statements)\b"
                              r"|\bprints? (?:twice|two times|three times)\b|\bfirst print\b[^.;]*\bthe second\b",
            frozenset({"several prints"}), code=r"\bprint\b(?!\s*\()"),
    # "It prints each one on its own line" of one print of one list (the Qwen adapter, unseen code, four times): one
    # print call that runs once writes one line, unless what it prints may hold a line break (a newline in a
    # literal, a multi-line string, a class's own __str__/__repr__, a sep= or end=, json's indent, textwrap, a
    # library's value: any import outside the pure modules)
    Concept("several lines", r"\b(?:prints?|printed|printing|shows?|showing|shown|outputs?|displays?)\b[^.;:]{0,60}?"
                             r"(?:\bper line\b|\bon (?:its|their) own lines?\b|\bon (?:separate|different|new|"
                             r"successive) lines\b|\bline by line\b|\bone line (?:per|for each|for every)\b|\b(?:two|"
                             r"three|four|five|six|seven|eight|nine|ten|several|multiple) lines\b|\beach on a (?:new|"
                             r"separate) line\b)",
            frozenset({"several prints"}),
            code=r"\\n|linesep|chr\(10\)|\'\'\'|\"\"\"|__str__|__repr__|\bsep\s*=|\bend\s*=|indent|textwrap"
                 rf"|(?m:^\s*(?:import|from)\s+(?!(?:{'|'.join(sorted(PURE_MODULES))})\b))"),
    # "the empty list gives OSError, which the function catches" of code with no try (the Qwen adapter, unseen
    # code): an exception caught by name; "the `_` case catches everything else", "the catch" are not claims; a
    # try with only a finally catches nothing ("The try catches anything that raises `FileNotFoundError`", Gemma)
    Concept("catches", r"\b(?:catch(?:es|ing)?|traps?|trapping|swallows?)\s+(?:the\s+|an?\s+|any\s+|every\s+)?"
                       r"\w*(?:Error|Exception)s?\b|\b(?:which|that)\s+(?:the\s+function|it|(?:the\s+)?`+)\s+catches\b",
            frozenset(), code=r"\bexcept\b|suppress\(|\.error\b|errorhandler|exception_handler|on_error|"
                              r"pytest\.raises|assertRaises"),
    # "It does this by dividing by the base" of a power that only multiplies (a Gemma candidate, unseen code): a
    # division, a remainder or a mean in the code (all 50 references that say it are of such code)
    Concept("divides", r"\b(?:divid(?:es|ing|ed|e)|halv(?:es|ing|ed|e))\b(?:\s+\S+){0,3}?\s+by\b", frozenset(),
            code=r"/|%|divmod|\bdiv\b|truediv|floordiv|\bmean\b|median|average|statistics"),
    # "multiplies it by `v`" of a running sum (the shipped Gemma, unseen code): a product, a power, a percent
    # format (which multiplies by 100) or a numeric library in the code; a `*` of `*args` is spared too
    Concept("multiplies", r"\bmultipl(?:y|ies|ied|ying)\b", frozenset(),
            code=r"\*|@|%|\bprod\b|\bmul\b|\bpow\b|numpy|np\.|torch|pandas|\btimes\b"),
    # "`sort` puts the payoffs in alphabetical order" of a list of numbers (the shipped Gemma, unseen code): text
    # in the code to be ordered by letter (a literal, str, input, a file, a split, ...)
    Concept("alphabetical", r"\balphabetic(?:al|ally)?\b", frozenset(),
            code=r"['\"]|\bstr\b|input\(|open\(|read|split|argv|environ|csv|json|sql|\.keys\("),
    # "it loops forever" of a `for` over a range: endless needs a while, an endless iterator, a server loop or
    # recursion (no reference says it otherwise; the shipped Gemma did of FizzBuzz and a one-liner)
    Concept("loops forever", r"\b(?:loops?|looping|looped|runs?|running|spins?|spinning|keeps? going|goes on)\s+"
                             r"forever\b|\binfinite(?:ly)?\b|\bendless(?:ly)?\b|\bnever[- ]ending\b", frozenset(),
            code=r"\bwhile\b|count\(|cycle\(|repeat\(|forever|\brecurs"),
    # "the Fibonacci sequence" of FizzBuzz (sampled Gemma answers): a name with "fib", or the recurrence itself,
    # called on n - 1 and n - 2, a pair that steps as (b, a + b), or the last two items added (the 6 references
    # that say it are such code, stairs and climbing ways among them)
    Concept("fibonacci", r"\bfibonacci\b", frozenset(),
            code=r"(?i:fib)|\(\s*\w+\s*-\s*1\b[^)]*\)\s*\+\s*[\w.]+\(\s*\w+\s*-\s*2\b"
                 r"|(\w+),\s*(\w+)\s*=\s*\2,\s*(?:\1\s*\+\s*\2|\2\s*\+\s*\1)\b|\[-[12]\]\s*\+\s*\w+\[-[12]\]"),
    # "sorted alphabetically, so the last member goes first" of a dict kept in insertion order (the Qwen adapter,
    # unseen code)
    Concept("sorts", r"\bsorts\b|\bsorting\b|\bsorts?\s+(?:it|them|the|by|in place)\b|\bsorted\s+(?:it|them|the)\b"
                     r"|\bsorted\s+(?:alphabetically|by\s+(?:name|key|value|length|size|price|score|age|count))\b",
            frozenset({"sort"}),  # or by hand (a *sort* function, two items swapped), a library or a query (pandas'
            # groupby and merge sort their keys)
            code=r"(?i:sort|order by|order_by|value_counts|most_common|median|nlargest|nsmallest|insort|heap|groupby|"
                 r"\.merge\(|pivot|crosstab)|"
                 r"(\w+)\[[^\]\n]+\],\s*\1\[[^\]\n]+\]\s*="),
    # "`fizzbuzz` is a one-liner" of a ten-line function (the shipped Qwen adapter's README answer), and "a one-line
    # version of the classic game" (its retry once that sentence was dropped); references say it of a conditional
    # expression, and "in one line" / "on one line" mostly of output, which is not this claim
    Concept("one-liner", r"\bone[- ]liners?\b|\bone[- ]line\s+(?:version|function|method|loop|solution|program|"
                         r"script|definition|implementation|trick|affair|job|body)\b", frozenset({"one-liner"})),
    # "a plain loop, no function, no overhead" of code with a `def` (the same answer), "`Counter` is a class with no
    # methods" of a class with two: only a denial in a list of them or after "with", at a clause's start; "it
    # gets no function" (a decorator's optional argument) and "no function calls" say something else
    Concept("function", _LISTED_NO + r"(?:functions?|methods?)\b"
                        r"(?!\s+calls?\b)", frozenset({"function"}), denial=frozenset({"function"})),
    # "The `Counter` itself is just an ordinary list, no class" of a `class Counter:` (a Gemma candidate, unseen
    # code), as the "function" row above; "no class attribute" says something else
    Concept("listed class", _LISTED_NO + r"class(?:es)?\b(?!\s+(?:attributes?|methods?|variables?|names?|level|"
                            r"body|bodies|instances?|objects?)\b)", frozenset({"class"}), denial=frozenset({"class"})),
    # "a `Literal` here is no Python", "This isn't Python" of code that parses (Gemma runs on the validation rows;
    # the 15 references that say it are of code that does not parse, which this check never reads); spared where a
    # line starts as a YAML key does (``name: tests`` parses as an annotation)
    # ("not Python 2", "not Python-specific" say something else; "if the input is not Python, say so", the
    # instruction echoed by a bare base, is a condition, not a claim; "the text inside `note` is plain text, not
    # Python code" is said of a string, not of the code)
    Concept("not python", "".join(f"(?<!if {who} )(?<!if {who} is )" for who in ("the input", "the code", "it"))
                          + "".join(f"(?<!{kind}, )" for kind in ("text", "string", "data", "json", "output"))
                          + r"\b(?:is\s+not|isn't|ain't|not|no)\s+(?:even\s+|real\s+|valid\s+)?python"
                          + r"\b(?![-.]?\s*\d|-)",
            frozenset(), code=r"(?m)^[\w-]+:(?:\s|$)"),
    # Python's own facts, false whatever the code: "A dict is immutable, so you can't change it" (the shipped
    # Gemma), "A set keeps the order of its first appearance" (the Qwen adapter, unseen code); no reference says one
    Concept("immutable container", r"\b(?:dict(?:ionarie)?s?|dictionary|lists?|sets?)\s+(?:is|are)\s+"
                                   r"(?:also\s+|always\s+)?immutable\b", frozenset()),
    Concept("mutable tuple or string", r"\b(?:tuples?|strings?|frozensets?)\s+(?:is|are)\s+(?:also\s+|always\s+)?"
                                       r"mutable\b", frozenset()),
    Concept("ordered set", r"\bsets?\s+(?:keeps?|preserves?|remembers?)\s+(?:the\s+|its\s+)?(?:insertion\s+)?"
                           r"order\b|\bsets?\s+(?:is|are)\s+ordered\b", frozenset()),
    # "the print shows that same dict, keys first, because dictionaries are unordered" (the Qwen adapter, unseen
    # code): a dict keeps insertion order (Python 3.7 on); the references say "unordered" only of pairs and sets
    Concept("unordered dict", r"\b(?:dict(?:ionarie)?s?|dictionary)\s+(?:is|are)\s+(?:also\s+|always\s+)?"
                              r"(?:unordered|not\s+ordered)\b|\b(?:dict(?:ionarie)?s?|dictionary)\s+(?:keeps?|has|"
                              r"have)\s+no\s+order\b|\b(?:dict(?:ionarie)?s?|dictionary)\s+(?:do|does)(?:n't|\s+not)\s+"
                              r"(?:keep|remember|preserve)\s+(?:any\s+|their\s+|its\s+)?order\b|\b(?:a\s+)?"
                              r"(?:dict(?:ionary)?(?:'s)?|dictionary's)\s+order\s+(?:is\s+not|isn't)\s+guaranteed\b",
            frozenset()),
    # "the plus quantifier means zero or more" (the Qwen adapter, unseen code): in a regex and in argparse's nargs,
    # + is one or more, * zero or more, ? zero or one
    Concept("regex quantifier", r"(?:\bplus|\+)(?:\s+sign)?(?:\s+quantifier)?\s+(?:means|matches|is|stands\s+for|"
                                r"says|wants|takes)\s+(?:\w+\s+){0,2}?(?:zero|none)\s+or\s+more\b"
                                r"|(?:\b(?:star|asterisk)|\*)(?:\s+quantifier)?\s+(?:means|matches|is|stands\s+for|"
                                r"says|wants|takes)\s+(?:\w+\s+){0,2}?one\s+or\s+more\b"
                                r"|(?:\bquestion\s+mark|\?)(?:\s+quantifier)?\s+(?:means|matches|is|stands\s+for|"
                                r"says|wants|takes)\s+(?:\w+\s+){0,2}?(?:zero|one)\s+or\s+more\b",
            frozenset(), names=True),
    # "`pop` takes and returns the first one off" of a list's `pop()` (the Qwen adapter, unseen code): without an
    # argument `pop` takes the last item; an index, a key, `popleft` or `popitem` may take another
    Concept("pop takes the first", r"\bpop(?:s|ped|ping)?\b(?:\s+\w+){0,4}?\s+(?:the|its)\s+(?:first|front|oldest|"
                                   r"earliest|bottom)\b|\bpop(?:s|ped|ping)?\b(?:\s+\w+){0,3}?\s+off\s+the\s+(?:front|"
                                   r"start|beginning|bottom)\b",
            frozenset(), code=r"popleft|popitem|\.pop\(\s*[^)\s]|\bdef\s+pop\b", names=True),
    # "@dataclass writes the Hit class so you can't change it" of a dataclass that is not frozen (the Qwen adapter,
    # unseen code); a frozen one, a property or a guarded __setattr__ may make it so
    Concept("frozen dataclass", r"\bdata ?class(?:es)?\b(?:(?!\b(?:not|no|never|\w+n't)\b)[^.;!?]){0,80}?"
                                r"(?:\bfrozen\b|\bimmutable\b|\bcan't\s+(?:be\s+)?chang|\bcannot\s+(?:be\s+)?chang|"
                                r"\bread-only\b)|\b(?:frozen|immutable|read-only)\s+data ?class",
            frozenset(), code=r"frozen\s*=\s*True|@property|__setattr__|MappingProxyType|NamedTuple|namedtuple",
            names=True),
    Concept("reads a file", r"\b(?:reads?|reading|loads?|loading)\s+(?:\S+\s+){0,3}?files?\b",
            frozenset({"file read"})),
    Concept("writes a file", r"\b(?:writes?|writing|saves?|saving)\s+(?:\S+\s+){0,3}?files?\b",
            frozenset({"file write"})),
    Concept("opens a file", r"\b(?:opens?|opening)\s+(?:\S+\s+){0,3}?files?\b",
            frozenset({"file read", "file write"})),
)
_CONCEPT_RES = tuple((c, re.compile(c.phrase, re.IGNORECASE), re.compile(c.code) if c.code else None)
                     for c in CONCEPTS)

def false_concepts(code: str, answer: str, output: str | None = None, raised: str | None = None) -> list[dict]:
    """Concept claims (:data:`CONCEPTS`) the code contradicts; none when the code does not parse.

    A claim the code lacks is ``{"kind": "false concept", "claim": ..., "text": ...}``; a denial the code
    contradicts ("the function never recurses" of a recursive one) is the same with ``"denied": True``.
    ``output`` (what a run printed) supports "prints" and ``raised`` (the exception a run ended with)
    supports "raises", for code that prints through logging or fails without a ``raise`` of its own.
    """
    features = code_features(code)
    if features is None:
        return []
    features = set(features)
    if output:
        features.add("print")
    if raised:
        features.add("raise")
    found = []
    seen = set()
    # Names (`sort_items`) and quoted text ("a loop of love") are not claims: blank them, keeping offsets.
    unquoted = re.sub(r'"[^"\n]{0,200}"', mask, FENCE.sub(mask, answer))
    prose = SPAN.sub(mask, unquoted)
    named = unquoted.replace("`", " ")  # the same offsets, names as words (Concept.names)
    for at in SENTENCE.finditer(prose):
        original = answer[at.start():at.end()]
        advice = advice_from(original)
        for concept, pattern, code_support in _CONCEPT_RES:
            sentence = (named if concept.names else prose)[at.start():at.end()]
            claim = concept.claim
            has = bool(concept.features & features or (code_support and code_support.search(code)))
            denials = bool(concept.denial & features)
            if (has or claim in seen) and (not denials or (claim, True) in seen):
                continue
            for match in pattern.finditer(sentence):
                start, end = match.span()
                if within(advice, start):
                    continue
                if negated(sentence, start, end):
                    key = (claim, True)
                    wrong = denials and denied(sentence, start, end) and _denial_contradicted(concept, code, original)
                else:
                    key, wrong = claim, not has
                if wrong and key not in seen:
                    seen.add(key)
                    found.append({"kind": "false concept", "claim": claim, **({"denied": True} if key != claim else {}),
                                  "text": quoted(original)})
    return found


def _denial_contradicted(concept: Concept, code: str, sentence: str) -> bool:
    """Whether the code has what ``sentence`` denies: in every ``def`` or ``class`` it names in backticks
    ("`helper` never recurses" may be true while another function does), or anywhere when it names none. A
    named one is never contradicted on decorators (:func:`mafioso.prompts.facts.definition_features`)."""
    definitions = definition_features(code) or {}
    named = [definitions[name] for name in (span.strip().removesuffix("()") for span in SPAN.findall(sentence))
             if name in definitions]
    return all(concept.denial & features for features in named)  # none named: the whole code has it
