"""The gateway's PostgreSQL schema, versioned with Alembic (scripts in ``versions/``).

``genaiops gateway migrate`` applies them (:func:`upgrade`); a gateway on PostgreSQL refuses to
start unless the database is at :func:`head` (:func:`check`).  The connection string comes only
from the environment variable the config names (``state.dsn_env``) and is never echoed: errors
name the variable, not its value.

    >>> upgrade(dsn_from_env("GENAIOPS_PG_DSN"))      # doctest: +SKIP
    MigrationResult(before=None, after='0001', applied=['0001'])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genaiops.errors import ConfigError

__all__ = [
    "MigrationResult",
    "check",
    "current",
    "dsn_from_env",
    "head",
    "describe_error",
    "upgrade",
]

_HERE = Path(__file__).resolve().parent


@dataclass
class MigrationResult:
    before: str | None
    after: str | None
    applied: list[str] = field(default_factory=list)


def dsn_from_env(env: str) -> str:
    """The DSN held by ``env``; :class:`ConfigError` naming the variable when it is unset."""
    dsn = os.environ.get(env, "").strip()
    if not dsn:
        raise ConfigError(
            f"state.dsn_env: environment variable {env} is not set (a PostgreSQL DSN)"
        )
    return dsn


def describe_error(exc: BaseException, dsn: str) -> str:
    """One line about a failed connection, without the DSN or its password."""
    import psycopg

    if isinstance(exc, psycopg.ProgrammingError) and "connection" in str(exc).lower():
        return "the connection string is not a valid PostgreSQL DSN"
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        from psycopg.conninfo import conninfo_to_dict

        secret = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        secret = None
    for s in (dsn, secret):
        if s:
            msg = msg.replace(str(s), "***")
    return msg


def _script() -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg, ScriptDirectory.from_config(cfg)


def head() -> str:
    """The newest revision the code knows."""
    rev = _script()[1].get_current_head()
    assert rev is not None
    return str(rev)


def _engine(dsn: str) -> Any:
    """A SQLAlchemy engine (what Alembic runs on) whose connections psycopg opens from the DSN
    as given: URL or key=value form, nothing re-parsed."""
    import psycopg
    import sqlalchemy as sa

    return sa.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=sa.pool.NullPool
    )


def current(dsn: str, env: str = "DSN") -> str | None:
    """The revision the database is at (None: never migrated)."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
            if exists is None or exists[0] is None:
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            return str(row[0]) if row else None
    except psycopg.Error as e:
        raise ConfigError(f"cannot reach PostgreSQL (${env}): {describe_error(e, dsn)}") from e


def upgrade(dsn: str, env: str = "DSN", revision: str = "head") -> MigrationResult:
    """Apply every migration up to ``revision`` in one transaction; safe to run again, and from
    several hosts at once (an advisory lock lets one migrate, the others then find nothing to
    do)."""
    import psycopg
    import sqlalchemy as sa
    from alembic import command

    before = current(dsn, env)
    cfg, script = _script()
    try:
        with _engine(dsn).begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(727101)"))  # one migrator at a time
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except (sa.exc.SQLAlchemyError, psycopg.Error) as e:
        cause = e.orig if isinstance(e, sa.exc.DBAPIError) and e.orig is not None else e
        raise ConfigError(f"migration failed (${env}): {describe_error(cause, dsn)}") from e
    after = current(dsn, env)
    applied = []
    if after is not None and after != before:
        steps = script.iterate_revisions(after, before or "base")
        applied = [str(x.revision) for x in reversed(list(steps))]
    return MigrationResult(before=before, after=after, applied=applied)


def check(dsn: str, env: str = "DSN") -> None:
    """Refuse (:class:`ConfigError`) unless the database is at :func:`head`."""
    at, want = current(dsn, env), head()
    if at != want:
        state = "has no gateway schema" if at is None else f"is at schema revision {at}"
        raise ConfigError(
            f"the PostgreSQL database (${env}) {state}; this gateway needs {want}: "
            "run `genaiops gateway migrate --config <gateway.yaml>` first"
        )
