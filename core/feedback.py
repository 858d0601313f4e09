"""Answers and their 👍/👎 ratings, kept in one SQLite file (issue 20).

    store = FeedbackStore.open(path, retention_days=365)      # or open_store(worker_cfg)
    store.record_answer(AnswerRecord(answer_id, code=..., answer=..., adapter=..., ...))
    store.link_message("discord", message_id, answer_id, user=author_id)   # the bot's reply → its answer
    store.rate(answer_id, +1, user=reactor_id)                              # one rating per user, last wins

The file (``MAFIOSO_FEEDBACK_DB``, default ``feedback.sqlite3`` in the cache folder) runs in WAL mode and
every write commits at once, so a rating survives a restart. Its schema is versioned (``schema_version``) and
brought up to date by one migration step per version. User ids are never stored: only
``sha256(salt + platform + id)`` with a random salt made once per database. ``retention_days`` deletes
older answers (their ratings and message links with them) when the store opens and once a day after.

A corrupt, unreadable or locked file must not take the bot down: the first ``sqlite3`` failure is logged once
at ERROR, feedback is switched off, and every later call is a quiet no-op (``enabled`` is False). Methods are
plain and thread-safe (one lock); async callers use :meth:`FeedbackStore.call`, which runs them in a thread so
the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AnswerRecord", "FeedbackStore", "FeedbackUnavailable", "UnknownAnswer", "default_path", "open_store",
           "rating_value"]

log = logging.getLogger("mafioso.feedback")

DAY_S = 86400.0
RETRY_S = 60  # seconds between tries to reopen a database that failed
#: One step per schema version; step i brings a version-i database to version i + 1.
MIGRATIONS = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE answers (
        id TEXT PRIMARY KEY, created REAL NOT NULL, platform TEXT NOT NULL, user_hash TEXT,
        code TEXT NOT NULL, request TEXT, answer TEXT NOT NULL, adapter TEXT, base_model TEXT,
        decoding TEXT, latency_s REAL, tokens INTEGER);
    CREATE INDEX answers_created ON answers (created);
    CREATE TABLE ratings (
        answer_id TEXT NOT NULL REFERENCES answers (id) ON DELETE CASCADE, user_hash TEXT NOT NULL,
        rating INTEGER NOT NULL CHECK (rating IN (-1, 1)), created REAL NOT NULL,
        PRIMARY KEY (answer_id, user_hash));
    CREATE TABLE messages (
        platform TEXT NOT NULL, message_id TEXT NOT NULL,
        answer_id TEXT NOT NULL REFERENCES answers (id) ON DELETE CASCADE,
        PRIMARY KEY (platform, message_id));
    """,
    # sentences the claim post-check dropped from the answer; NULL where unknown (a remote worker's answer, or one
    # stored before this column)
    "ALTER TABLE answers ADD COLUMN dropped INTEGER",
    # times the answer was decoded again from before a sentence the post-check drops (worker/retry.py); NULL as above
    "ALTER TABLE answers ADD COLUMN retried INTEGER",
)
SCHEMA_VERSION = len(MIGRATIONS)
#: How the reports name the adapter of an answer ``a``: its name, with " (sampled)" when the request sampled it
#: (a temperature above 0, docs/API.md), so that greedy and sampled answers are rated and checked apart.
_SERVED_BY = ("COALESCE(a.adapter, '') || CASE WHEN json_valid(a.decoding) AND json_extract(a.decoding, "
              "'$.do_sample') THEN ' (sampled)' ELSE '' END")
_RATINGS = {"up": 1, "down": -1, "+1": 1, "-1": -1, "👍": 1, "👎": -1}


class UnknownAnswer(KeyError):
    """No answer with this id is stored (HTTP 404)."""


class FeedbackUnavailable(Exception):
    """Feedback is off: no store configured, or its database failed (HTTP 503)."""


def rating_value(text: str | int) -> int:
    """+1 or -1 from ``up``/``down``/``+1``/``-1``/👍/👎 (or the ints); ValueError otherwise."""
    if isinstance(text, int) and not isinstance(text, bool) and text in (1, -1):
        return text
    if isinstance(text, str) and text.strip().lower() in _RATINGS:
        return _RATINGS[text.strip().lower()]
    raise ValueError(f"a rating is up or down (+1 or -1), not {text!r}")


@dataclass(frozen=True)
class AnswerRecord:
    """One answer as it was given."""

    answer_id: str
    code: str
    answer: str
    request: str | None = None
    platform: str = "api"
    adapter: str = ""
    base_model: str = ""
    decoding: dict = field(default_factory=dict)
    latency_s: float = 0.0
    tokens: int = 0
    created: float | None = None  # default: now
    dropped: int = 0  # sentences the claim post-check removed (claims the code contradicts)
    retried: int = 0  # times it was decoded again from before such a sentence (its first answer had one)


