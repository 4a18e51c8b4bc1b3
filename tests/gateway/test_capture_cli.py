"""``genaiops gateway capture ...`` and the feedback columns of ``genaiops gateway usage``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gateway.capture import CaptureRecord, SQLiteCaptureStore
from gateway.errors import NotFound
from genaiops.cli import app
from genaiops.errors import ConfigError
from tests.gateway.support import FakeUpstream, serve, upstream_config

run = CliRunner().invoke
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def test_capture_commands_and_thumbs_up_rate_in_usage(tmp_path: Path, genaiops_home: Path):
    cfg = upstream_config(capture={"enabled": True})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    with serve(cfg, FakeUpstream().client()) as gw, gw.client(gw.create_key()) as c:
        ids = [c.post("/v1/chat/completions", json=BODY).headers["x-request-id"] for _ in "abc"]
        for rid, rating in zip(ids, ["up", "down", 5], strict=True):
            assert c.post("/v1/feedback", json={"request_id": rid, "rating": rating}).is_success
    # the gateway stopped gracefully: its queued captures were flushed
    r = run(app, ["gateway", "usage", "--by", "deployment", "-c", str(path), "--json"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.output)
    assert (row["deployment"], row["requests"], row["feedback"]) == ("up", 3, 3)
    assert row["thumbs_up_rate"] == round(2 / 3, 4)
    r = run(app, ["gateway", "usage", "--by", "model", "-c", str(path)])
    assert r.exit_code == 0 and "0.66" in r.output  # the thumbs-up rate column

    r = run(app, ["gateway", "capture", "stats", "-c", str(path), "--json"])
    stats = json.loads(r.output)
    assert stats["captures"] == 3 and stats["by_rating"] == {"up": 1, "down": 1, "5": 1}
    r = run(app, ["gateway", "capture", "list", "-c", str(path), "--limit", "2", "--json"])
    assert [x["request_id"] for x in json.loads(r.output)] == ids[:2]
    r = run(app, ["gateway", "capture", "list", "-c", str(path)])
    assert r.exit_code == 0 and "Hello from" in r.output
    r = run(app, ["gateway", "capture", "show", ids[1], "-c", str(path), "--json"])
    shown = json.loads(r.output)
    assert shown["capture"]["completion"] == "Hello from upstream."
    assert shown["feedback"]["rating"] == "down"
    r = run(app, ["gateway", "capture", "show", "req_nope", "-c", str(path)])
    assert isinstance(r.exception, NotFound)

    store = SQLiteCaptureStore(genaiops_home / "gateway" / "capture.db")
    store.add(CaptureRecord(request_id="old", ts=time.time() - 30 * 86400, alias="gpt-test"))
    store.close()
    r = run(app, ["gateway", "capture", "purge", "-c", str(path), "--json"])
    assert json.loads(r.output) == {"captures_deleted": 1, "feedback_deleted": 0}
    r = run(app, ["gateway", "capture", "purge", "-c", str(path), "--older-than", "1ms", "--json"])
    assert json.loads(r.output) == {"captures_deleted": 3, "feedback_deleted": 0}
    r = run(app, ["gateway", "capture", "purge", "-c", str(path), "--older-than", "soon"])
    assert isinstance(r.exception, ConfigError) and "--older-than" in str(r.exception)
    r = run(app, ["gateway", "capture", "stats", "--since-hours", "-1"])
    assert isinstance(r.exception, ConfigError)
