"""``genaiops gateway keys|usage`` against the same store a running gateway uses."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from genaiops.cli import app
from genaiops.errors import ConfigError, GenAIOpsError
from tests.gateway.support import FakeUpstream, serve, upstream_config

run = CliRunner().invoke


def test_keys_lifecycle_and_usage_report():
    r = run(
        app,
        [
            "gateway",
            "keys",
            "create",
            "--name",
            "app",
            "--team",
            "search",
            "--tpm",
            "5000",
            "--quota",
            "100000",
            "--period",
            "day",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    secret = created["key"]
    assert secret.startswith("sk-gw-") and created["prefix"] == secret[:10]

    r = run(app, ["gateway", "keys", "list", "--json"])
    listed = json.loads(r.output)
    assert [k["id"] for k in listed] == [created["id"]] and secret not in r.output
    assert "hash" not in listed[0]

    with serve(upstream_config(), FakeUpstream().client()) as gw, gw.client(secret) as c:
        for _ in range(3):
            body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
            assert c.post("/v1/chat/completions", json=body).status_code == 200

    r = run(app, ["gateway", "usage", "--by", "key", "--json"])
    rows = json.loads(r.output)
    assert rows[0]["key"] == created["id"] and rows[0]["requests"] == 3
    assert rows[0]["total_tokens"] == 3 * (11 + 3)
    for by in ("model", "deployment", "day", "team"):
        r = run(app, ["gateway", "usage", "--by", by, "--json"])
        assert r.exit_code == 0 and json.loads(r.output)[0]["requests"] == 3
    r = run(app, ["gateway", "usage", "--by", "nonsense"])
    assert isinstance(r.exception, ConfigError) and "--by must be one of" in str(r.exception)
    r = run(app, ["gateway", "usage"])
    assert "gpt-test" in r.output

    r = run(app, ["gateway", "keys", "revoke", created["id"], "--json"])
    assert json.loads(r.output)["revoked"] is True
    r = run(app, ["gateway", "keys", "revoke", "key_nope"])
    assert isinstance(r.exception, GenAIOpsError)


def test_errors_are_one_line_exit_2():
    """Through the real entry point: a GenAIOpsError is one line on stderr and exit status 2."""
    p = subprocess.run(
        [sys.executable, "-m", "genaiops", "gateway", "keys", "create", "--period", "week"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and p.stderr.strip() == "error: --period must be day or month"


def test_example_config_validates_and_bad_keys_name_file_and_key(tmp_path):
    from pathlib import Path

    from gateway.config import load_config
    from genaiops.errors import SpecError

    example = Path(__file__).resolve().parents[2] / "gateway" / "config.example.yaml"
    cfg = load_config(example)
    assert cfg.alias("chat") and cfg.teams["search"].rpm == 600
    bad = tmp_path / "gw.yaml"
    bad.write_text(example.read_text().replace("weight: 90", "wieght: 90"))
    try:
        load_config(bad)
    except SpecError as e:
        assert str(bad) in str(e) and "models.0.deployments.0.wieght" in str(e)
    else:
        raise AssertionError("an unknown key must be refused")
    bad.write_text(example.read_text().replace("detectors: [offline]", "detectors: [magic]"))
    try:
        load_config(bad)
    except SpecError as e:
        assert "unknown detector" in str(e) and "safety" in str(e)
    else:
        raise AssertionError("an unknown detector must be refused")
