"""The usage-ledger contract: the SQLite :class:`Ledger` and :class:`PgLedger` answer alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import Ledger, UsageRow
from gateway.ledgers import UsageLedger


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UsageLedger]:
    led: UsageLedger
    if request.param == "postgres":
        from gateway.state.pg_ledger import PgLedger

        led = PgLedger(request.getfixturevalue("pg_dsn"), pool_size=2)
    else:
        led = Ledger(tmp_path / "ledger.db")
    assert isinstance(led, UsageLedger)
    yield led
    led.close()


def row(rid: str, ts: float, **kw: object) -> UsageRow:
    base: dict[str, object] = {"alias": "chat", "deployment": "a", "key_id": "k1", "team": "t"}
    base.update(kw)
    return UsageRow(request_id=rid, ts=ts, **base)  # type: ignore[arg-type]


def test_write_replace_get_and_rows(ledger: UsageLedger) -> None:
    asyncio.run(ledger.write(row("r1", 100.0, prompt_tokens=3, completion_tokens=4)))
    ledger.write_sync(row("r2", 200.0, outcome="error", status=502, safety={"pii": 1}))
    ledger.write_sync(row("r1", 100.0, prompt_tokens=5, completion_tokens=4, latency_ms=12.5))
    got = ledger.get("r1")
    assert got is not None
    assert (got["prompt_tokens"], got["total_tokens"], got["latency_ms"]) == (5, 9, 12.5)
    assert ledger.get("nope") is None
    assert [r["request_id"] for r in ledger.rows()] == ["r2", "r1"]  # newest first
    r2 = ledger.get("r2")
    assert r2 is not None and r2["safety"] == '{"pii": 1}' and r2["stream"] == 0
    assert [r["request_id"] for r in ledger.rows_between(150.0)] == ["r2"]
    assert [r["request_id"] for r in ledger.rows_between(0.0, 150.0)] == ["r1"]


def test_summary_groups_and_skips_shadow_rows(ledger: UsageLedger) -> None:
    day = 86400.0 * 20000  # 2024-10-04 UTC
    ledger.write_sync(row("a", day + 1, prompt_tokens=10, completion_tokens=1, latency_ms=10))
    ledger.write_sync(row("b", day + 2, outcome="error", latency_ms=30, alias="emb", team=None))
    ledger.write_sync(row("c", day + 3, outcome="shadow", prompt_tokens=99))
    ledger.write_sync(row("d", day + 4, outcome="attempt_error", prompt_tokens=99))
    by_model = ledger.summary(by="model")
    assert [(r["model"], r["requests"], r["errors"], r["prompt_tokens"]) for r in by_model] == [
        ("chat", 1, 0, 10),
        ("emb", 1, 1, 0),
    ]
    assert by_model[0]["avg_latency_ms"] == 10.0
    assert [(r["team"], r["requests"]) for r in ledger.summary(by="team")] == [(None, 1), ("t", 1)]
    assert ledger.summary(by="day") == [
        {"day": "2024-10-04", "requests": 2, "errors": 1, "prompt_tokens": 10,
         "completion_tokens": 1, "total_tokens": 11, "avg_latency_ms": 20.0}
    ]  # fmt: skip
    assert ledger.summary(by="model", since=day + 2)[0]["model"] == "emb"
    with pytest.raises(ValueError, match="--by must be one of"):
        ledger.summary(by="colour")


def test_streaming_rows_progress_and_interrupt(ledger: UsageLedger) -> None:
    ledger.write_sync(row("s1", 1.0, outcome="streaming", stream=True, owner="gw-a"))
    ledger.write_sync(row("s2", 2.0, outcome="streaming", stream=True, owner="gw-b"))
    ledger.write_sync(row("s3", 3.0, outcome="streaming", stream=True, owner="gw-c"))
    ledger.write_sync(row("ok", 4.0, owner="gw-b"))
    ledger.progress_sync([("s1", 7, 20), ("ok", 1, 1)])  # finished rows are not touched
    s1, ok = ledger.get("s1"), ledger.get("ok")
    assert s1 is not None and (s1["prompt_tokens"], s1["total_tokens"]) == (7, 27)
    assert ok is not None and ok["total_tokens"] == 0
    assert sorted(ledger.streaming_owners_sync("gw-a")) == ["gw-b", "gw-c"]
    assert ledger.interrupt_sync(["gw-b"], ["s3"]) == 2
    for rid in ("s2", "s3"):
        r = ledger.get(rid)
        assert r is not None and (r["outcome"], r["error_code"]) == (
            "interrupted",
            "gateway_stopped",
        )
    assert ledger.interrupt_sync([], []) == 0
    assert ledger.streaming_owners_sync("gw-x") == ["gw-a"]


def test_scores_and_deployment_stats(ledger: UsageLedger) -> None:
    for i in range(20):
        ledger.write_sync(row(f"r{i}", 10.0 + i, status=500 if i < 2 else 200, latency_ms=i))
    ledger.write_sync(row("other", 11.0, deployment="b"))
    assert ledger.record_score("r3", 0.5)
    assert ledger.record_score("r3", 1.0)  # replaced
    assert ledger.record_score("r4", 0.0)
    assert not ledger.record_score("missing", 1.0)
    st = ledger.deployment_stats("chat", "a", since=0)
    assert st == {"n": 20, "errors": 2, "error_rate": 0.1, "p95_ms": 19.0, "scored": 2,
                  "mean_score": 0.5}  # fmt: skip
    assert ledger.deployment_stats("chat", "a", since=100)["n"] == 0


def test_a_nul_character_from_a_client_is_stored_not_a_database_error(ledger: UsageLedger) -> None:
    """PostgreSQL text cannot hold NUL: it is replaced there (U+FFFD), kept by SQLite."""
    ledger.write_sync(row("n1", 1.0, alias="gpt\x00x", error_code="model_not_found"))
    got = ledger.get("n1")
    assert got is not None and got["alias"] in ("gpt\x00x", "gpt\ufffdx")
