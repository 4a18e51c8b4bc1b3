"""Test doubles at the seams only: a fake OpenAI-compatible upstream (httpx transport or a real
loopback server) and a helper that runs a real gateway under uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from gateway import create_app
from gateway.config import GatewayConfig
from gateway.testing import MockUpstream, serve_in_thread
from genaiops.openai_client import free_port  # the suite's one free_port

ADMIN_KEY = "admin-test-key-0123456789"
UPSTREAM = "http://upstream.test/v1"


@dataclass
class FakeUpstream(MockUpstream):
    """The suite's one fake upstream (:class:`gateway.testing.MockUpstream`), in process: pass
    ``client()`` to a backend. Presets of the gateway tests: this reply, 11 prompt tokens,
    streams that open with a role chunk; ``delay_s`` / ``chunk_delay_s`` in seconds."""

    reply: str = "Hello from upstream."
    prompt_tokens: int = 11
    role_chunk: bool = True
    embedding_dim: int = 3
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0

    def __post_init__(self) -> None:
        self.delay_ms = self.delay_ms or self.delay_s * 1000
        self.chunk_delay_ms = self.chunk_delay_ms or self.chunk_delay_s * 1000


def upstream_config(**kw: Any) -> GatewayConfig:
    """One alias ``gpt-test`` on an openai_compatible deployment ``up`` (plus extras in ``kw``)."""
    data: dict[str, Any] = {
        "deployments": [
            {
                "name": "up",
                "backend": "openai_compatible",
                "base_url": UPSTREAM,
                "model": "up-model",
                "max_retries": 0,
                "backoff_s": 0.0,
            },
            {
                "name": "up-embed",
                "backend": "openai_compatible",
                "base_url": UPSTREAM,
                "kind": "embeddings",
                "max_retries": 0,
            },
        ],
        "models": [
            {"name": "gpt-test", "deployments": [{"deployment": "up"}]},
            {
                "name": "embed-test",
                "kind": "embeddings",
                "deployments": [{"deployment": "up-embed"}],
            },
        ],
    }
    data.update(kw)
    return GatewayConfig.model_validate(data)


@dataclass
class Running:
    url: str
    app: Any
    server: uvicorn.Server

    @property
    def gw(self) -> Any:
        return self.app.state.gateway

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )

    def create_key(self, **limits: Any) -> str:
        with self.admin() as c:
            r = c.post("/admin/keys", json=limits)
            r.raise_for_status()
            return str(r.json()["key"])

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {key}"}, timeout=60
        )


@contextmanager
def serve(
    config: GatewayConfig, http_client: httpx.AsyncClient | None = None, **kw: Any
) -> Iterator[Running]:
    """A real gateway (uvicorn, lifespan on) on a free loopback port, in a thread."""
    app = create_app(config, http_client=http_client, **kw)
    with serve_in_thread(app, what="gateway", lifespan="on") as (url, server):
        yield Running(url, app, server)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port; yields its URL."""
    import shutil
    import subprocess

    import pytest

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (scripts/setup installs it with apt)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def routed_client(targets: dict[str, FakeUpstream]) -> httpx.AsyncClient:
    """One AsyncClient whose requests go to ``targets[host]`` (``http://<host>/v1``)."""

    async def route(req: httpx.Request) -> httpx.Response:
        return await targets[req.url.host].handle(req)

    return httpx.AsyncClient(transport=httpx.MockTransport(route))


def two_deployment_config(weights: tuple[float, float] = (100, 0), **kw: Any) -> GatewayConfig:
    """Alias ``gpt-test`` over deployments ``stable`` and ``canary`` (hosts of the same names)."""
    deps = [
        {"name": n, "backend": "openai_compatible", "base_url": f"http://{n}/v1", "max_retries": 0}
        for n in ("stable", "canary", "mirror")
    ]
    alias: dict[str, Any] = {
        "name": "gpt-test",
        "deployments": [
            {"deployment": "stable", "weight": weights[0]},
            {"deployment": "canary", "weight": weights[1]},
        ],
    }
    alias.update(kw.pop("alias", {}))
    return GatewayConfig.model_validate({"deployments": deps, "models": [alias], **kw})


@contextmanager
def mock_upstream_server(**kw: Any) -> Iterator[str]:
    """``gateway.testing``'s fake upstream on a loopback port (thread); yields its ``/v1`` URL."""
    with MockUpstream(**kw).serve() as url:
        yield url


@dataclass
class GatewayProcess:
    url: str
    proc: Any


