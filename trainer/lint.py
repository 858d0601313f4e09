"""The dataset lint behind ``mafioso data check``: what makes a persona dataset teach well.

Errors (exit status 1): near-duplicate code, explanations containing code, and an opener or sign-off
phrase used by more than 10 % of the answers. Warnings: samples in different files that teach the same
lesson (a validation row that repeats a training row's point measures memory, not understanding),
explanation length outliers (words, sentences), missing persona markers and topics with no sample. The
report ends with the topic coverage table.
"""

from __future__ import annotations

import ast
import io
import keyword
import math
import re
import statistics
import tokenize
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from mafioso.core.text_checks import PERSONA_MARKERS, contains_code, persona_markers, phrase, sentences, words
from mafioso.trainer.dataset import Sample

WORDS = (30, 110)
SENTENCES = (2, 6)
MAX_PHRASE_SHARE = 0.10
PHRASE_WORDS = 3
NEAR_DUPLICATE = 0.85  # Jaccard similarity of code-shape 4-grams
MIN_SHAPE = 30  # shorter snippets (a regex call and a print) share their shape by nature, not by copying
#: TF-IDF cosine of code + explanation words above which two samples from different files likely teach the same
#: lesson: the late-binding pair basics-v17 / oop-024 scored 0.49, different argparse or sqlite3 lessons 0.45-0.50,
#: distinct topics stay under 0.40. A warning to read both, not a verdict.
SAME_LESSON = 0.45
_LESSON_WORD = re.compile(r"[a-z_]{3,}")

_STDLIB_TOOLS = {"itertools", "functools", "collections", "argparse", "logging", "subprocess", "sqlite3"}
_FILES = {"open", "pathlib", "Path", "glob", "os", "shutil"}


@dataclass
class LintReport:
    """Lint findings and the coverage table of a set of samples."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    coverage: dict[str, int] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    total: int = 0

    def render(self) -> str:
        lines = ["", "topic coverage (samples with the feature):"]
        for topic, count in self.coverage.items():
            share = count / self.total if self.total else 0
            lines.append(f"  {topic:<22} {count:>4}  {'#' * round(share * 60)}")
        lines.append("")
        lines.append("explanation length: " + ", ".join(f"{k} {v:g}" for k, v in self.stats.items()))
        lines += [f"warning: {w}" for w in self.warnings] + [f"error: {e}" for e in self.errors]
        lines.append(f"lint: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def code_shape(code: str) -> list[str]:
    """Tokens of ``code`` with names, strings and numbers replaced by their kind."""
    shape = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.NAME:
                shape.append(tok.string if keyword.iskeyword(tok.string) else "N")
            elif tok.type in (tokenize.STRING, tokenize.NUMBER):
                if shape[-2:] == ["L", ","]:  # a run of literals ("a", "b", "c") is one literal
                    shape.pop()
                    continue
                shape.append("L")
            elif tok.type == tokenize.OP:
                shape.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code.split()
    return shape


def _shingles(shape: list[str], n: int = 4) -> set[tuple[str, ...]]:
    return {tuple(shape[i:i + n]) for i in range(max(1, len(shape) - n + 1))}


def topics(code: str) -> set[str]:
    """Coverage features of one snippet, from its syntax tree."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # MemoryError: the parser's stack on deep nesting
        return {"not python"}
    found: set[str] = set()
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.add("function")
            if node.decorator_list:
                found.add("decorator")
            if any(isinstance(c, ast.Call) and getattr(c.func, "id", None) == node.name for c in ast.walk(node)):
                found.add("recursion")
            if any(isinstance(n, (ast.FunctionDef, ast.Lambda)) for n in ast.walk(node) if n is not node):
                found.add("closure/lambda")
        kinds = {
            ast.ClassDef: "class", ast.AsyncFunctionDef: "async", ast.Await: "async",
            ast.ListComp: "comprehension", ast.DictComp: "comprehension", ast.SetComp: "comprehension",
            ast.GeneratorExp: "generator", ast.Yield: "generator", ast.YieldFrom: "generator",
            ast.Try: "exception", ast.Raise: "exception", ast.With: "context manager",
            ast.For: "loop", ast.While: "loop", ast.JoinedStr: "string formatting", ast.Lambda: "closure/lambda",
            ast.If: "control flow", ast.AnnAssign: "typing",
        }
        for kind, topic in kinds.items():
            if isinstance(node, kind):
                found.add(topic)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                node.returns or any(a.annotation for a in node.args.args)):
            found.add("typing")
    if "dataclass" in names | attrs or "property" in names:
        found.add("class")
    if "re" in modules:
        found.add("regex")
    if modules & {"json", "csv"}:
        found.add("json/csv")
    if modules & {"datetime", "time", "zoneinfo"}:
        found.add("datetime")
    if modules & {"threading", "multiprocessing", "concurrent"}:
        found.add("threads/processes")
    if modules & _STDLIB_TOOLS:
        found.add("stdlib tools")
    if modules & {"numpy", "pandas"}:
        found.add("numpy/pandas")
    if modules & {"pytest", "unittest"} or any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
        found.add("tests")
    if modules & {"flask", "fastapi", "requests", "sys", "argparse", "click"} or "route" in attrs:
        found.add("web/cli")
    if modules & {"typing"}:
        found.add("typing")
    if (names | attrs) & _FILES or modules & {"pathlib", "glob", "shutil"}:
        found.add("file i/o")
    if modules & {"asyncio"}:
        found.add("async")
    if any(isinstance(n, ast.Call) and getattr(n.func, "id", "") in {"sorted", "sort", "heappush"}
           for n in ast.walk(tree)) or attrs & {"sort", "heappush", "popleft"}:
        found.add("algorithms")
    if len(code.strip().splitlines()) == 1:
        found.add("one-liner")
    return found


