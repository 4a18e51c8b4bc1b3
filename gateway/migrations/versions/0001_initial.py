"""The gateway's shared records: counters, holds, leases, key-value, usage, scores, captures,
feedback — the same tables as the SQLite stores, typed for PostgreSQL.  Records are ``JSON``,
not ``JSONB``: JSONB refuses ``\\u0000``, which any client may put into a captured message.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_UP = """
CREATE TABLE counters (bucket TEXT PRIMARY KEY, used BIGINT NOT NULL,
                       expires DOUBLE PRECISION NOT NULL);
CREATE INDEX counters_expires ON counters(expires);
CREATE TABLE kv (k TEXT PRIMARY KEY, v JSON NOT NULL, version BIGINT NOT NULL);
CREATE TABLE holds (id TEXT PRIMARY KEY, owner TEXT NOT NULL, amount BIGINT NOT NULL,
  charge BIGINT NOT NULL DEFAULT 0, buckets TEXT[] NOT NULL, ttl DOUBLE PRECISION NOT NULL,
  state TEXT NOT NULL DEFAULT 'active', expires DOUBLE PRECISION NOT NULL);
CREATE INDEX holds_owner ON holds(owner, state);
CREATE TABLE owners (owner TEXT PRIMARY KEY, expires DOUBLE PRECISION NOT NULL);
CREATE TABLE usage (
  request_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, key_id TEXT, key_prefix TEXT,
  team TEXT, alias TEXT, deployment TEXT, prompt_tokens BIGINT NOT NULL DEFAULT 0,
  completion_tokens BIGINT NOT NULL DEFAULT 0, total_tokens BIGINT NOT NULL DEFAULT 0,
  latency_ms DOUBLE PRECISION, status INTEGER, outcome TEXT, stream INTEGER NOT NULL DEFAULT 0,
  error_code TEXT, safety TEXT, owner TEXT);
CREATE INDEX usage_ts ON usage(ts);
CREATE INDEX usage_dep ON usage(deployment, ts);
CREATE INDEX usage_streaming ON usage(owner) WHERE outcome = 'streaming';
CREATE TABLE scores (request_id TEXT PRIMARY KEY, name TEXT, score DOUBLE PRECISION NOT NULL,
                     ts DOUBLE PRECISION NOT NULL);
CREATE TABLE captures (
  request_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, key_id TEXT, team TEXT,
  alias TEXT, deployment TEXT, flow_variant TEXT, session TEXT, record JSON NOT NULL);
CREATE INDEX captures_ts ON captures(ts);
CREATE INDEX captures_alias ON captures(alias, ts);
CREATE INDEX captures_dep ON captures(deployment, ts);
CREATE TABLE feedback (
  request_id TEXT NOT NULL, key_id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
  rating TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, alias TEXT, deployment TEXT,
  team TEXT, flow_variant TEXT, record JSON NOT NULL, PRIMARY KEY (request_id, key_id));
CREATE INDEX feedback_ts ON feedback(ts);
"""


def upgrade() -> None:
    for stmt in _UP.split(";"):
        if stmt.strip():
            op.execute(stmt)


def downgrade() -> None:
    for table in ("feedback", "captures", "scores", "usage", "owners", "holds", "kv", "counters"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
