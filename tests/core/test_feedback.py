"""The feedback store: a real SQLite file in tmp_path."""

import logging
import sqlite3

import pytest

from mafioso.core.feedback import (MIGRATIONS, RETRY_S, SCHEMA_VERSION, AnswerRecord, FeedbackStore,
                                   UnknownAnswer, rating_value)

RAW_USER = 987654321012345678  # a Discord-sized snowflake


def record(answer_id="a1", **kw):
    return AnswerRecord(answer_id, code="print(1)", answer="It prints one, capisce?", adapter="default",
                        base_model="embedded", decoding={"max_new_tokens": 200}, latency_s=0.5, tokens=7, **kw)


def test_a_rating_survives_a_restart(tmp_path):
    path = tmp_path / "feedback.sqlite3"
    store = FeedbackStore.open(path)
    store.record_answer(record())
    assert store.rate("a1", 1, user="u1") == "default"
    store.close()
    again = FeedbackStore.open(path)
    [row] = again.rated_answers()
    assert (row["answer_id"], row["ups"], row["downs"], row["adapter"]) == ("a1", 1, 0, "default")
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_version_1_database_is_migrated_and_keeps_its_answers(tmp_path):
    path = tmp_path / "feedback.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0] + "; CREATE TABLE schema_version (version INTEGER NOT NULL);"
                      "INSERT INTO schema_version VALUES (1); INSERT INTO meta VALUES ('salt', 'pepper');"
                      "INSERT INTO answers (id, created, platform, code, answer, adapter) "
                      "VALUES ('old', 1.0, 'api', 'x = 1', 'It sets x, pal.', 'default')")
    old.close()
    store = FeedbackStore.open(path, retention_days=10**6)
    store.record_answer(record("new", dropped=2, created=2.0))
    store.record_answer(record("clean", created=3.0))
    store.record_answer(record("retried", retried=1, created=4.0))  # its first answer had a false claim
    assert store.rate("old", 1, user="u1") == "default"  # the old answer is still there
    assert store.checked_answers() == [("default", 2.0, 1), ("default", 3.0, 0), ("default", 4.0, 1)]  # not old
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,) == (3,)


def test_one_rating_per_user_the_last_one_wins(tmp_path):
    store = FeedbackStore.open(tmp_path / "f.db")
    store.record_answer(record())
    store.rate("a1", 1, user="u1")
    store.rate("a1", -1, user="u1")
    store.rate("a1", 1, user="u2")
    [row] = store.rated_answers()
    assert (row["ups"], row["downs"]) == (1, 1)


def test_unknown_answer_and_bad_rating(tmp_path):
    store = FeedbackStore.open(tmp_path / "f.db")
    with pytest.raises(UnknownAnswer):
        store.rate("nope", 1)
    for bad in (0, 2, True, "sideways"):
        with pytest.raises(ValueError):
            rating_value(bad)
    assert rating_value("up") == 1 and rating_value("down") == -1 and rating_value("👎") == -1


def test_raw_user_ids_are_never_stored(tmp_path):
    path = tmp_path / "f.db"
    store = FeedbackStore.open(path)
    store.record_answer(record(platform="discord"), user=RAW_USER)
    store.link_message("discord", 111, "a1", user=RAW_USER)
    store.rate("a1", 1, user=RAW_USER, platform="discord")
    store.rate("a1", -1, user="U0SLACKUSER", platform="slack")
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert str(RAW_USER).encode() not in data and b"U0SLACKUSER" not in data
    assert FeedbackStore.open(path).answer_for_message("discord", 111) == "a1"


def test_retention_deletes_old_rows(tmp_path):
    now = [1_000_000_000.0]
    store = FeedbackStore.open(tmp_path / "f.db", retention_days=30, clock=lambda: now[0])
    store.record_answer(record("old", created=now[0] - 31 * 86400))
    store.record_answer(record("new"))
    store.rate("old", 1)
    store.rate("new", 1)
    store.link_message("slack", "123.456", "old")
    assert store.purge() == 1
    assert [r["answer_id"] for r in store.rated_answers()] == ["new"]
    assert store.answer_for_message("slack", "123.456") is None
    assert len(store.ratings()) == 1


def test_a_corrupt_file_is_reported_once_and_feedback_goes_off(tmp_path, caplog):
    path = tmp_path / "f.db"
    path.write_bytes(b"this is no database, pal" * 100)
    with caplog.at_level(logging.ERROR, logger="mafioso.feedback"):
        store = FeedbackStore.open(path)
        store.record_answer(record())
        assert store.rate("a1", 1) is None
        assert store.rated_answers() == []
    assert not store.enabled
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_a_locked_file_is_reported_once_and_feedback_goes_off(tmp_path, caplog):
    path = tmp_path / "f.db"
    store = FeedbackStore.open(path, busy_timeout_s=0.05)
    other = sqlite3.connect(path, isolation_level=None)  # another process holding the write lock
    other.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.ERROR, logger="mafioso.feedback"):
            store.record_answer(record())
            store.record_answer(record("a2"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not store.enabled
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "locked" in errors[0].getMessage()


def test_a_store_that_failed_comes_back_when_the_database_does(tmp_path, caplog):
    # a lock held by another process is a bad moment, not a reason to lose ratings until a restart
    now = [1000.0]
    path = tmp_path / "f.db"
    store = FeedbackStore.open(path, busy_timeout_s=0.05, clock=lambda: now[0])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with caplog.at_level(logging.WARNING, logger="mafioso.feedback"):
        store.record_answer(record())
        other.execute("ROLLBACK")
        other.close()
        store.record_answer(record("a2"))  # within the retry interval: still off, not logged again
        assert not store.enabled
        now[0] += RETRY_S + 1
        store.record_answer(record("a3"))
        assert store.enabled and store.rate("a3", 1) == "default"
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.WARNING]
    assert "back ON" in caplog.records[-1].getMessage()
    assert [row["answer_id"] for row in store.rated_answers()] == ["a3"]


def test_sampled_answers_are_rated_and_checked_apart_from_greedy_ones(tmp_path):
    """A request's temperature samples its answer (docs/API.md); the reports name those "<adapter> (sampled)"."""
    store = FeedbackStore.open(tmp_path / "f.db")
    store.record_answer(record("greedy", dropped=0, created=1.0))
    store.record_answer(AnswerRecord("drawn", code="x = 1", answer="It sets x.", adapter="default",
                                     decoding={"do_sample": True, "temperature": 0.7}, dropped=1, created=2.0))
    store.rate("greedy", 1, user="u1")
    store.rate("drawn", -1, user="u1")
    assert [(adapter, rating) for adapter, _, rating in store.ratings()] == [("default", 1), ("default (sampled)", -1)]
    assert store.checked_answers() == [("default", 1.0, 0), ("default (sampled)", 2.0, 1)]  # found a claim
