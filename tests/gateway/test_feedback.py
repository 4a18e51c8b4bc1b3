"""``POST /v1/feedback`` through a real gateway: ownership, idempotency, validation, metrics."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.support import Running

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "Say hello"}]}


def ask(c: Any) -> str:
    r = c.post("/v1/chat/completions", json=BODY)
    assert r.status_code == 200, r.text
    return str(r.headers["x-request-id"])


def test_a_key_rates_its_own_request_and_a_repeat_updates_it(gateway: Running):
    with gateway.client(gateway.create_key(team="web")) as c:
        rid = ask(c)
        r = c.post("/v1/feedback", json={"request_id": rid, "rating": "down", "tags": ["wrong"]})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["object"] == "feedback" and first["updated"] is False
        assert (first["rating"], first["score"], first["tags"]) == ("down", 0.0, ["wrong"])
        again = c.post("/v1/feedback", json={"request_id": rid, "rating": 4, "comment": "ok now"})
        assert again.status_code == 200
        assert again.json()["updated"] is True and again.json()["score"] == 0.75
        assert again.json()["created_at"] == first["created_at"]
    store = gateway.gw.capture.store
    (fb,) = store.query_feedback()
    assert (fb.rating, fb.comment, fb.tags, fb.alias, fb.deployment, fb.team) == (
        "4", "ok now", [], "gpt-test", "up", "web",
    )  # fmt: skip


def test_another_keys_request_is_404_like_an_unknown_one(gateway: Running):
    with gateway.client(gateway.create_key()) as owner:
        rid = ask(owner)
    with gateway.client(gateway.create_key()) as other:
        theirs = other.post("/v1/feedback", json={"request_id": rid, "rating": "up"})
        unknown = other.post("/v1/feedback", json={"request_id": "req_" + "0" * 32, "rating": "up"})
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert theirs.json()["error"]["param"] == "request_id"
    assert gateway.gw.capture.store.query_feedback() == []


def test_attempt_rows_cannot_be_rated_but_a_failed_answer_can(gateway: Running, upstream):
    upstream.fail = [503]
    with gateway.client(gateway.create_key()) as c:
        r = c.post("/v1/chat/completions", json=BODY)
        assert r.status_code == 502
        rid = r.headers["x-request-id"]
        attempt = f"{rid}:up"
        assert gateway.gw.ledger.get(attempt)["outcome"] == "attempt_error"
        assert c.post("/v1/feedback", json={"request_id": attempt, "rating": 1}).status_code == 404
        assert c.post("/v1/feedback", json={"request_id": rid, "rating": 1}).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rating": "up"}, "request_id"),
        ({"request_id": "x"}, "rating"),
        ({"request_id": "x", "rating": 6}, "rating"),
        ({"request_id": "x", "rating": 0}, "rating"),
        ({"request_id": "x", "rating": "3"}, "rating"),
        ({"request_id": "x", "rating": True}, "rating"),
        ({"request_id": "x", "rating": 4.0}, "rating"),
        ({"request_id": "x", "rating": "meh"}, "rating"),
        ({"request_id": "", "rating": "up"}, "request_id"),
        ({"request_id": "x", "rating": "up", "tags": "bad"}, "tags"),
        ({"request_id": "x", "rating": "up", "tags": ["t"] * 21}, "tags"),
        ({"request_id": "x", "rating": "up", "comment": "c" * 4001}, "comment"),
        ({"request_id": "x", "rating": "up", "stars": 3}, "stars"),
    ],
)
def test_invalid_feedback_is_400_naming_the_field(gateway: Running, body: dict, param: str):
    with gateway.client(gateway.create_key()) as c:
        r = c.post("/v1/feedback", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"].startswith(param)


def test_feedback_needs_an_app_key(gateway: Running):
    with gateway.admin() as a:
        assert a.post("/v1/feedback", json={"request_id": "x", "rating": "up"}).status_code == 401
    import httpx

    r = httpx.post(f"{gateway.url}/v1/feedback", json={"request_id": "x", "rating": "up"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with gateway.client(gateway.create_key()) as c:
        bad = c.post(
            "/v1/feedback", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert bad.status_code == 400 and "parse the JSON" in bad.json()["error"]["message"]


def test_comment_pii_is_redacted_and_feedback_is_in_metrics(gateway: Running):
    with gateway.client(gateway.create_key()) as c:
        rid = ask(c)
        r = c.post(
            "/v1/feedback",
            json={"request_id": rid, "rating": "up", "comment": "reach me: jane@example.com"},
        )
        ask(c)
    assert r.json()["comment"] == "reach me: [EMAIL]"
    assert gateway.gw.capture.store.get_feedback(rid, None).comment == "reach me: [EMAIL]"
    with gateway.admin() as a:
        text = a.get("/metrics").text
    want = 'genaiops_gateway_feedback_total{deployment="up",model="gpt-test",rating="up"} 1.0'
    assert want in text
