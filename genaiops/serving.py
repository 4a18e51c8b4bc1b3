"""Published (promoted) models: where a consumer finds the champion version of a trained model.

``train promote`` copies the champion version into ``$GENAIOPS_HOME/serving/<model>/v<N>/`` and
points ``champion.json`` at it (atomically); consumers — the gateway's classifier detector, the
local embedder for a registered embedder — read only this pointer, never MLflow or ``training``.

    >>> read_pointer("prompt-attack")                      # doctest: +SKIP
    ServingPointer(model='prompt-attack', version='2', path='...', ...)
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genaiops.settings import get_settings

__all__ = ["ServingPointer", "read_pointer", "serving_dir", "write_pointer"]


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