TOPICS = ("function", "control flow", "loop", "comprehension", "string formatting", "class", "decorator",
          "closure/lambda", "generator", "context manager", "exception", "recursion", "file i/o", "json/csv",
          "regex", "datetime", "typing", "async", "threads/processes", "stdlib tools", "algorithms",
          "numpy/pandas", "web/cli", "tests", "one-liner", "not python")


def same_lesson_pairs(samples: list[Sample]) -> list[str]:
    """Warnings for samples of different files whose code and explanation share most of their rarer words
    (TF-IDF cosine >= SAME_LESSON): e.g. two late-binding lambda lessons, one in train and one in validation."""
    bags = [Counter(_LESSON_WORD.findall(f"{s.code} {s.explanation}".lower())) for s in samples]
    df = Counter(word for bag in bags for word in bag)
    vectors = []
    for bag in bags:
        vec = {w: (1 + math.log(n)) * math.log(len(bags) / df[w]) for w, n in bag.items()}
        norm = math.sqrt(sum(x * x for x in vec.values())) or 1.0
        vectors.append({w: x / norm for w, x in vec.items()})
    found = []
    for i, a in enumerate(vectors):
        for j in range(i):
            if samples[i].source == samples[j].source:
                continue
            b = vectors[j]
            small, large = (a, b) if len(a) < len(b) else (b, a)
            similarity = sum(x * large.get(w, 0.0) for w, x in small.items())
            if similarity >= SAME_LESSON:
                found.append(f"{samples[i].where}: may teach the same lesson as {samples[j].where} "
                             f"(similarity {similarity:.2f}); make one of them about something else")
    return found


def lint_report(samples: list[Sample], markers: tuple[str, ...] = PERSONA_MARKERS) -> LintReport:
    """Lint ``samples`` together (run it on train and validation files at once to catch leaks)."""
    report = LintReport(total=len(samples))

    # near-duplicate code: same shape with other names, strings and numbers
    shingles = [_shingles(code_shape(s.code)) for s in samples]
    index: dict[tuple, list[int]] = defaultdict(list)
    for i, sh in enumerate(shingles):
        for g in sh:
            index[g].append(i)
    long_enough = [len(code_shape(s.code)) >= MIN_SHAPE for s in samples]
    for i, sh in enumerate(shingles):
        if not long_enough[i]:
            continue
        candidates = Counter(j for g in sh for j in index[g] if j < i and long_enough[j])
        for j, shared in candidates.items():
            if shared / len(sh | shingles[j]) >= NEAR_DUPLICATE:
                report.errors.append(f"{samples[i].where}: code nearly duplicates {samples[j].where}")

    report.warnings += same_lesson_pairs(samples)

    word_counts, sentence_counts = [], []
    for s in samples:
        text = s.explanation
        if contains_code(text):
            report.errors.append(f"{s.where}: field 'mafia_explanation' contains code; explain it in words")
        n_words, n_sent = len(words(text)), len(sentences(text))
        word_counts.append(n_words)
        sentence_counts.append(n_sent)
        if not WORDS[0] <= n_words <= WORDS[1]:
            report.warnings.append(f"{s.where}: explanation has {n_words} words (aim for {WORDS[0]}-{WORDS[1]})")
        if not SENTENCES[0] <= n_sent <= SENTENCES[1]:
            report.warnings.append(
                f"{s.where}: explanation has {n_sent} sentences (aim for {SENTENCES[0]}-{SENTENCES[1]})")
        if not persona_markers(text, markers):
            report.warnings.append(f"{s.where}: explanation has no persona marker (capisce, pal, boss, ...)")

    for label, end in (("opener", False), ("sign-off", True)):
        counts = Counter(phrase(s.explanation, PHRASE_WORDS, end) for s in samples)
        for text, n in counts.most_common():
            if n >= 3 and n / len(samples) > MAX_PHRASE_SHARE:
                report.errors.append(
                    f"{label} {text!r} starts/ends {n} of {len(samples)} explanations (> 10 %); vary it")

    coverage = Counter(t for s in samples for t in topics(s.code))
    report.coverage = {t: coverage.get(t, 0) for t in TOPICS}
    for topic, n in report.coverage.items():
        if n == 0:
            report.warnings.append(f"no sample covers topic {topic!r}")
    if samples:
        report.stats = {
            "words min": min(word_counts), "words median": statistics.median(word_counts),
            "words max": max(word_counts), "sentences median": statistics.median(sentence_counts),
        }
    return report