def default_path() -> Path:
    """``feedback.sqlite3`` in the cache folder."""
    from mafioso.core.files import cache_dir

    return cache_dir() / "feedback.sqlite3"


def open_store(cfg) -> FeedbackStore | None:
    """The store a :class:`mafioso.core.config.WorkerConfig` names (None when ``feedback_db`` is 'off')."""
    if cfg.feedback_db.strip().lower() == "off":
        return None
    path = Path(cfg.feedback_db).expanduser() if cfg.feedback_db else default_path()
    return FeedbackStore.open(path, retention_days=cfg.feedback_retention_days)


class FeedbackStore:
    """The SQLite store; build it with :meth:`open`."""

    def __init__(self, path: Path, retention_days: int, clock=time.time, busy_timeout_s: float = 5.0):
        self.path, self.retention_days, self.clock = Path(path), retention_days, clock
        self.busy_timeout_s = busy_timeout_s  # how long a write waits for another process's lock
        self.enabled = True
        self._db: sqlite3.Connection | None = None
        self._salt = ""
        self._lock = threading.Lock()
        self._purged_at = 0.0
        self._retry_at = 0.0  # when a switched-off store next tries to reopen its database
        self._reported = False  # the failure was logged (once per outage)

    @classmethod
    def open(cls, path: str | Path, *, retention_days: int = 365, clock=time.time,
             busy_timeout_s: float = 5.0) -> FeedbackStore:
        """Open (creating or migrating) the database; a broken file gives a disabled store, never an exception."""
        store = cls(Path(path), retention_days, clock, busy_timeout_s)
        with store._lock:
            store._guarded(store._connect)
        if store.enabled:
            store.purge()
        return store

    # ------------------------------------------------------------------------------------------- plumbing

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False, isolation_level=None)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed rating survives a process crash
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this Mafioso ({SCHEMA_VERSION})")
        for step in range(version, SCHEMA_VERSION):
            with db:  # one transaction per step: a crash mid-migration leaves the previous version
                db.execute("BEGIN")
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version VALUES (?)", (step + 1,))
        row = db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
        if row is None:
            salt = secrets.token_hex(32)
            db.execute("INSERT INTO meta VALUES ('salt', ?)", (salt,))
        else:
            salt = row[0]
        self._salt = salt

    def _guarded(self, fn, *args):
        """Run ``fn`` unless feedback is off. A database failure turns it off, loudly, once; every
        :data:`RETRY_S` seconds the next write tries to reopen it (a lock released, a disk freed, a file
        replaced), so one bad moment does not cost the ratings until a restart."""
        if not self.enabled:
            if self.clock() < self._retry_at or not self._reopen():
                return None
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:  # corrupt, not a database, locked, disk full, unreadable
            self._switch_off(exc)
            return None

    def _switch_off(self, exc: sqlite3.Error | OSError) -> None:
        self.enabled = False
        self._retry_at = self.clock() + RETRY_S
        if not self._reported:
            self._reported = True
            log.error("feedback is OFF: the database %s failed (%s: %s); the bot keeps answering but keeps no "
                      "ratings until it is fixed or moved (MAFIOSO_FEEDBACK_DB); it retries every %d s",
                      self.path, type(exc).__name__, exc, RETRY_S)
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def _reopen(self) -> bool:
        """Try the database again after a failure; True when it is back."""
        try:
            self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._switch_off(exc)
            return False
        self.enabled, self._reported = True, False
        log.warning("feedback is back ON: the database %s opened again", self.path)
        return True

    def _write(self, fn, *args):
        with self._lock:
            return self._guarded(fn, *args)

    async def call(self, method: str, *args):
        """Run ``self.<method>(*args)`` in a thread: the event loop never waits on the database."""
        return await asyncio.to_thread(getattr(self, method), *args)

    def hash_user(self, platform: str, user: object) -> str:
        """The salted sha256 that stands for a platform user id (the id itself is never stored)."""
        return hashlib.sha256(f"{self._salt}:{platform}:{user}".encode()).hexdigest()

    def close(self) -> None:
        """Close the database (every write is committed already)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ------------------------------------------------------------------------------------------- writes

    def record_answer(self, rec: AnswerRecord, user: object | None = None) -> None:
        """Store one answer (``user``: the asker's platform id, stored hashed)."""
        def write():
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.answer_id, rec.created if rec.created is not None else self.clock(), rec.platform,
                 None if user is None else self.hash_user(rec.platform, user), rec.code, rec.request, rec.answer,
                 rec.adapter, rec.base_model, json.dumps(rec.decoding, sort_keys=True), rec.latency_s, rec.tokens,
                 rec.dropped, rec.retried))
        self._write(write)
        if self.enabled and self.clock() - self._purged_at > DAY_S:
            self.purge()

    def link_message(self, platform: str, message_id: object, answer_id: str, user: object | None = None,
                     text: str = "") -> None:
        """Remember that the platform message ``message_id`` carries answer ``answer_id`` (asked by ``user``).
        An answer this store has not recorded (a remote worker gave it) is added with ``text`` and no code."""
        def write():
            self._db.execute("INSERT OR IGNORE INTO answers (id, created, platform, code, answer) "
                             "VALUES (?, ?, ?, '', ?)", (answer_id, self.clock(), platform, text))
            self._db.execute("INSERT OR REPLACE INTO messages VALUES (?, ?, ?)", (platform, str(message_id), answer_id))
            self._db.execute("UPDATE answers SET platform = ?, user_hash = COALESCE(?, user_hash) WHERE id = ?",
                             (platform, None if user is None else self.hash_user(platform, user), answer_id))
        self._write(write)

    def answer_for_message(self, platform: str, message_id: object) -> str | None:
        """The answer id a bot message carries, or None."""
        def read():
            row = self._db.execute("SELECT answer_id FROM messages WHERE platform = ? AND message_id = ?",
                                   (platform, str(message_id))).fetchone()
            return row[0] if row else None
        return self._write(read)

    def rate(self, answer_id: str, rating: int, user: object = "anonymous", platform: str = "api") -> str | None:
        """Store ``user``'s +1/-1 for the answer (their earlier one is replaced); the answer's adapter, or None
        with feedback off. Raises :class:`UnknownAnswer` and ValueError (a rating that is not ±1)."""
        rating = rating_value(rating)

        def write():
            row = self._db.execute("SELECT adapter FROM answers WHERE id = ?", (answer_id,)).fetchone()
            if row is None:
                raise UnknownAnswer(answer_id)
            self._db.execute("INSERT OR REPLACE INTO ratings VALUES (?, ?, ?, ?)",
                             (answer_id, self.hash_user(platform, user), rating, self.clock()))
            return row[0] or ""
        return self._write(write)

    def purge(self) -> int:
        """Delete answers older than ``retention_days`` (and their ratings and links); how many went."""
        if not self.retention_days:
            return 0
        cutoff = self.clock() - self.retention_days * DAY_S
        self._purged_at = self.clock()
        deleted = self._write(lambda: self._db.execute("DELETE FROM answers WHERE created < ?", (cutoff,)).rowcount)
        if deleted:
            log.info("feedback: deleted %d answer(s) older than %d days", deleted, self.retention_days)
        return deleted or 0

    # -------------------------------------------------------------------------------------------- reads

    def rated_answers(self) -> list[dict]:
        """Every answer with at least one rating: its fields plus ``ups``, ``downs`` and ``score`` (their sum)."""
        def read():
            cursor = self._db.execute(
                "SELECT a.id, a.created, a.platform, a.code, a.request, a.answer, a.adapter, a.base_model, "
                "a.decoding, a.latency_s, a.tokens, SUM(r.rating = 1), SUM(r.rating = -1), SUM(r.rating) "
                "FROM answers a JOIN ratings r ON r.answer_id = a.id GROUP BY a.id ORDER BY a.created")
            names = ("answer_id", "created", "platform", "code", "request", "answer", "adapter", "base_model",
                     "decoding", "latency_s", "tokens", "ups", "downs", "score")
            return [dict(zip(names, row)) for row in cursor]
        return self._write(read) or []

    def checked_answers(self) -> list[tuple[str, float, int]]:
        """(adapter, time, whether the post-check found a claim the code contradicts) of every answer whose check
        is known, oldest first: it dropped a sentence, or had the answer decoded again from before one (the
        model's first answer had one); the adapter as :data:`_SERVED_BY` names it (sampled answers apart)."""
        def read():
            return self._db.execute(f"SELECT {_SERVED_BY}, created, dropped > 0 OR COALESCE(retried, 0) > 0 "
                                    "FROM answers a WHERE dropped IS NOT NULL ORDER BY created").fetchall()
        return self._write(read) or []

    def ratings(self) -> list[tuple[str, float, int]]:
        """(adapter, time, rating) of every rating, oldest first; the adapter as :data:`_SERVED_BY` names it."""
        def read():
            return self._db.execute(f"SELECT {_SERVED_BY}, r.created, r.rating FROM ratings r JOIN "
                                    "answers a ON a.id = r.answer_id ORDER BY r.created").fetchall()
        return self._write(read) or []
