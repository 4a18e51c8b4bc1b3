"""The one seam to Ray: which cluster, how many workers, and what the workers must know.

``connect()`` joins the cluster named by ``RAY_ADDRESS`` (``ray://head:10001`` or
``head:6379``; inside a RayJob KubeRay sets it) or, without it, starts a local Ray in this
process.  Ray is an optional extra (``pip install 'genaiops[ray]'``): without it the Ray engines
fail with one line saying so, and nothing else imports Ray.

Workers see the driver's settings: :func:`worker_env` is the ``GENAIOPS_*`` and offline-model
variables of this process, given to every Ray task and actor as ``runtime_env`` so a worker reads
the same ``GENAIOPS_HOME``, gateway URL and model cache as the command that started it.

    >>> ray = connect()                                                   # doctest: +SKIP
    >>> RaySettings().actor_cpus                                          # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from genaiops.errors import ConfigError, GenAIOpsError

__all__ = [
    "RaySettings",
    "cluster_cpus",
    "connect",
    "ray_module",
    "runtime_env",
    "worker_cause",
    "worker_env",
    "worker_errors",
]

WORKER_ENV_PREFIXES = ("GENAIOPS_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "TIKTOKEN_")
"""Variables a worker must share with the driver (settings, offline model caches)."""


class RaySettings(BaseSettings):
    """How the Ray engines size their work (``GENAIOPS_RAY_*`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="GENAIOPS_RAY_", extra="ignore")

    num_cpus: int | None = Field(
        default=None, ge=1, description="Local Ray only: CPUs it may use (default: all)."
    )
    actors: int | None = Field(
        default=None,
        ge=1,
        description="Embedding actors, each holding one model (default: cluster CPUs /"
        " actor_cpus).",
    )
    actor_cpus: float = Field(default=1.0, gt=0, description="CPUs per embedding actor.")
    actor_gpus: float = Field(default=0.0, ge=0, description="GPUs per embedding actor.")
    line_cpus: float = Field(
        default=0.5, gt=0, description="CPUs per evaluation line task (mostly waiting on HTTP)."
    )


def ray_module() -> ModuleType:
    """``ray``, or a :class:`ConfigError` naming the extra to install."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            "the ray engine needs Ray: pip install 'genaiops[ray]' (scripts/setup installs it)"
        ) from e
    return ray


def worker_env() -> dict[str, str]:
    """The driver's variables every worker gets (see the module docstring)."""
    return {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}


def runtime_env() -> dict[str, Any]:
    """``runtime_env`` for tasks and actors: the driver's :func:`worker_env`."""
    return {"env_vars": worker_env()}


def connect() -> ModuleType:
    """Join ``RAY_ADDRESS``'s cluster or start a local Ray (once per process); returns ``ray``.

    A cluster that cannot be reached is a :class:`ConfigError` naming the address.
    """
    ray = ray_module()
    if ray.is_initialized():
        _quiet_ray_data()
        return ray
    address = os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(
                num_cpus=RaySettings().num_cpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
        raise ConfigError(f"cannot start or join {where}: {e}") from e
    _quiet_ray_data()
    return ray


def _quiet_ray_data() -> None:
    """The CLI draws its own progress bars; Ray Data's would interleave with them."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def cluster_cpus() -> int:
    """CPUs the connected cluster has (at least 1)."""
    ray = ray_module()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@contextlib.contextmanager
def worker_errors(what: str, error: type[GenAIOpsError]) -> Iterator[None]:
    """A failure inside a Ray worker becomes one ``error`` line naming ``what`` failed and the
    worker's own exception (its first line), instead of Ray's multi-screen traceback."""
    ray = ray_module()
    try:
        yield
    except ray.exceptions.RayError as e:
        raise error(f"{what} failed in a Ray worker: {worker_cause(e)[:500]}") from e


_RAISED_RE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.+)$", re.M)


def worker_cause(e: BaseException) -> str:
    """``Type: message`` of the exception the worker's own code raised, under Ray's wrappers.

    Ray hands the driver wrappers whose text holds the worker's traceback; the first
    ``Type: message`` line in it that is not Ray's own is where the work failed.
    """
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and all(cur is not c for c in chain):
        chain.append(cur)
        cur = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
    for exc in chain:
        for name, message in _RAISED_RE.findall(str(exc)):
            if not name.startswith("ray."):
                return f"{name.rsplit('.', 1)[-1]}: {message.strip()}"
    last = chain[-1]
    lines = [ln.strip() for ln in str(last).splitlines() if ln.strip()]
    return f"{type(last).__name__}: {lines[0]}" if lines else type(last).__name__
