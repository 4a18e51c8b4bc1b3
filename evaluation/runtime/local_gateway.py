"""Start and stop a local gateway for the main job, CI and end-to-end tests.

The gateway is a service, never imported: this runs ``genaiops gateway keys create`` and
``genaiops gateway serve`` as subprocesses on loopback, waits for ``/healthz``, and always stops
the server it started (SIGTERM, then SIGKILL).

    >>> with local_gateway() as gw:                                      # doctest: +SKIP
    ...     print(gw.url, gw.api_key)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from evaluation.errors import EvaluationError
from genaiops.openai_client import free_port
from genaiops.settings import get_settings, override_settings

__all__ = ["LocalGateway", "local_gateway", "using_local_gateway"]


@dataclass(frozen=True)
class LocalGateway:
    """A running gateway process: its ``/v1`` URL, the API key made for it, pid and log."""

    url: str
    api_key: str
    pid: int
    log: Path


def _cli() -> list[str]:
    return [sys.executable, "-m", "genaiops.cli"]


@contextlib.contextmanager
def local_gateway(
    port: int | None = None,
    *,
    config: str | None = None,
    timeout_s: float = 120.0,
    log_dir: Path | None = None,
    warm_up: str | None = "genaiops-local",
) -> Iterator[LocalGateway]:
    """A gateway on ``127.0.0.1:port`` with a fresh API key, stopped on exit."""
    port = port or free_port()
    home = get_settings().home
    env = {**os.environ, "GENAIOPS_HOME": str(home)}  # the children share this process's state
    cfg = ["--config", config] if config else []
    out = subprocess.run(
        [*_cli(), "gateway", "keys", "create", "--name", "genaiops-eval", "--json", *cfg],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    if out.returncode != 0:
        raise EvaluationError(f"cannot create a gateway key: {out.stderr.strip()[-400:]}")
    try:
        key = json.loads(out.stdout)["key"]
    except (ValueError, KeyError) as e:
        raise EvaluationError(f"unexpected 'gateway keys create' output: {out.stdout[:200]}") from e
    log_dir = log_dir or home
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"gateway-{port}.log"
    with open(log, "ab") as logf:
        proc = subprocess.Popen(
            [*_cli(), "gateway", "serve", "--host", "127.0.0.1", "--port", str(port), *cfg],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise EvaluationError(
                    f"gateway exited with {proc.returncode}: {log.read_text()[-800:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise EvaluationError(f"gateway not healthy after {timeout_s:.0f}s (log: {log})")
            time.sleep(0.3)
        if warm_up:  # load the local model now, not inside the first evaluated line's timeout
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": warm_up,
                    "max_tokens": 1,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"Authorization": f"Bearer {key}"},
                timeout=max(60.0, deadline - time.monotonic() + 600),
            )
            if r.status_code >= 400:
                raise EvaluationError(f"gateway warm-up failed: {r.status_code} {r.text[:300]}")
        yield LocalGateway(f"{url}/v1", key, proc.pid, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def using_local_gateway(**kwargs: Any) -> Iterator[LocalGateway]:
    """:func:`local_gateway` with genaiops settings pointing at it for the duration (process-wide,
    through :func:`~genaiops.settings.override_settings`: ``os.environ`` is left alone), so
    flows and judges reach it."""
    with (
        local_gateway(**kwargs) as gw,
        override_settings(gateway_url=gw.url, api_key=SecretStr(gw.api_key)),
    ):
        yield gw
