"""A gateway on PostgreSQL (``state: {kind: postgres}``): migrations, the start-up schema check,
keys / ledger / captures / feedback in the database, and a database outage (503, recovery)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from gateway import create_app, migrations
from genaiops.cli import app as cli
from genaiops.errors import ConfigError
from tests.gateway.support import (
    FakeUpstream,
    postgres_server,
    serve,
    upstream_config,
)

PG_STATE = {"kind": "postgres", "dsn_env": "GENAIOPS_PG_DSN"}
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
run = CliRunner().invoke


def _blank_db(server_dsn: str) -> str:
    name = "blank_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return server_dsn.rsplit("/", 1)[0] + "/" + name


def _config_file(tmp_path: Path) -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(
        "deployments: [{name: up, backend: openai_compatible, base_url: 'http://x/v1'}]\n"
        "models: [{name: gpt-test, deployments: [{deployment: up}]}]\n"
        "state: {kind: postgres, dsn_env: GENAIOPS_PG_DSN}\n"
    )
    return p


def test_migrate_applies_once_then_the_gateway_starts(pg_server, monkeypatch, tmp_path):
    monkeypatch.setenv("GENAIOPS_PG_DSN", _blank_db(pg_server))
    cfg = upstream_config(state=PG_STATE)
    with pytest.raises(ConfigError, match=r"has no gateway schema.*genaiops gateway migrate"):
        create_app(cfg)  # refused at start-up: not migrated
    r = run(cli, ["gateway", "migrate", "--config", str(_config_file(tmp_path)), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out == {"kind": "postgres", "migrated": True, "dsn_env": "GENAIOPS_PG_DSN",
                   "before": None, "revision": migrations.head(), "applied": ["0001"]}  # fmt: skip
    again = json.loads(
        run(cli, ["gateway", "migrate", "-c", str(_config_file(tmp_path)), "--json"]).output
    )
    assert again["applied"] == [] and again["before"] == again["revision"] == migrations.head()
    create_app(cfg)  # now it starts


def test_an_older_schema_revision_is_refused_by_name(pg_dsn, monkeypatch):
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("UPDATE alembic_version SET version_num = '0000'")
    monkeypatch.setenv("GENAIOPS_PG_DSN", pg_dsn)
    try:
        with pytest.raises(ConfigError, match=r"\(\$GENAIOPS_PG_DSN\) is at schema revision 0000"):
            create_app(upstream_config(state=PG_STATE))
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute("UPDATE alembic_version SET version_num = %s", (migrations.head(),))


@pytest.mark.slow  # a fresh interpreter (~20 s on a loaded machine); CliRunner cases below
def test_migrate_with_a_bad_dsn_is_one_line_exit_2_never_the_secret(tmp_path):
    import os

    env = {**os.environ, "GENAIOPS_PG_DSN": "postgresql://gw:s3cret-pw@127.0.0.1:1/gw"}
    p = subprocess.run(
        [sys.executable, "-m", "genaiops", "gateway", "migrate", "-c", str(_config_file(tmp_path))],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach PostgreSQL ($GENAIOPS_PG_DSN)" in lines[0]
    assert "s3cret-pw" not in p.stderr + p.stdout


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("host=127.0.0.1 password=s3cret-pw port=", "cannot reach PostgreSQL"),
        ("not a dsn s3cret-pw", "not a valid PostgreSQL DSN"),
        ("", "environment variable GENAIOPS_PG_DSN is not set"),
    ],
)
def test_bad_dsns_are_config_errors_without_the_secret(tmp_path, monkeypatch, dsn, says):
    monkeypatch.setenv("GENAIOPS_PG_DSN", dsn)
    r = run(cli, ["gateway", "migrate", "--dsn-env", "GENAIOPS_PG_DSN"])  # no config needed
    assert isinstance(r.exception, ConfigError), r.output
    assert says in str(r.exception) and "s3cret-pw" not in str(r.exception)


def test_keys_ledger_feedback_and_captures_live_in_postgres(pg_dsn, monkeypatch, tmp_path):
    monkeypatch.setenv("GENAIOPS_PG_DSN", pg_dsn)
    cfg = upstream_config(state=PG_STATE, capture={"enabled": True, "allow_unredacted": True})
    with serve(cfg, FakeUpstream().client()) as gw:
        key = gw.create_key(name="app", team="search", quota=10_000, period="day")
        with gw.client(key) as c:
            r = c.post("/v1/chat/completions", json=BODY)
            assert r.status_code == 200, r.text
            rid = r.headers["x-request-id"]
            fb = c.post("/v1/feedback", json={"request_id": rid, "rating": "down"})
            assert fb.status_code == 200, fb.text
        gw.gw.capture.flush_sync()
    with psycopg.connect(pg_dsn) as db:
        assert db.execute("SELECT count(*) FROM kv WHERE k LIKE 'apikey:%%'").fetchone() == (1,)
        row = db.execute("SELECT team, outcome, total_tokens FROM usage WHERE request_id=%s",
                         (rid,)).fetchone()  # fmt: skip
        assert row == ("search", "ok", r.json()["usage"]["total_tokens"])
        assert db.execute("SELECT rating FROM feedback WHERE request_id=%s", (rid,)).fetchone() == (
            "down",
        )
        (rec,) = db.execute("SELECT record FROM captures WHERE request_id=%s", (rid,)).fetchone()
        assert rec["completion"] == "Hello from upstream."
        quota = db.execute("SELECT sum(used) FROM counters WHERE bucket LIKE '%%:quota:%%'")
        assert quota.fetchone() == (r.json()["usage"]["total_tokens"],)
    # the CLI reads the same database, with or without a gateway running
    cfg_file = str(_config_file(tmp_path))
    usage = run(cli, ["gateway", "usage", "--by", "team", "--json", "-c", cfg_file])
    assert usage.exit_code == 0, usage.output
    (team,) = json.loads(usage.output)
    assert (team["team"], team["requests"], team["feedback"]) == ("search", 1, 1)
    keys = run(cli, ["gateway", "keys", "list", "--json", "-c", cfg_file])
    assert [k["name"] for k in json.loads(keys.output)] == ["app"]


def test_database_outage_is_503_state_unavailable_and_recovers(monkeypatch, tmp_path):
    with postgres_server() as server:
        migrations.upgrade(server.dsn)
        monkeypatch.setenv("GENAIOPS_PG_DSN", server.dsn)
        with serve(upstream_config(state=PG_STATE), FakeUpstream().client()) as gw:
            key = gw.create_key(quota=100_000, period="day")
            with gw.client(key) as c:
                assert c.post("/v1/chat/completions", json=BODY).status_code == 200
                server.stop()
                time.sleep(1.1)  # past the key cache: authentication needs the database too
                for _ in range(2):
                    r = c.post("/v1/chat/completions", json=BODY)
                    assert r.status_code == 503, r.text
                    err = r.json()["error"]
                    assert err["code"] == "state_unavailable" and err["type"]
                    assert server.dsn not in r.text
                server.start()
                deadline = time.time() + 30
                while True:
                    r = c.post("/v1/chat/completions", json=BODY)
                    if r.status_code == 200 or time.time() > deadline:
                        break
                    assert r.status_code == 503, r.text  # never a 500 on the way back
                    time.sleep(0.2)
                assert r.status_code == 200, r.text
                rid = r.headers["x-request-id"]
        with psycopg.connect(server.dsn) as db:
            assert db.execute("SELECT 1 FROM usage WHERE request_id=%s", (rid,)).fetchone()


def test_state_kind_selects_the_backend_and_backend_stays_an_alias(tmp_path):
    from gateway.config import load_config
    from genaiops.errors import SpecError

    head = (
        "deployments: [{name: l, backend: local}]\n"
        "models: [{name: m, deployments: [{deployment: l}]}]\n"
    )
    p = tmp_path / "g.yaml"
    p.write_text(head + "state: {backend: redis, redis_url: 'redis://x:1/0'}\n")
    assert load_config(p).state.kind == "redis" == load_config(p).state.backend
    p.write_text(head + "state: {kind: postgres, dsn_env: GENAIOPS_PG_DSN}\n")
    assert load_config(p).state.dsn_env == "GENAIOPS_PG_DSN"
    p.write_text(head + "state: {kind: postgres}\n")
    with pytest.raises(SpecError, match=r"g\.yaml.*state.*needs dsn_env"):
        load_config(p)
    p.write_text(head + "state: {kind: postgres, dsn_env: 'postgresql://u:pw@h/db'}\n")
    with pytest.raises(SpecError, match=r"state\.dsn_env") as e:
        load_config(p)  # a DSN where the variable's name belongs is refused
    assert "pw@h" not in str(e.value)
