"""Cold start of ``mafioso explain`` on a prepared machine: seconds to the first token, this checkout against another
commit, in the same run (issue 21: "first token <= 10 s").

    python bench/bench_coldstart.py                        # this checkout, 5 fresh processes, median
    python bench/bench_coldstart.py --before 3c17af6       # and that commit's code, runs interleaved
    python bench/bench_coldstart.py --runs 7 --dtype float32

Each run is a fresh ``python -m mafioso explain examples/fizzbuzz.py --no-stream --max-new-tokens 1`` (the README's
example; ``--no-stream`` prints the answer whole, so with one token the answer's line is the first token, after
the post-check), with the caches warm: one untimed run per variant first fills them (the converted base, the merged
weights, the CPU dtype verdict, the vocabulary tables) and the page cache. Per run: when the "loading…" note
reaches stderr, when the answer's line reaches stdout (the first token) and when the process exits. ``--before
REF`` extracts that commit's files (``git archive``) into a temporary folder and runs its code the same way, with
the same cache folder and settings, each round running both in turn so that other load on the machine hits both
alike. Prints the machine and its load (``uptime``) before and after, a table of medians, every run, and one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fizzbuzz.py"
#: The repository's rooms, each installed as ``mafioso.<room>`` (pyproject.toml's package-dir).
ROOMS = ("bot", "core", "prompts", "trainer", "worker")


def uptime() -> str:
    """The load averages, as ``uptime`` prints them."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def checkout(ref: str, into: Path) -> Path:
    """A folder that imports ``mafioso`` (and its rooms) from commit ``ref``'s files, when it is the working folder
    and on PYTHONPATH (this checkout's editable install would answer for a room missing there)."""
    source = into / "src"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {ref} failed: {archive.stderr.decode(errors='replace').strip()}")
    tar = into / "src.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as files:
        files.extractall(source, filter="data")
    package = into / "pkg" / "mafioso"
    package.mkdir(parents=True)
    for entry in (source / "mafioso").iterdir():
        (package / entry.name).symlink_to(entry)
    for room in ROOMS:
        (package / room).symlink_to(source / room)
    return into / "pkg"


def one_run(pythonpath: str | None, env: dict) -> dict:
    """One fresh ``mafioso explain``: seconds to the loading note, to the answer's line, and to the exit."""
    env = dict(env)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, "-m", "mafioso", "explain", str(EXAMPLE), "--no-stream", "--max-new-tokens", "1"]
    start = time.perf_counter()
    seen: dict[str, float] = {}
    # run from the folder that holds the package: Python puts the working folder first on the path
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=pythonpath or ROOT)

    def watch_stderr() -> None:
        for line in process.stderr:
            if "loading" in line and "note" not in seen:
                seen["note"] = time.perf_counter() - start

    reader = threading.Thread(target=watch_stderr, daemon=True)
    reader.start()
    for line in process.stdout:
        if line.strip() and "first_token" not in seen:
            seen["first_token"] = time.perf_counter() - start
    code = process.wait()
    reader.join(timeout=5)
    seen["exit"] = time.perf_counter() - start
    if code != 0 or "first_token" not in seen:
        raise SystemExit(f"mafioso explain failed (status {code}) with PYTHONPATH={pythonpath or '(this checkout)'}")
    return {key: round(seen[key], 2) for key in ("note", "first_token", "exit") if key in seen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed fresh processes per variant (default 5)")
    parser.add_argument("--before", metavar="REF", help="also time this commit's code, runs interleaved")
    parser.add_argument("--dtype", default="auto", help="MAFIOSO_DTYPE for every run (default auto)")
    args = parser.parse_args()

    env = {**os.environ, "MAFIOSO_DTYPE": args.dtype, "MAFIOSO_FEEDBACK_DB": "off"}  # keep no bench answers
    env.pop("PYTHONPATH", None)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    variants = {f"now ({head}{', modified' if dirty else ''})": None}
    with tempfile.TemporaryDirectory(prefix="mafioso-coldstart-") as scratch:
        if args.before:
            variants[f"before ({args.before})"] = str(checkout(args.before, Path(scratch)))
        print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, MAFIOSO_DTYPE={args.dtype}")
        load_before = uptime()
        print(f"# load before: {load_before}")
        for name, path in variants.items():  # warm-up: fills the caches and the page cache
            print(f"# warm-up {name}: {one_run(path, env)}", flush=True)
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, path in variants.items():
                runs[name].append(one_run(path, env))
                print(f"# {name}: {runs[name][-1]}", flush=True)
    load_after = uptime()
    print(f"# load after: {load_after}")
    print(f"\n| code | loading note, s | first token, s (median of {args.runs}) | exit, s | first token, every run |")
    print("|---|---|---|---|---|")
    table = {}
    for name, results in runs.items():
        medians = {key: round(statistics.median(r[key] for r in results), 1) for key in ("note", "first_token", "exit")
                   if all(key in r for r in results)}
        table[name] = {**medians, "first_token_runs": [r["first_token"] for r in results]}
        print(f"| {name} | {medians.get('note', '—')} | **{medians['first_token']}** | {medians['exit']} | "
              f"{', '.join(str(r['first_token']) for r in results)} |")
    print(json.dumps({"dtype": args.dtype, "load_before": load_before, "load_after": load_after, "runs": runs,
                      "medians": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
