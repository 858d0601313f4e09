"""The one fence reader (mafioso.prompts.fences): CommonMark pairs, a fence left open runs to the end."""

import pytest

from mafioso.prompts.fences import Block, fenced_blocks, without_fences


def test_fence_pairs_follow_commonmark():
    assert [b.code for b in fenced_blocks("````py\nx = 1\n```\ny = 2\n````")] == ["x = 1\n```\ny = 2"]
    assert [b.code for b in fenced_blocks("```\na\n``` ```\nb\n```")] == ["a", "b"]
    assert [(b.lang, b.code) for b in fenced_blocks("~~~Python\nx\n~~~ ```bash\nls\n```")] == [("python", "x"),
                                                                                               ("bash", "ls")]


def test_a_fence_left_open_runs_to_the_end_when_a_line_follows():
    text = "explain\n```py\nx = 1\n```\nand\n```\ny = 2"
    assert fenced_blocks(text) == [Block("py", "x = 1", 8, 23, True), Block("", "y = 2", 28, len(text), False)]
    assert fenced_blocks("use ``` to fence code") == []  # no line after it: prose
    assert fenced_blocks("````\n```py\nx\n```") == [Block("", "```py\nx\n```", 0, 16, False)]  # nothing closes ````


def test_empty_blocks_are_left_out_unless_asked():
    assert fenced_blocks("```\n\n```") == []
    assert [b.code for b in fenced_blocks("```\n\n```", empty=True)] == [""]


@pytest.mark.parametrize("text, prose", [
    ("It adds.\n```\nx = 1\n```\nDone.", "It adds.\n\nDone."),
    ("It adds.\n```python\nx = 1", "It adds.\n"),  # an answer cut inside its code: the code still goes
    ("Empty: ```\n```!", "Empty: !"),
    ("No fence here.", "No fence here."),
])
def test_without_fences_takes_every_block_out(text, prose):
    assert without_fences(text) == prose


def test_no_other_module_reads_fences():
    """One fence reader (issue 18): grep proves it."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    fence = re.compile(r"```\|~~~|`\{3|~\{3|find\(\"```")
    readers = sorted(str(p.relative_to(root)) for room in ("bot", "core", "worker", "trainer", "prompts", "mafioso")
                     for p in (root / room).rglob("*.py") if fence.search(p.read_text(encoding="utf-8")))
    assert readers == ["prompts/fences.py"]
