"""Published (promoted) models: where a consumer finds the champion version of a trained model.

``train promote`` copies the champion version into ``$GENAIOPS_HOME/serving/<model>/v<N>/`` and
points ``champion.json`` at it (atomically); consumers — the gateway's classifier detector, the
local embedder for a registered embedder — read only this pointer, never MLflow or ``training``.

    >>> read_pointer("prompt-attack")                      # doctest: +SKIP
    ServingPointer(model='prompt-attack', version='2', path='...', ...)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genaiops.settings import get_settings

__all__ = ["ServingPointer", "publish", "read_pointer", "serving_dir", "write_pointer"]


class ServingPointer(BaseModel):
    """``champion.json``: which published version is live, and the champions before it."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    model: str
    kind: str = "prompt_attack"
    version: str
    path: str
    promoted_at: datetime
    history: list[str] = Field(default_factory=list)


def serving_dir(model: str) -> Path:
    return get_settings().home / "serving" / model


def read_pointer(model: str) -> ServingPointer | None:
    p = serving_dir(model) / "champion.json"
    if not p.is_file():
        return None
    return ServingPointer.model_validate_json(p.read_text(encoding="utf-8"))


def write_pointer(pointer: ServingPointer) -> None:
    """Replace ``champion.json`` in one rename: a reader never sees half a pointer."""
    base = serving_dir(pointer.model)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / "champion.json.tmp"
    tmp.write_text(pointer.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(base / "champion.json")


def publish(
    model: str,
    kind: str,
    version: str,
    src: Path,
    history: list[str],
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Copy ``src`` to ``serving/<model>/v<version>``, run ``check`` on the copy, then point
    ``champion.json`` at it (a failed check leaves the live pointer untouched)."""
    dest = serving_dir(model) / f"v{version}"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    if check is not None:
        check(dest)
    write_pointer(
        ServingPointer(
            model=model,
            kind=kind,
            version=version,
            path=str(dest.resolve()),
            promoted_at=datetime.now(UTC),
            history=history,
        )
    )
    return dest
