"""``genaiops gateway capture ...``: look at and prune the gateway's captured traffic.

They work on the capture store of ``--config`` (default SQLite beside the ledger), whether or
not a gateway is running; ``genaiops monitor`` reads the same store.

    genaiops gateway capture stats --since-hours 24
    genaiops gateway capture list --alias chat --limit 5 --json
    genaiops gateway capture show req_0123... --json
    genaiops gateway capture purge                      # apply capture.retention now
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from genaiops.cli._output import console, emit_json

__all__ = ["capture_app", "feedback_columns"]

capture_app = typer.Typer(no_args_is_help=True, help="Captured traffic and feedback.")

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", envvar="GENAIOPS_GATEWAY_CONFIG", help="Gateway YAML."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SinceOpt = Annotated[float | None, typer.Option(help="Only the last N hours.")]


def _since(hours: float | None) -> float | None:
    from genaiops.errors import ConfigError

    if hours is not None and not hours > 0:
        raise ConfigError(f"--since-hours must be a positive number of hours, got {hours}")
    return time.time() - hours * 3600 if hours else None


def _store(config: str | None) -> Any:
    from gateway.capture import open_capture_store
    from gateway.config import load_config

    return open_capture_store(load_config(config))


def feedback_columns(config: Any, by: str, rows: list[dict[str, Any]], since: float | None) -> None:
    """Add ``feedback`` and ``thumbs_up_rate`` to usage ``rows`` grouped ``by`` (in place);
    nothing when the gateway never stored feedback (no SQLite capture file)."""
    from gateway.capture import FEEDBACK_GROUPS, open_capture_store

    on_sqlite = config.state.kind != "postgres"
    if by not in FEEDBACK_GROUPS or (on_sqlite and not config.capture_path().exists()):
        return
    store = open_capture_store(config)
    try:
        fb = {r[by]: r for r in store.feedback_summary(by, since)}
    finally:
        store.close()
    for row in rows:
        f = fb.get(row[by]) or {}
        row["feedback"] = f.get("feedback", 0)
        row["thumbs_up_rate"] = f.get("thumbs_up_rate")


@capture_app.command("stats")
def stats(since_hours: SinceOpt = None, config: ConfigOpt = None, json_: JsonOpt = False) -> None:
    """How many captures and ratings the store holds (per alias, per rating)."""
    store = _store(config)
    try:
        counts = store.counts(_since(since_hours))
    finally:
        store.close()
    if json_:
        emit_json(counts.model_dump())
        return
    console.print(
        f"{counts.captures} captured requests, {counts.feedback} ratings"
        + (f" ({_age(counts.oldest_ts)} to {_age(counts.newest_ts)})" if counts.captures else "")
    )
    for name, d in (("alias", counts.by_alias), ("rating", counts.by_rating)):
        if d:
            t = Table(name, "count")
            for k, v in sorted(d.items()):
                t.add_row(str(k), str(v))
            console.print(t)


def _age(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


@capture_app.command("list")
def list_(
    since_hours: SinceOpt = None,
    alias: Annotated[str | None, typer.Option(help="Only this model alias.")] = None,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    variant: Annotated[str | None, typer.Option(help="Only this flow variant.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (oldest first).")] = 20,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Captured requests: id, time, alias, deployment, question and answer (cut)."""
    store = _store(config)
    try:
        recs = store.query(
            since=_since(since_hours),
            alias=alias,
            deployment=deployment,
            variant=variant,
            limit=limit,
        )
    finally:
        store.close()
    if json_:
        emit_json([r.model_dump() for r in recs])
        return
    t = Table("request_id", "time", "alias", "deployment", "question", "answer")
    for r in recs:
        t.add_row(r.request_id, _age(r.ts), r.alias, r.deployment or "",
                  r.question()[:60], r.completion[:60])  # fmt: skip
    console.print(t)


@capture_app.command("show")
def show(request_id: str, config: ConfigOpt = None, json_: JsonOpt = False) -> None:
    """One captured request in full, with its feedback."""
    from gateway.errors import NotFound

    store = _store(config)
    try:
        rec = store.get(request_id, None)
        fb = store.get_feedback(request_id, None)
    finally:
        store.close()
    if rec is None and fb is None:
        raise NotFound(f"no captured request or feedback {request_id!r}")
    out = {
        "capture": rec.model_dump() if rec else None,
        "feedback": fb.model_dump() if fb else None,
    }
    if json_:
        emit_json(out)
        return
    console.print_json(data=out)


@capture_app.command("purge")
def purge(
    older_than: Annotated[
        str | None, typer.Option(help="Delete captures older than this (default: retention).")
    ] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Apply retention now: delete captures (and feedback) past their retention."""
    from gateway.config import load_config
    from gateway.errors import InvalidRequest
    from gateway.rollout import parse_duration
    from genaiops.errors import ConfigError

    cfg = load_config(config)
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except InvalidRequest as e:
            raise ConfigError(f"--older-than: {e.message}") from e
        if age <= 0:
            raise ConfigError("--older-than must be positive")
        cfg.capture.retention = older_than
    from gateway.capture import open_capture_store
    from gateway.capture.service import Capturer

    capturer = Capturer(cfg.capture, lambda: open_capture_store(cfg))
    try:
        n, f = capturer.purge_sync()
    finally:
        capturer.close()
    if json_:
        emit_json({"captures_deleted": n, "feedback_deleted": f})
        return
    console.print(f"deleted {n} captures and {f} feedback records")