@contextmanager
def gateway_processes(
    config_yaml: str, home: Any, n: int = 1, args: tuple[str, ...] = ()
) -> Iterator[list[GatewayProcess]]:
    """``n`` real ``genaiops gateway serve`` processes sharing one config (and its state)."""
    import os
    import subprocess
    import sys

    cfg = home / "gateway.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(config_yaml)
    env = {**os.environ, "GENAIOPS_HOME": str(home), "GENAIOPS_ADMIN_KEY": ADMIN_KEY}
    procs = []
    try:
        for _ in range(n):
            port = free_port()
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "genaiops",
                    "gateway",
                    "serve",
                    "--config",
                    str(cfg),
                    "--port",
                    str(port),
                    *args,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            procs.append(GatewayProcess(f"http://127.0.0.1:{port}", p))
        for gp in procs:
            deadline = time.time() + 180  # a loaded machine: imports take a while
            while True:
                try:
                    if httpx.get(gp.url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if gp.proc.poll() is not None or time.time() > deadline:
                    err = gp.proc.stderr.read().decode() if gp.proc.poll() is not None else ""
                    raise RuntimeError(f"gateway process did not start: {err[-2000:]}")
                time.sleep(0.1)
        yield procs
    finally:
        for gp in procs:
            if gp.proc.poll() is None:
                gp.proc.terminate()
        for gp in procs:
            try:
                gp.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                gp.proc.kill()
                gp.proc.wait()


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    import glob
    import shutil

    found = shutil.which(name)
    if found:
        return found
    cands = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4])
    )
    return cands[-1] if cands else None


@dataclass
class PgServer:
    """A running throwaway PostgreSQL server: its DSN, and stop/start for outage tests."""

    dsn: str
    ctl: list[str]  # the pg_ctl command line up to the action
    opts: str
    data: str  # the cluster's directory (postmaster.pid: the server's process id)

    def pid(self) -> int:
        from pathlib import Path

        return int(Path(self.data, "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        import subprocess

        subprocess.run([*self.ctl, "-m", "immediate", "-w", "stop"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")  # fmt: skip

    def start(self) -> None:
        import subprocess

        subprocess.run([*self.ctl, "-o", self.opts, "-w", "-t", "60", "start"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")  # fmt: skip


@contextmanager
def postgres_server(durable: bool = False) -> Iterator[PgServer]:
    """A throwaway PostgreSQL server (``initdb`` + ``pg_ctl``) in a temp dir on a free loopback
    port, trust auth; fsync off unless ``durable`` (benchmarks: fsync on, commits not waited for,
    like SQLite's WAL with synchronous=NORMAL).  PostgreSQL refuses to run as root, so as root
    the server runs as the ``postgres`` user (created by the Debian package) through
    ``runuser``.  Skips only when the server binaries are missing."""
    import os
    import shutil
    import subprocess
    import tempfile

    import pytest

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries not installed (scripts/setup installs postgresql)")
    prefix: list[str] = []
    data = tempfile.mkdtemp(prefix="genaiops-pg-")
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing")
        os.chown(data, user.pw_uid, user.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    port = free_port()
    opts = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data} "
        "-c synchronous_commit=off -c max_connections=300"
    )
    if not durable:
        opts += " -c fsync=off -c full_page_writes=off"
    server = PgServer(
        f"postgresql://postgres@127.0.0.1:{port}/postgres",
        [*prefix, pg_ctl, "-D", f"{data}/db", "-l", f"{data}/log"],
        opts,
        f"{data}/db",
    )
    try:
        subprocess.run(
            [*prefix, initdb, "-D", f"{data}/db", "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync", "--locale=C"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, cwd=data,
        )  # fmt: skip
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def burst(
    urls: list[str], key: str, n: int, *, timeout: float = 60.0, max_connections: int = 200
) -> list[httpx.Response]:
    """``n`` concurrent one-line chat requests (``gpt-test``, ``max_tokens`` 30) spread round
    robin over the gateways at ``urls``: the replica tests' shared load."""

    async def go() -> list[httpx.Response]:
        clients = [
            httpx.AsyncClient(
                base_url=u,
                timeout=timeout,
                limits=httpx.Limits(max_connections=max_connections),
                headers={"authorization": f"Bearer {key}"},
            )
            for u in urls
        ]
        try:
            body = {
                "model": "gpt-test",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 30,
            }
            return await asyncio.gather(
                *(clients[i % len(urls)].post("/v1/chat/completions", json=body) for i in range(n))
            )
        finally:
            for c in clients:
                await c.aclose()

    return asyncio.run(go())
