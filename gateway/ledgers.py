"""The usage ledger's interface and its selection: SQLite (:class:`gateway.ledger.Ledger`) by
default, PostgreSQL (:class:`gateway.state.pg_ledger.PgLedger`) with ``state: {kind: postgres}``.

Both write one durable row per request before the response completes and answer the same
queries (``tests/gateway/test_ledger_contract.py`` runs on each).

    >>> ledger = open_ledger(load_config("gateway.yaml"))               # doctest: +SKIP
    >>> ledger.summary(by="model")                                      # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.ledger import UsageRow

__all__ = ["UsageLedger", "deployment_stats_of", "open_ledger"]


@runtime_checkable
class UsageLedger(Protocol):
    """What the gateway, its CLI and the monitoring tools use of a ledger."""

    def write_sync(self, row: UsageRow) -> None: ...

    async def write(self, row: UsageRow) -> None: ...

    def progress_sync(self, updates: list[tuple[str, int, int]]) -> None: ...

    def streaming_owners_sync(self, exclude: str) -> list[str]: ...

    def interrupt_sync(self, owners: list[str], request_ids: list[str]) -> int: ...

    def rows(self, limit: int = 1000) -> list[dict[str, Any]]: ...

    def rows_between(self, since: float, until: float | None = None) -> list[dict[str, Any]]: ...

    def get(self, request_id: str) -> dict[str, Any] | None: ...

    def summary(self, by: str = "model", since: float | None = None) -> list[dict[str, Any]]: ...

    def record_score(self, request_id: str, score: float, name: str = "online") -> bool: ...

    def deployment_stats(self, alias: str, deployment: str, since: float) -> dict[str, Any]: ...

    def close(self) -> None: ...


def open_ledger(config: GatewayConfig) -> UsageLedger:
    """The ledger a gateway with ``config`` writes (PostgreSQL is imported only when used)."""
    if config.state.kind == "postgres":
        from gateway import migrations
        from gateway.state.pg_ledger import PgLedger

        assert config.state.dsn_env  # validated by StateConfig
        dsn = migrations.dsn_from_env(config.state.dsn_env)
        return PgLedger(dsn, pool_size=config.state.pool_size)
    from gateway.ledger import Ledger

    return Ledger(config.ledger_path(), sync=config.state.ledger_sync)


def deployment_stats_of(rows: list[tuple[Any, Any, Any]]) -> dict[str, Any]:
    """What :meth:`UsageLedger.deployment_stats` reports, from ``(status, latency_ms, score)``
    per request: sample size, errors (5xx) and their rate, p95 latency, mean online score."""
    n = len(rows)
    errors = sum(1 for s, _, _ in rows if s is not None and s >= 500)
    lat = sorted(x for _, x, _ in rows if x is not None)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
    scores = [x for _, _, x in rows if x is not None]
    return {
        "n": n,
        "errors": errors,
        "error_rate": errors / n if n else 0.0,
        "p95_ms": p95,
        "scored": len(scores),
        "mean_score": sum(scores) / len(scores) if scores else None,
    }
