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

# Admission in one call, one round trip, the row locks held only while the server runs it: a
# conditional upsert of every bucket (``used + n <= limit``, in bucket order); unless all had
# room, the block's subtransaction is rolled back and NULL returned; else the hold and the
# owner's lease are written and the buckets' new values returned in the order given.
_ADMIT = """
CREATE FUNCTION gw_admit(p_buckets text[], p_amounts bigint[], p_limits bigint[],
                         p_ttls float8[], p_now float8, p_hold_id text, p_owner text,
                         p_hold_amount bigint, p_hold_buckets text[], p_hold_ttl float8,
                         p_until float8, p_tomb float8)
RETURNS bigint[] LANGUAGE plpgsql AS $fn$
DECLARE
  got_b text[];
  got_u bigint[];
BEGIN
  BEGIN
    WITH v AS (
      SELECT * FROM unnest(p_buckets, p_amounts, p_limits, p_ttls) AS v(bucket, amount, lim, ttl)),
    up AS (
      INSERT INTO counters AS c (bucket, used, expires)
      SELECT v.bucket, v.amount, p_now + v.ttl FROM v WHERE v.amount <= v.lim ORDER BY v.bucket
      ON CONFLICT (bucket) DO UPDATE
         SET used = (CASE WHEN c.expires > p_now THEN c.used ELSE 0 END) + excluded.used,
             expires = CASE WHEN c.expires > p_now THEN c.expires ELSE excluded.expires END
       WHERE (CASE WHEN c.expires > p_now THEN c.used ELSE 0 END) + excluded.used
             <= (SELECT v2.lim FROM v AS v2 WHERE v2.bucket = c.bucket)
      RETURNING c.bucket, c.used)
    SELECT array_agg(up.bucket), array_agg(up.used) INTO got_b, got_u FROM up;
    IF coalesce(array_length(got_b, 1), 0) < array_length(p_buckets, 1) THEN
      RAISE EXCEPTION USING ERRCODE = 'GW001';
    END IF;
  EXCEPTION WHEN SQLSTATE 'GW001' THEN
    RETURN NULL;
  END;
  IF p_hold_id IS NOT NULL THEN
    INSERT INTO holds(id, owner, amount, charge, buckets, ttl, state, expires)
    VALUES (p_hold_id, p_owner, p_hold_amount, 0, p_hold_buckets, p_hold_ttl, 'active', p_tomb)
    ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, amount = excluded.amount, charge = 0,
       buckets = excluded.buckets, ttl = excluded.ttl, state = 'active', expires = excluded.expires;
    INSERT INTO owners AS o (owner, expires) VALUES (p_owner, p_until)
    ON CONFLICT (owner) DO UPDATE SET expires = GREATEST(o.expires, excluded.expires);
  END IF;
  RETURN ARRAY(SELECT got_u[array_position(got_b, x.b)]
                 FROM unnest(p_buckets) WITH ORDINALITY AS x(b, i) ORDER BY x.i);
END
$fn$
"""


def upgrade() -> None:
    for stmt in _UP.split(";"):
        if stmt.strip():
            op.execute(stmt)
    op.execute(_ADMIT)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS gw_admit")
    for table in ("feedback", "captures", "scores", "usage", "owners", "holds", "kv", "counters"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
