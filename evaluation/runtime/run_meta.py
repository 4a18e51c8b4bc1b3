"""``run.json``: what a run asked for and how far it got — one model, one writer, one reader.

Both runners (the genaiops runner and ``pf``) write it through :func:`write_run_meta`; resume,
``load_run`` and reports read it through :func:`read_run_meta`. Files written before
``schema_version`` existed have the same fields and load as version 1; a file from a newer
genaiops, or one that is not a run file, fails with the file and the key named.

    >>> meta = RunMeta(run_id="r1", request=RunRequest(flow="flows/rag", data="qa.jsonl"),
    ...                flow_path="flows/rag", status="running")
    >>> meta.schema_version, meta.runner
    (1, 'genaiops')
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluation.errors import EvaluationError, RunNotFound

__all__ = [
    "RUN_SCHEMA_VERSION",
    "RunMeta",
    "RunRequest",
    "VariantMeta",
    "read_run_meta",
    "write_run_meta",
]

RUN_SCHEMA_VERSION = 1


# Lines in flight at once.  8 keeps the local model's continuous batch (gateway
# ``local_batch_size``, default 8) full: measured in bench/eval_faq.py (docs/benchmarks.md).
DEFAULT_CONCURRENCY = 8


@dataclass
class RunRequest:
    """What to run. ``column_mapping`` maps flow inputs to ``${data.col}`` or literals;
    ``engine`` runs the lines in threads here (``local``) or as Ray tasks (``ray``)."""

    flow: str
    data: str
    variants: str = "default"
    column_mapping: dict[str, Any] = field(default_factory=dict)
    index_alias: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    limit: int | None = None
    name: str | None = None
    engine: Literal["local", "ray"] = "local"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VariantMeta(BaseModel):
    """One variant set of the run: its folder label, the choice per node, the prompt hash."""

    model_config = ConfigDict(extra="forbid")

    label: str
    choice: dict[str, str]
    prompt_hash: str


class RunMeta(BaseModel):
    """The contents of ``run.json``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = RUN_SCHEMA_VERSION
    run_id: str
    runner: Literal["genaiops", "pf"] = "genaiops"
    request: RunRequest
    flow_path: str
    column_mapping: dict[str, Any] = Field(default_factory=dict)
    variants: list[VariantMeta] = Field(default_factory=list)
    created: float = Field(default_factory=time.time)
    status: Literal["running", "interrupted", "completed"]


def write_run_meta(folder: Path, meta: RunMeta) -> None:
    """Write ``folder/run.json`` atomically (a crash leaves the old file or the new one)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "run.json.tmp"
    tmp.write_text(meta.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, folder / "run.json")


def read_run_meta(folder: Path) -> RunMeta:
    """Read ``folder/run.json``: RunNotFound without one, EvaluationError naming the file and
    the key when it is not a run file this genaiops can read."""
    file = folder / "run.json"
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RunNotFound(f"no run {folder.name!r} under {folder.parent}") from e
    except (OSError, ValueError) as e:
        raise EvaluationError(f"{file}: not readable as JSON: {e}") from e
    if not isinstance(raw, dict):
        raise EvaluationError(f"{file}: expected a JSON object")
    version = raw.setdefault("schema_version", 1)  # files before versioning are version 1
    if not isinstance(version, int) or version > RUN_SCHEMA_VERSION:
        raise EvaluationError(
            f"{file}: schema_version {version!r} is newer than this genaiops reads "
            f"({RUN_SCHEMA_VERSION}); upgrade genaiops to open this run"
        )
    try:
        return RunMeta.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise EvaluationError(f"{file}: not a genaiops run.json: {problems}") from e
