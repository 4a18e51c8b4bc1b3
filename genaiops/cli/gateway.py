"""Run the OpenAI-compatible gateway; manage its keys, usage and rollouts.

Commands that manage state (keys, usage, rollout) work on the same store the gateway uses
(``--config FILE``: its ``state`` section; default SQLite under ``$GENAIOPS_HOME/gateway``),
so they work whether or not a gateway is running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from genaiops.cli._output import console, emit_json
from genaiops.cli.gateway_capture import capture_app, feedback_columns

app = typer.Typer(no_args_is_help=True)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
rollout_app = typer.Typer(no_args_is_help=True, help="Gradual rollout of a deployment.")
app.add_typer(keys_app, name="keys")
app.add_typer(rollout_app, name="rollout")
app.add_typer(capture_app, name="capture")

T = TypeVar("T")
ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", envvar="GENAIOPS_GATEWAY_CONFIG", help="Gateway YAML."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (share state like replicas).")
    ] = 1,
    json_: JsonOpt = False,
) -> None:
    """Serve /v1/chat/completions, /v1/embeddings, /v1/models, /healthz, /metrics, /admin."""
    import uvicorn

    from gateway import create_app, load_config
    from gateway.logs import configure, log_config
    from genaiops.errors import ConfigError

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    cfg = load_config(config)
    # JSON lines on stderr in this process and, through uvicorn's log_config, in every worker
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    configure(level)
    if json_:
        emit_json({"url": f"http://{host}:{port}/v1", "models": [m.name for m in cfg.models]})
    else:
        console.print(
            f"gateway on http://{host}:{port}/v1 — models: " + ", ".join(m.name for m in cfg.models)
        )
    if workers > 1:
        # each worker builds its own app from the same file (validated above)
        os.environ["GENAIOPS_GATEWAY_CONFIG"] = str(Path(config).resolve()) if config else ""
        uvicorn.run(
            "gateway.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            log_config=log_config(level),
            access_log=False,  # below warning: it would format every line only to drop it
        )
        return
    uvicorn.run(
        create_app(cfg),
        host=host,
        port=port,
        log_level="warning",
        log_config=log_config(level),
        access_log=False,
    )


def _run(config: str | None, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(gateway_objects)`` against the configured store without serving."""
    from gateway.config import load_config
    from gateway.keys import KeyManager
    from gateway.ledgers import open_ledger
    from gateway.rollout import RolloutManager
    from gateway.state import open_config_store

    cfg = load_config(config)

    async def go() -> T:
        store = open_config_store(cfg.state, cfg.state_path())
        ledger = open_ledger(cfg)
        ns = type("Ctx", (), {})()
        ns.config, ns.store, ns.ledger = cfg, store, ledger
        ns.keys = KeyManager(store, policies=cfg.safety.policies)
        ns.rollouts = RolloutManager(store, cfg, ledger)
        try:
            return await fn(ns)
        finally:
            await store.close()
            ledger.close()

    return asyncio.run(go())


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Label for people.")] = "",
    team: Annotated[str | None, typer.Option(help="Team (shares team limits).")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    quota: Annotated[int | None, typer.Option(help="Token quota per period.")] = None,
    period: Annotated[str, typer.Option(help="Quota period: day or month.")] = "month",
    safety_policy: Annotated[str | None, typer.Option(help="Named safety policy.")] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Create a key; the secret is printed once and never stored."""
    from gateway.config import load_config
    from gateway.keys import key_field_problems
    from genaiops.errors import ConfigError

    cfg = load_config(config)
    fields: dict[str, Any] = {"rpm": rpm, "tpm": tpm, "quota": quota, "period": period}
    fields["safety_policy"] = safety_policy
    problems = key_field_problems(**fields, policies=cfg.safety.policies)
    if problems:  # refused before the store is opened: nothing is written
        field, problem = problems[0]
        raise ConfigError(f"{_flag(field)}: {problem}")

    async def go(ctx: Any) -> tuple[str, Any]:
        return await ctx.keys.create(name=name, team=team, **fields)

    secret, rec = _run(config, go)
    if json_:
        emit_json({"key": secret, **rec.public()})
    else:
        console.print(
            f"created {rec.id} ({rec.prefix}…) — store this key now, it is not shown "
            f"again:\n{secret}"
        )


@keys_app.command("list")
def keys_list(config: ConfigOpt = None, json_: JsonOpt = False) -> None:
    """List keys (id, prefix, team, limits; never the secret)."""
    recs = _run(config, lambda ctx: ctx.keys.list())
    if json_:
        emit_json([r.public() for r in recs])
        return
    t = Table("id", "prefix", "name", "team", "rpm", "tpm", "quota", "period", "revoked")
    for r in recs:
        t.add_row(
            r.id,
            r.prefix + "…",
            r.name,
            r.team or "",
            *(str(x) if x is not None else "" for x in (r.rpm, r.tpm, r.quota)),
            r.period,
            "yes" if r.revoked else "",
        )
    console.print(t)


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOpt = None, json_: JsonOpt = False) -> None:
    """Revoke a key by id (takes effect within a second on running gateways)."""
    rec = _run(config, lambda ctx: ctx.keys.revoke(key_id))
    if json_:
        emit_json(rec.public())
    else:
        console.print(f"revoked {rec.id}")


@app.command()
def usage(
    by: Annotated[str, typer.Option(help="key | model | deployment | day | team")] = "model",
    since_hours: Annotated[float | None, typer.Option(help="Only the last N hours.")] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Requests, errors and tokens from the usage ledger (and feedback: count, thumbs-up rate)."""
    from genaiops.errors import ConfigError

    if since_hours is not None and not since_hours > 0:
        raise ConfigError(f"--since-hours must be a positive number of hours, got {since_hours}")
    since = time.time() - since_hours * 3600 if since_hours else None

    async def go(ctx: Any) -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = ctx.ledger.summary(by=by, since=since)
            return rows
        except ValueError as e:
            raise ConfigError(str(e)) from e

    rows = _run(config, go)
    from gateway.config import load_config

    feedback_columns(load_config(config), by, rows, since)  # thumbs-up rate (POST /v1/feedback)
    if json_:
        emit_json(rows)
        return
    cols = [
        by,
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "avg_latency_ms",
    ]
    cols += [c for c in ("feedback", "thumbs_up_rate") if rows and c in rows[0]]
    t = Table(*cols)
    for r in rows:
        t.add_row(*(str(r[c]) if r[c] is not None else "" for c in cols))
    console.print(t)


@app.command()
def migrate(
    config: ConfigOpt = None,
    dsn_env: Annotated[
        str | None,
        typer.Option(help="Env var holding the DSN (default: the config's state.dsn_env)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Bring the PostgreSQL schema (state kind postgres) to the revision this version needs."""
    from gateway import migrations
    from gateway.config import load_config

    cfg = load_config(config)
    env = dsn_env or (cfg.state.dsn_env if cfg.state.kind == "postgres" else None)
    if env is None:
        out: dict[str, Any] = {"kind": cfg.state.kind, "migrated": False}
        msg = f"state kind is {cfg.state.kind}: nothing to migrate (its tables create themselves)"
    else:
        res = migrations.upgrade(migrations.dsn_from_env(env), env)
        out = {"kind": "postgres", "migrated": True, "dsn_env": env, "before": res.before,
               "revision": res.after, "applied": res.applied}  # fmt: skip
        done = ", ".join(res.applied) if res.applied else "nothing to apply"
        msg = f"PostgreSQL (${env}) at schema revision {res.after} ({done})"
    if json_:
        emit_json(out)
    else:
        console.print(msg)


def _show(st: Any, json_: bool) -> None:
    if json_:
        emit_json(st.to_dict())
        return
    console.print(
        f"{st.alias}: {st.status} — candidate {st.candidate} at {st.weight:g}% "
        f"(stable {st.stable}); step {st.step + 1}/{len(st.steps)} {st.steps}, "
        f"every {st.interval_s:g}s"
    )
    if st.history:
        last = st.history[-1]
        reason = last.get("reason", "")
        console.print(f"  last event: {last['event']} {reason}".rstrip())


@rollout_app.command("start")
def rollout_start(
    alias: str,
    candidate: Annotated[str, typer.Option(help="Deployment to roll out.")],
    steps: Annotated[str, typer.Option(help="Traffic percentages.")] = "5,25,50,100",
    interval: Annotated[str, typer.Option(help="Time per step (60s, 5m).")] = "60s",
    stable: Annotated[str | None, typer.Option(help="Baseline deployment.")] = None,
    min_samples: Annotated[int | None, typer.Option(help="Candidate requests needed.")] = None,
    max_error_rate_increase: Annotated[float | None, typer.Option()] = None,
    max_p95_ratio: Annotated[float | None, typer.Option()] = None,
    max_score_drop: Annotated[
        float | None, typer.Option(help="Allowed drop of the mean online score.")
    ] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Start moving traffic of ALIAS to a candidate deployment step by step."""
    from pydantic import ValidationError

    from gateway.rollout import parse_duration
    from gateway.schemas import RolloutStart
    from genaiops.errors import ConfigError

    try:
        step_list = [float(s) for s in steps.split(",") if s.strip()]
    except ValueError as e:
        raise ConfigError(f"--steps: not a list of numbers: {steps!r}") from e
    thresholds: dict[str, Any] = {
        "min_samples": min_samples,
        "max_error_rate_increase": max_error_rate_increase,
        "max_p95_ratio": max_p95_ratio,
        "max_score_drop": max_score_drop,
    }
    try:  # the same limits as POST /admin/rollouts, checked before the store is opened
        RolloutStart(candidate=candidate, steps=step_list, interval=interval, **thresholds)
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"{_flag(str(first['loc'][0]))}: {first['msg']}") from None
    if any(not 0 < s <= 100 for s in step_list) or step_list != sorted(step_list):
        raise ConfigError(f"--steps must be increasing percentages in (0, 100], got {steps!r}")
    secs = parse_duration(interval)
    st = _run(
        config,
        lambda ctx: ctx.rollouts.start(
            alias, candidate, step_list, secs, stable=stable, **thresholds
        ),
    )
    _show(st, json_)


@rollout_app.command("status")
def rollout_status(alias: str, config: ConfigOpt = None, json_: JsonOpt = False) -> None:
    """Where the rollout of ALIAS stands."""
    from gateway.errors import NotFound

    st = _run(config, lambda ctx: ctx.rollouts.get(alias))
    if st is None:
        raise NotFound(f"no rollout for {alias!r}")
    _show(st, json_)


def _action(name: str, doc: str) -> None:
    def cmd(alias: str, config: ConfigOpt = None, json_: JsonOpt = False) -> None:
        st = _run(config, lambda ctx: getattr(ctx.rollouts, name)(alias))
        _show(st, json_)

    cmd.__doc__ = doc
    rollout_app.command(name)(cmd)


_action("promote", "Give the candidate 100% now.")
_action("rollback", "Send all traffic back to the stable deployment now.")
_action("pause", "Hold the current weight; no automatic steps.")
_action("resume", "Continue a paused rollout.")
