"""Every fixed line of every persona, by situation (mafioso.prompts.lines): one text each, in its own voice."""

import re

import pytest

from mafioso import prompts
from mafioso.prompts.lines import SITUATIONS, line


@pytest.mark.parametrize("name", prompts.personas())
def test_each_shipped_persona_says_every_situation_with_its_fields(name):
    lines = prompts.persona(name).lines
    assert sorted(lines) == sorted(SITUATIONS)  # no situation missing, none misspelt
    for situation, (_, fields) in SITUATIONS.items():
        assert set(re.findall(r"\{(\w+)\}", lines[situation])) == set(fields), situation
        said = line(situation, name, **{f: 7 for f in fields})
        assert said.strip() and "{" not in said
    assert len(lines["form_title"]) <= 45  # Discord's limit for a modal title


def test_the_noir_speaks_in_its_own_voice():
    noir, mafioso = prompts.persona("noir"), prompts.persona("mafioso")
    for situation in SITUATIONS:
        assert noir.lines[situation] != mafioso.lines[situation], situation
    assert not any(word in text for text in noir.lines.values() for word in (" pal", "capisce", "the boss"))
    voiced = [s for s, text in noir.lines.items() if any(m in text.lower() for m in noir.markers)]
    assert len(voiced) >= len(SITUATIONS) // 2  # most lines carry the detective's words


def test_a_line_is_filled_and_an_unknown_situation_is_refused(monkeypatch):
    assert line("cooldown", seconds=7.2) == "Easy, pal. One job at a time. Come back in 7 seconds."
    assert "1 seconds" in line("cooldown", "noir", seconds=0.2)
    assert "6000" in line("file_too_big", "noir", limit=6000)
    assert line("busy") == line("busy", None) == line("busy", "mafioso")
    with pytest.raises(KeyError, match="no persona line for 'bussy'"):
        line("bussy")
    # a new persona that leaves a situation out says it in the default persona's words
    sparse = prompts.Persona("sparse", "Sparse", "x", ("y",), {"busy": "Busy here."})
    real = prompts.persona
    monkeypatch.setattr(prompts, "persona", lambda name="mafioso": sparse if name == "sparse" else real(name))
    import mafioso.prompts.lines as module

    monkeypatch.setattr(module, "persona", prompts.persona)
    assert line("busy", "sparse") == "Busy here." and line("timeout", "sparse") == line("timeout")


def test_no_fixed_line_is_written_outside_the_personas():
    """Each line exists once: in persona.json, nowhere in the code (grep proves it)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "\n".join(p.read_text(encoding="utf-8") for room in ("bot", "core", "worker", "prompts", "mafioso")
                     for p in (root / room).rglob("*.py"))
    for name in prompts.personas():
        for situation, text in prompts.persona(name).lines.items():
            probe = max(re.split(r"\{\w+\}", text), key=len)[:40]  # the longest piece without a field
            assert probe not in code, f"{name}'s {situation} line is written in the code too"
