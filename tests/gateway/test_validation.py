"""Request validation at the gateway's door (issue #7 items 2, 7, 12): strict booleans and
numbers, no Host-built redirects, text that is not Unicode, unknown safety policies on keys."""

from __future__ import annotations

import json

import pytest

from tests.gateway.support import FakeUpstream, Running

MSG = [{"role": "user", "content": "Say hello"}]


def _post(
    gw: Running, key: str, body: dict, path: str = "/v1/chat/completions"
) -> tuple[int, dict]:
    # json.dumps escapes lone surrogates as "\\ud800" (valid JSON), as a hostile client sends them
    with gw.client(key) as c:
        r = c.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    return r.status_code, r.json()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", "yes"),
        ("stream", 1),
        ("stream", "true"),
        ("max_tokens", "5"),
        ("max_tokens", 5.0),
        ("max_tokens", True),
        ("temperature", "0.5"),
        ("temperature", False),
        ("n", "1"),
        ("stream_options", {"include_usage": "yes"}),
    ],
)
def test_non_boolean_and_non_numeric_values_are_refused(
    gateway: Running, upstream: FakeUpstream, field: str, value: object
):
    status, body = _post(
        gateway, gateway.create_key(), {"model": "gpt-test", "messages": MSG, field: value}
    )
    assert status == 400 and body["error"]["param"].startswith(field), body
    assert upstream.requests == []


def test_ints_are_fine_where_numbers_are_expected(gateway: Running):
    status, _ = _post(
        gateway, gateway.create_key(), {"model": "gpt-test", "messages": MSG, "temperature": 1}
    )
    assert status == 200


def test_trailing_slash_is_not_redirected_to_the_host_header(gateway: Running):
    key = gateway.create_key()
    with gateway.client(key) as c:
        r = c.get("/v1/models/", headers={"host": "evil.example"}, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers
        assert r.json()["error"]["message"].startswith("Unknown request URL")
        r = c.post(
            "/v1/chat/completions/",
            json={"model": "gpt-test", "messages": MSG},
            headers={"host": "evil.example"},
            follow_redirects=False,
        )
        assert r.status_code == 404 and "evil" not in r.headers.get("location", "")


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "user", "content": "\ud800"}], "messages.0.content"),
        (
            [MSG[0], {"role": "user", "content": [{"type": "text", "text": "a\udfff"}]}],
            "messages.1.content.0.text",
        ),
        ([{"role": "user", "content": "hi", "name": "x\ud800"}], "messages.0.name"),
    ],
)
def test_text_that_is_not_unicode_is_400_naming_the_field(
    gateway: Running, upstream: FakeUpstream, messages: list, param: str
):
    status, body = _post(gateway, gateway.create_key(), {"model": "gpt-test", "messages": messages})
    assert status == 400, body
    err = body["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert param in err["message"] and "surrogate" in err["message"]
    assert "codec" not in err["message"] and "Traceback" not in err["message"]
    assert upstream.requests == []


def test_embeddings_input_that_is_not_unicode_is_400(gateway: Running):
    body = {"model": "embed-test", "input": ["ok", "\ud800"]}
    status, err = _post(gateway, gateway.create_key(), body, "/v1/embeddings")
    assert status == 400 and err["error"]["param"] == "input.1"


def test_unknown_safety_policy_on_a_key_is_refused(gateway: Running):
    with gateway.admin() as c:
        r = c.post("/admin/keys", json={"name": "x", "safety_policy": "strcit"})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == "safety_policy"
        assert "'strcit'" in err["message"] and "known: default" in err["message"]
        assert c.get("/admin/keys").json()["data"] == []  # nothing was created
        assert c.post("/admin/keys", json={"safety_policy": "default"}).status_code == 201
        r = c.post("/admin/keys", json={"rpm": "5"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "rpm"
