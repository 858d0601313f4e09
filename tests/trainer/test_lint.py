"""The dataset lint on hand-made samples: each check fires on what it is for and stays quiet otherwise."""

from mafioso.trainer.dataset import Sample
from mafioso.trainer.lint import same_lesson_pairs

LATE_BINDING_LOOP = ("multipliers = []\nfor factor in range(1, 4):\n    multipliers.append(lambda x: x * factor)\n"
                     "print([m(10) for m in multipliers])",
                     "Late binding, paisan: each lambda in `multipliers` looks up `factor` when it is called, not "
                     "when it is made, so every lambda multiplies by the last value. Freeze it with a default "
                     "argument.")
LATE_BINDING_COMPREHENSION = (
    "multipliers = [lambda x: x * i for i in range(1, 4)]\nprint([m(10) for m in multipliers])",
    "Late binding, wiseguy: each lambda in `multipliers` looks up `i` when it is called, so every lambda "
    "multiplies by the last value of `i`. Freeze it with a default argument, capisce?")
GREETING = ("def greet(name):\n    return f'Hello, {name}'\n\nprint(greet('Vito'))",
            "`greet` glues 'Hello' in front of the `name` it gets and returns it; the script prints the greeting "
            "for Vito. Polite, like a consigliere.")
SLUG = ("import re\n\ndef slugify(title):\n    return re.sub(r'[^a-z0-9]+', '-', title.lower()).strip('-')",
        "`slugify` lowercases the `title`, swaps every run of other characters for a dash with `sub`, and "
        "trims dashes off the ends with `strip`. Clean URLs for the family business, kid.")


def _sample(key: str, source: str, pair: tuple[str, str]) -> Sample:
    return Sample(key, source, "explain", *pair)


def test_the_same_lesson_in_train_and_validation_is_flagged():
    samples = [_sample("oop-024", "train.json", LATE_BINDING_LOOP), _sample("g", "train.json", GREETING),
               _sample("s", "train.json", SLUG), _sample("basics-v17", "validation.json", LATE_BINDING_COMPREHENSION)]
    (warning,) = same_lesson_pairs(samples)
    assert "basics-v17" in warning and "oop-024" in warning and "same lesson" in warning


def test_distinct_lessons_and_pairs_within_one_file_are_not_flagged():
    samples = [_sample("a", "train.json", LATE_BINDING_LOOP), _sample("b", "train.json", LATE_BINDING_COMPREHENSION),
               _sample("g", "validation.json", GREETING), _sample("s", "validation.json", SLUG)]
    assert same_lesson_pairs(samples) == []
