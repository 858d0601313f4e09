"""The shape of the house (issue 18): rooms that import downwards only, no cycles, no room above 35 % of the code.

The graph is read from the syntax trees of the repository's own modules (every ``import``, also those inside
functions), so a lazy import counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folder in the repository -> its installed name, bottom room first. A room may import the rooms before it.
ROOMS = {"prompts": "mafioso.prompts", "core": "mafioso.core", "worker": "mafioso.worker",
         "trainer": "mafioso.trainer", "bot": "mafioso.bot", "mafioso": "mafioso"}
ALLOWED = {  # room -> the rooms it may import (besides "root", the namespace's own __init__)
    "prompts": set(),
    "core": {"prompts"},
    "worker": {"prompts", "core"},
    "trainer": {"prompts", "core", "worker"},
    "bot": {"prompts", "core", "worker"},
    "mafioso": {"prompts", "core", "worker", "trainer", "bot"},
}


def modules() -> dict[str, Path]:
    """Installed module name -> file, for every module of the product."""
    found = {}
    for folder, name in ROOMS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((name, *parts))] = path
    return found


def room_of(module: str) -> str:
    """The repository folder a module lives in (the longest installed prefix wins). The namespace's root,
    ``mafioso/__init__.py`` (the version and the shipped adapters' folder, importing nothing), is a room of its
    own that every room may read."""
    if module == "mafioso":
        return "root"
    return max((folder for folder, name in ROOMS.items() if module == name or module.startswith(name + ".")),
               key=lambda folder: len(ROOMS[folder]))


def import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports (``from a import b`` counts b when b is a module)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                named = {f"{base}.{alias.name}" for alias in node.names}
                targets.update(named if named & set(mods) else {base})
        graph[name] = {t for t in targets if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one node (Tarjan), as sorted lists."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules():
    # a package's __init__ importing its own submodules is not a cycle of the design
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in import_graph().items()}
    assert cycles(graph) == []


def test_rooms_import_downwards_only():
    wrong = sorted(f"{m} imports {t}" for m, ts in import_graph().items() for t in ts
                   if room_of(t) not in (room_of(m), "root") and room_of(t) not in ALLOWED[room_of(m)])
    assert wrong == []


def test_no_room_holds_more_than_35_percent_of_the_code():
    lines = {}
    for name, path in modules().items():
        room = room_of(name)
        lines[room] = lines.get(room, 0) + len(path.read_text(encoding="utf-8").splitlines())
    total = sum(lines.values())
    assert {room: round(n / total, 3) for room, n in lines.items() if n / total > 0.35} == {}


def test_the_cli_imports_its_commands():
    graph = import_graph()
    assert {"mafioso.bot.console", "mafioso.bot.serve", "mafioso.worker.http_api",
            "mafioso.trainer.evaluate"} <= graph["mafioso.cli"]
    assert "importlib" not in (ROOT / "mafioso" / "cli.py").read_text(encoding="utf-8")


def test_cache_dir_and_sha256_file_come_from_core_files_only():
    # one place for the cache folder: a test that redirects it (MAFIOSO_CACHE) then reaches every caller
    paths = [*modules().values(), *sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "bench").rglob("*.py"))]
    wrong = sorted(f"{path.relative_to(ROOT)} imports {alias.name} from {node.module}" for path in paths
                   for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(node, ast.ImportFrom) for alias in node.names
                   if alias.name in ("cache_dir", "sha256_file") and node.module != "mafioso.core.files")
    assert wrong == []
