"""``genaiops gateway keys|usage`` against the same store a running gateway uses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gateway.errors import NotFound
from genaiops.cli import app
from genaiops.errors import ConfigError
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
    assert isinstance(r.exception, NotFound) and str(r.exception) == "no key with id 'key_nope'"


def test_errors_are_one_line_exit_2():
    """Through the real entry point: a GenAIOpsError is one line on stderr and exit status 2."""
    p = subprocess.run(
        [sys.executable, "-m", "genaiops", "gateway", "keys", "create", "--period", "week"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        p.returncode == 2
        and p.stderr.strip() == "error: --period: must be day or month, got 'week'"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--rpm", "-5"], "--rpm: must be a whole number >= 0, got -5"),
        (["keys", "create", "--tpm", "-1"], "--tpm: must be a whole number >= 0, got -1"),
        (["keys", "create", "--quota", "-3"], "--quota: must be a whole number >= 0, got -3"),
        (
            ["keys", "create", "--safety-policy", "strcit"],
            "--safety-policy: unknown policy 'strcit'; known: default",
        ),
        (
            ["rollout", "start", "chat", "--candidate", "b", "--min-samples", "-1"],
            "--min-samples: Input should be greater than or equal to 1",
        ),
        (
            ["rollout", "start", "chat", "--candidate", "b", "--max-p95-ratio", "0.5"],
            "--max-p95-ratio: Input should be greater than or equal to 1",
        ),
        (
            ["rollout", "start", "chat", "--candidate", "b", "--steps", "50,-10"],
            "--steps must be increasing percentages in (0, 100], got '50,-10'",
        ),
        (
            ["usage", "--since-hours", "-2"],
            "--since-hours must be a positive number of hours, got -2.0",
        ),
        (["serve", "--port", "-1"], "--port must be between 0 and 65535, got -1"),
    ],
)
def test_invalid_numbers_and_policies_are_one_clear_error_and_write_nothing(
    args: list[str], message: str, genaiops_home
):
    r = run(app, ["gateway", *args])
    assert r.exit_code == 1 and isinstance(r.exception, ConfigError), r.output
    assert str(r.exception) == message
    assert not (genaiops_home / "gateway").exists()  # no state or ledger file was created


def test_rpm_negative_through_the_entry_point_is_one_line(genaiops_home):
    p = subprocess.run(
        [sys.executable, "-m", "genaiops", "gateway", "keys", "create", "--rpm", "-5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == "error: --rpm: must be a whole number >= 0, got -5"
    assert not (genaiops_home / "gateway").exists()


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
