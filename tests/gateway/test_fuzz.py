"""Bounded schemathesis fuzzing of the gateway's OpenAPI schema: no input may cause a 5xx.

Driven through schemathesis' strategies directly (its pytest plugin does not load under
pytest 9 here): each operation gets a bounded, derandomised hypothesis run in positive and
negative mode, with and without credentials, and chat/embeddings bodies also with a real model.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.gateway.support import ADMIN_KEY, FakeUpstream, serve, upstream_config

EXAMPLES = 20


def _fuzz(op: Any, mode: Any, token: str, seen: dict[str, set[int]]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(mode))
    def check(case: schemathesis.Case) -> None:
        calls: list[dict[str, Any]] = [{"headers": {"authorization": f"Bearer {token}"}}, {}]
        if isinstance(case.body, dict) and op.path.startswith("/v1/"):
            # also with a model that exists, so bodies reach the handlers behind routing
            model = "embed-test" if "embeddings" in op.path else "gpt-test"
            calls.append({**calls[0], "json": {**case.body, "model": model}})
        for kw in calls:
            response = case.call(timeout=30, **kw)
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.text[:300],
            )
            if response.status_code >= 400:
                err = response.json()["error"]
                assert {"message", "type", "param", "code"} <= set(err)

    try:
        check()
    except Unsatisfiable:
        # no way to make a parameterless operation (GET /healthz) invalid
        assert mode is schemathesis.GenerationMode.NEGATIVE


def test_no_5xx_on_any_input(tmp_path) -> None:
    cfg = upstream_config(
        state={"path": str(tmp_path / "s.db"), "ledger_path": str(tmp_path / "l.db")}
    )
    seen: dict[str, set[int]] = {}
    with serve(cfg, FakeUpstream().client()) as gw:
        key = gw.create_key()
        schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
        ops = [r.ok() for r in schema.get_all_operations()]
        assert len(ops) >= 12
        for op in ops:
            token = ADMIN_KEY if op.path.startswith("/admin") else key
            for mode in schemathesis.GenerationMode:
                _fuzz(op, mode, token, seen)
    # the fuzzer reached the handlers, not only the auth check
    assert any(s & {200, 201} for s in seen.values())
    assert {200, 400} <= seen["POST /v1/chat/completions"]
