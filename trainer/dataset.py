"""Loading Mafioso datasets and turning them into training rows.

Accepted files, all holding samples ``{"prompt", "code", "mafia_explanation"}`` (extra keys ignored;
``explanation`` may stand for ``mafia_explanation``, as in another persona's data):

* the original format: a JSON object whose values are samples, keyed by sample id;
* a JSON list of samples (key = ``id`` field or the index);
* JSONL, one sample per line (key = ``id`` field or ``line N``).

Several files merge, later files adding samples. Every problem is reported at once, each naming the file,
the key and the field. Nothing is ever written back to a dataset file.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from mafioso.core.errors import DatasetError
from mafioso.prompts.fences import FENCE_MARK

FIELDS = ("prompt", "code", "mafia_explanation")
#: Longest accepted text per field, in characters: a longer row is refused by name before any parsing or lint
#: (a 4 MB code row once took 50 s and 1.7 GB in the lint). A 200-line paste is ~8,000 characters.
MAX_CHARS = {"prompt": 2_000, "code": 40_000, "mafia_explanation": 4_000}


@dataclass(frozen=True)
class Sample:
    """One persona example and where it came from."""

    key: str
    source: str
    prompt: str
    code: str
    explanation: str

    @property
    def where(self) -> str:
        return f"{self.source}: key {self.key!r}"


def normalise_code(code: str) -> str:
    """Code with whitespace differences removed: the basis for duplicate detection."""
    return "\n".join(" ".join(line.split()) for line in code.strip().splitlines() if line.strip())


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object's dict, refusing a repeated key: plain ``json.loads`` silently keeps the last row."""
    data = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(key)
        data[key] = value
    return data


def _rows(path: Path, text: str) -> list[tuple[str, object]]:
    """(key, row) pairs of one file in any accepted format; raises DatasetError on bad JSON."""
    stripped = text.lstrip()
    if not stripped:
        raise DatasetError([f"{path}: the file is empty"])
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        if not (stripped.startswith("{") and exc.msg == "Extra data"):
            raise DatasetError([f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"])
        data = None
    except RecursionError:
        raise DatasetError([f"{path}: JSON nested too deep; a dataset is an object or list of flat samples"])
    except _DuplicateKey as exc:
        raise DatasetError([f"{path}: key {exc.args[0]!r} appears more than once (JSON keeps only the last; "
                            "rename one)"]) from None
    if data is None or (isinstance(data, dict) and "code" in data and isinstance(data.get("code"), str)):
        return _jsonl_rows(path, text)  # JSONL (a one-line JSONL file parses as one sample object)
    if isinstance(data, dict):
        return [(str(key), value) for key, value in data.items()]
    if isinstance(data, list):
        return [(str(row.get("id", i)) if isinstance(row, dict) else str(i), row) for i, row in enumerate(data)]
    raise DatasetError([f"{path}: expected a JSON object keyed by sample id, a JSON list or JSONL"])


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, object]]:
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}: invalid JSON at line {number}, column {exc.colno}: {exc.msg}")
            continue
        except RecursionError:
            problems.append(f"{path}: line {number} is JSON nested too deep")
            continue
        key = str(row["id"]) if isinstance(row, dict) and "id" in row else f"line {number}"
        rows.append((key, row))
    if problems:
        raise DatasetError(problems)
    return rows


def _check_row(path: Path, key: str, row: object, problems: list[str]) -> Sample | None:
    where = f"{path}: key {key!r}"
    if not isinstance(row, dict):
        problems.append(f"{where}: expected an object with {', '.join(FIELDS)}, got {type(row).__name__}")
        return None
    if "mafia_explanation" not in row and "explanation" in row:  # another persona's data: the neutral name
        row = {**row, "mafia_explanation": row["explanation"]}
    ok = True
    for name in FIELDS:
        if name not in row:
            problems.append(f"{where}: field {name!r} is missing")
            ok = False
        elif not isinstance(row[name], str):
            problems.append(f"{where}: field {name!r} must be a string, got {type(row[name]).__name__}")
            ok = False
        elif not row[name].strip():
            problems.append(f"{where}: field {name!r} is empty")
            ok = False
        elif len(row[name]) > MAX_CHARS[name]:
            problems.append(f"{where}: field {name!r} has {len(row[name]):,} characters, over the limit of "
                            f"{MAX_CHARS[name]:,}; shorten it or split the sample")
            ok = False
    if ok and FENCE_MARK.search(row["mafia_explanation"]):
        problems.append(f"{where}: field 'mafia_explanation' contains a code block; explain in words")
        ok = False
    if not ok:
        return None
    return Sample(key, str(path), row["prompt"].strip(), row["code"].strip("\n"),
                  row["mafia_explanation"].strip())


def load_samples(paths: list[str | Path]) -> list[Sample]:
    """Load and validate every file; raise one DatasetError listing all problems."""
    if not paths:
        raise DatasetError(["no dataset file given (use --data FILE)"])
    samples: list[Sample] = []
    problems: list[str] = []
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.append(f"{path}: file not found")
            continue
        except UnicodeDecodeError as exc:
            problems.append(f"{path}: not UTF-8 text (byte {exc.start})")
            continue
        try:
            rows = _rows(path, text)
        except DatasetError as exc:
            problems.extend(exc.problems)
            continue
        for key, row in rows:
            sample = _check_row(path, key, row, problems)
            if sample:
                samples.append(sample)
    problems.extend(duplicate_problems(samples))
    if problems:
        raise DatasetError(problems)
    return samples


def duplicate_problems(samples: list[Sample], against: list[Sample] = ()) -> list[str]:
    """Samples whose normalised code repeats an earlier one (within ``samples`` or from ``against``)."""
    seen = {normalise_code(s.code): s for s in against}
    problems = []
    for sample in samples:
        norm = normalise_code(sample.code)
        if norm in seen:
            problems.append(f"{sample.where}: field 'code' duplicates {seen[norm].where}")
        else:
            seen[norm] = sample
    return problems


def split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A seeded train/validation split (at least one sample on each side)."""
    if len(samples) < 2:
        raise DatasetError([f"need at least 2 samples to hold some out for validation, got {len(samples)}"])
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    n_val = min(len(samples) - 1, max(1, round(len(samples) * fraction)))
    held = set(order[:n_val])
    train = [s for i, s in enumerate(samples) if i not in held]
    return train, [s for i, s in enumerate(samples) if i in held]


def tokenize(samples: list[Sample], tokenizer, max_length: int, persona: str = "mafioso",
             prompt_format: int | None = None) -> tuple[list[dict], list[str]]:
    """Training rows (input_ids + completion_mask) in ``persona``'s prompt, in ``prompt_format`` (default: the
    current one), and warnings for rows cut at ``max_length`` (or left out, when even their prompt does not fit)."""
    from mafioso.prompts import PROMPT_FORMAT, encode

    rows, warnings = [], []
    for sample in samples:
        row = encode(tokenizer, sample.code, sample.prompt, sample.explanation, persona_name=persona,
                     prompt_format=prompt_format or PROMPT_FORMAT)
        if len(row["input_ids"]) > max_length:
            if not any(row["completion_mask"][:max_length]):  # the cut leaves no answer to learn from
                warnings.append(f"{sample.where}: its prompt alone is {row['completion_mask'].index(1)} tokens, "
                                f"over max_length={max_length}; left out (raise --max-length to train on it)")
                continue
            warnings.append(f"{sample.where}: {len(row['input_ids'])} tokens, cut to max_length={max_length}")
            row = {k: v[:max_length] for k, v in row.items()}
        rows.append(row)
    return rows, warnings
