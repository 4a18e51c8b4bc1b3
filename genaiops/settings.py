"""Runtime settings, read from the environment (``GENAIOPS_*``) once per process.

``GENAIOPS_HOME`` holds all state (indexes, caches, ledgers, runs); default ``./.genaiops``.
Secrets are plain environment variables read here and nowhere else; YAML specs refer to
secrets only by the *name* of an environment variable (see :class:`SecretRef`).

    >>> from genaiops.settings import get_settings
    >>> get_settings().home                                  # doctest: +SKIP
    PosixPath('.genaiops')
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from genaiops.errors import ConfigError

__all__ = ["SecretRef", "Settings", "get_settings", "override_settings", "reset_settings"]


class Settings(BaseSettings):
    """Process-wide settings. Every field maps to ``GENAIOPS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="GENAIOPS_", extra="ignore")

    home: Path = Field(default=Path(".genaiops"), description="Root of all genaiops state.")
    gateway_url: str | None = Field(default=None, description="Base URL of the gateway (…/v1).")
    api_key: SecretStr | None = Field(default=None, description="Key used to call the gateway.")
    admin_key: SecretStr | None = Field(default=None, description="Gateway admin key.")
    model_cache: Path | None = Field(
        default=None, description="Dequantized model weights (default: <home>/cache/models)."
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads for local models (default: torch's)."
    )
    device: str = Field(default="cpu", description="torch device for local models (cpu, cuda).")
    generator_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Local generator dtype; auto: bfloat16 on a GPU or a CPU with bf16 "
        "instructions, else float32.",
    )
    log_level: str = "WARNING"

    def path(self, *parts: str) -> Path:
        """A path under ``home``, created on demand for its parent."""
        p = self.home.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def index_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache or (self.cache_dir / "models")


_OVERRIDES: list[Settings] = []


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The process's settings: the innermost :func:`override_settings`, else the environment."""
    return _OVERRIDES[-1] if _OVERRIDES else _from_environment()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment)."""
    _from_environment.cache_clear()


@contextmanager
def override_settings(**changes: Any) -> Iterator[Settings]:
    """Use these settings process-wide (every thread) inside the block, without touching
    ``os.environ`` — e.g. pointing flows and judges at a gateway started for one run.

    >>> with override_settings(gateway_url="http://127.0.0.1:9/v1") as s:
    ...     get_settings().gateway_url
    'http://127.0.0.1:9/v1'
    """
    s = get_settings().model_copy(update=changes)
    _OVERRIDES.append(s)
    try:
        yield s
    finally:
        _OVERRIDES.remove(s)


class SecretRef(BaseModel):
    """A secret named by its environment variable, never by value.

    In YAML: ``api_key_env: OPENAI_API_KEY``. ``resolve()`` reads it at use time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str

    def resolve(self, required: bool = True) -> str | None:
        value = os.environ.get(self.env)
        if not value and required:
            raise ConfigError(f"environment variable {self.env} is not set (needed as a secret)")
        return value
