"""The capture store contract: every :class:`CaptureStore` implementation runs these tests.

Each backend (SQLite, PostgreSQL) adds itself to the ``capture_store`` fixture's params."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.capture import (
    CapturedDocument,
    CaptureMetadata,
    CaptureRecord,
    CaptureStore,
    FeedbackRecord,
    SQLiteCaptureStore,
)


@pytest.fixture(params=["sqlite", "postgres"])
def capture_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CaptureStore]:
    store: CaptureStore
    if request.param == "postgres":
        from gateway.capture.pg_store import PgCaptureStore

        store = PgCaptureStore(request.getfixturevalue("pg_dsn"))
    else:
        store = SQLiteCaptureStore(tmp_path / "capture.db")
    yield store
    store.close()


def rec(rid: str, ts: float, **kw: object) -> CaptureRecord:
    data: dict[str, object] = {
        "request_id": rid,
        "ts": ts,
        "key_id": "k1",
        "alias": "chat",
        "deployment": "a",
        "messages": [{"role": "user", "content": f"question {rid}"}],
        "completion": f"answer {rid}",
    }
    data.update(kw)
    return CaptureRecord.model_validate(data)


def test_round_trip_keeps_every_field(capture_store: CaptureStore) -> None:
    r = rec(
        "r1",
        100.0,
        documents=[CapturedDocument(text="doc", id="d#1", score=0.5)],
        metadata=CaptureMetadata(user="u", session="s", flow_variant="terse", index="ix"),
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "tool", "content": "tool says"},
            {"role": "user", "content": [{"type": "text", "text": "why?"}]},
        ],
    )
    capture_store.add(r)
    got = capture_store.get("r1", "k1")
    assert got == r
    assert got.question() == "why?"
    assert got.context() == ["doc", "tool says"]
    assert isinstance(capture_store, CaptureStore)


def test_get_is_scoped_to_the_key(capture_store: CaptureStore) -> None:
    capture_store.add(rec("r1", 1.0))
    assert capture_store.get("r1", "other") is None
    assert capture_store.get("r1", None) is not None  # operators: any key
    assert capture_store.get("nope", None) is None


def test_query_filters_order_and_limit(capture_store: CaptureStore) -> None:
    capture_store.add_many(
        [
            rec("r3", 30.0, deployment="b", metadata={"flow_variant": "v2"}),
            rec("r1", 10.0, team="t1"),
            rec("r2", 20.0, alias="other", key_id="k2"),
        ]
    )
    assert [r.request_id for r in capture_store.query()] == ["r1", "r2", "r3"]
    assert [r.request_id for r in capture_store.query(since=15, until=30)] == ["r2"]
    assert [r.request_id for r in capture_store.query(alias="chat")] == ["r1", "r3"]
    assert [r.request_id for r in capture_store.query(deployment="b")] == ["r3"]
    assert [r.request_id for r in capture_store.query(variant="v2")] == ["r3"]
    assert [r.request_id for r in capture_store.query(key_id="k2")] == ["r2"]
    assert [r.request_id for r in capture_store.query(team="t1")] == ["r1"]
    assert [r.request_id for r in capture_store.query(limit=2)] == ["r1", "r2"]


def test_delete_older_than(capture_store: CaptureStore) -> None:
    capture_store.add_many([rec("old", 10.0), rec("new", 1000.0)])
    assert capture_store.delete_older_than(500.0) == 1
    assert [r.request_id for r in capture_store.query()] == ["new"]
    assert capture_store.delete_older_than(500.0) == 0


def test_feedback_is_idempotent_per_request_and_key(capture_store: CaptureStore) -> None:
    first, created = capture_store.put_feedback(
        FeedbackRecord.from_rating("r1", "k1", "up", ts=10.0, created=10.0, alias="chat")
    )
    assert created and first.score == 1.0
    again, created = capture_store.put_feedback(
        FeedbackRecord.from_rating("r1", "k1", 2, ts=20.0, created=20.0, comment="meh")
    )
    assert not created
    assert (again.rating, again.score, again.created, again.ts) == ("2", 0.25, 10.0, 20.0)
    assert capture_store.get_feedback("r1", "k1") == again
    assert capture_store.get_feedback("r1", "k2") is None
    assert len(capture_store.query_feedback()) == 1


def test_feedback_summary_counts_and_retention(capture_store: CaptureStore) -> None:
    for i, (rating, dep) in enumerate([("up", "a"), ("down", "a"), ("5", "b"), ("3", "b")]):
        capture_store.put_feedback(
            FeedbackRecord.from_rating(f"r{i}", "k1", rating, ts=100.0 + i, deployment=dep)
        )
    rows = {r["deployment"]: r for r in capture_store.feedback_summary("deployment")}
    assert rows["a"]["feedback"] == 2 and rows["a"]["thumbs_up_rate"] == 0.5
    assert rows["b"]["thumbs_up"] == 1 and rows["b"]["mean_score"] == 0.75
    assert [f.rating for f in capture_store.query_feedback(rating="down")] == ["down"]
    assert [f.request_id for f in capture_store.query_feedback(deployment="b")] == ["r2", "r3"]
    capture_store.add(rec("c1", 50.0))
    counts = capture_store.counts()
    assert (counts.captures, counts.feedback) == (1, 4)
    assert counts.by_rating == {"up": 1, "down": 1, "5": 1, "3": 1}
    assert counts.by_alias == {"chat": 1}
    assert capture_store.delete_feedback_older_than(102.0) == 2
    assert capture_store.counts().feedback == 2
    with pytest.raises(ValueError):
        capture_store.feedback_summary("nonsense")


_WRITER = """
import sys, time
from gateway.capture import CaptureRecord, SQLiteCaptureStore
store = SQLiteCaptureStore(sys.argv[1])
for i in range(40):
    store.add(CaptureRecord(request_id=f"{sys.argv[2]}-{i}", ts=time.time(), alias="chat"))
"""


def test_sqlite_store_is_shared_by_processes(tmp_path: Path) -> None:
    path = tmp_path / "capture.db"
    SQLiteCaptureStore(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name]) for name in "ab"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    store = SQLiteCaptureStore(path)
    assert store.counts(since=time.time() - 600).captures == 80
    store.close()


def test_nul_characters_in_text_round_trip(capture_store: CaptureStore) -> None:
    """A client may send ``\\u0000`` in any message or comment (PostgreSQL JSONB refuses it)."""
    r = rec("r0", 5.0, messages=[{"role": "user", "content": "a\x00b"}], completion="c\x00")
    capture_store.add(r)
    assert capture_store.get("r0", "k1") == r
    fb = FeedbackRecord.from_rating("r0", "k1", "down").model_copy(update={"comment": "x\x00y"})
    stored, new = capture_store.put_feedback(fb)
    assert new and stored.comment == "x\x00y"
    again, new = capture_store.put_feedback(fb.model_copy(update={"created": fb.created + 9}))
    assert not new and again.created == fb.created  # a repeat keeps the first `created`
    got = capture_store.get_feedback("r0", "k1")
    assert got is not None and got.comment == "x\x00y"
