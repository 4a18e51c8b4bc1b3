"""JSON logs: one object per line with request and trace ids, in every worker process."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider

from gateway.logs import ContextFilter, JSONFormatter
from gateway.testing import MockUpstream
from gateway.tracing import bind_request
from genaiops import tracing
from genaiops.openai_client import free_port
from tests.gateway.support import ADMIN_KEY
from tests.gateway.telemetry import exported_spans, otlp_collector

REPO = Path(__file__).resolve().parents[2]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _capture() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"gateway.test_logs.{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, out


def test_a_line_carries_request_and_trace_ids_only_where_they_exist() -> None:
    logger, out = _capture()
    logger.warning("outside any request")

    def in_request() -> tuple[str, str]:
        with tracing.recording(TracerProvider()), tracing.span("gateway.request"):
            bind_request("req_abc")
            ids = tracing.current_ids()
            assert ids is not None
            try:
                raise ValueError("multi\nline")
            except ValueError:
                logger.exception("failed %s", "here")
            return ids

    trace_id, span_id = contextvars.copy_context().run(in_request)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # a traceback stays inside its JSON string
    first, second = (json.loads(x) for x in lines)
    assert first["msg"] == "outside any request" and first["level"] == "WARNING"
    assert "request_id" not in first and "trace_id" not in first
    assert first["pid"] == os.getpid()
    assert second["msg"] == "failed here"
    assert (second["request_id"], second["trace_id"], second["span_id"]) == (
        "req_abc",
        trace_id,
        span_id,
    )
    assert second["exc"].startswith("Traceback") and "ValueError: multi\nline" in second["exc"]


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("gateway did not become healthy")


@pytest.mark.slow
def test_serve_with_two_workers_logs_json_lines_and_exports_traces(tmp_path: Path) -> None:
    """``genaiops gateway serve --workers 2``: every stderr line of the parent and its uvicorn
    workers is a JSON object; a request's line has its request id and the caller's trace id,
    and the worker exported that trace over OTLP."""
    upstream = MockUpstream(reply="hello there")
    with upstream.serve() as up_url, otlp_collector() as (endpoint, received):
        cfg = tmp_path / "gateway.yaml"
        dep = {"name": "up", "backend": "openai_compatible", "base_url": up_url, "max_retries": 0}
        models = [{"name": "gpt-test", "deployments": [{"deployment": "up"}]}]
        cfg.write_text(yaml.safe_dump({"deployments": [dep], "models": models}))
        port = free_port()
        env = {
            **os.environ,
            "GENAIOPS_LOG_LEVEL": "INFO",
            "GENAIOPS_ADMIN_KEY": ADMIN_KEY,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        cmd = [sys.executable, "-m", "genaiops.cli", "gateway", "serve", "--workers", "2"]
        proc = subprocess.Popen(
            [*cmd, "--port", str(port), "--config", str(cfg)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc)
            admin = {"authorization": f"Bearer {ADMIN_KEY}"}
            key = httpx.post(f"{url}/admin/keys", json={}, headers=admin, timeout=30).json()["key"]
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
                headers={
                    "authorization": f"Bearer {key}",
                    "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
                },
                timeout=60,
            )
            assert r.status_code == 200, r.text
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=60)
        lines = [ln for ln in err.decode().splitlines() if ln.strip()]
        records = [json.loads(ln) for ln in lines]  # every line is one JSON object
        exported = exported_spans(received)
    request_id = r.headers["x-request-id"]
    mine = [x for x in records if x.get("request_id") == request_id]
    assert mine and all(x["trace_id"] == TRACE for x in mine)
    assert any(x["msg"].startswith(f"request {request_id} ") for x in mine)
    assert all(x["pid"] != proc.pid for x in mine)  # written by a worker, not the supervisor
    assert ("genaiops-gateway", "POST /v1/chat/completions", TRACE) in exported
