"""The files an index keeps on disk, as pydantic models with one writer and one reader.

    versions/<version_id>/manifest.json   :class:`IndexManifest`
    aliases/<alias>.json                  :class:`AliasRecord`
    versions/.tmp-*/owner.json            :class:`StagingOwner`

Every file carries ``schema_version`` (:data:`SCHEMA_VERSION`).  Files written before the field
existed have the shape of version 1 and load as version 1; a file from a newer genaiops, or one
whose keys do not match (``extra="forbid"``), is refused with one line naming the file and key.
Readers therefore never index dicts by string keys, and a change of shape bumps the version.

    >>> write_record(path, AliasRecord(version="v-0123456789abcdef"))   # doctest: +SKIP
    >>> read_record(path, AliasRecord).version                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from genaiops.errors import IndexingError
from genaiops.specs import format_validation_error
from indexing.spec import IndexSpec

__all__ = [
    "SCHEMA_VERSION",
    "VERSION_RE",
    "AliasRecord",
    "DocumentEntry",
    "IndexManifest",
    "ManifestCounts",
    "QuarantineEntry",
    "StagingOwner",
    "VersionId",
    "read_record",
    "write_record",
]

SCHEMA_VERSION = 1
VERSION_RE = re.compile(r"v-[0-9a-f]{16}")
"""A version id: ``v-`` and 16 hex digits of the content hash (never a path)."""
VersionId = Annotated[str, StringConstraints(pattern=r"^v-[0-9a-f]{16}$")]

R = TypeVar("R", bound="_Record")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Record(_Strict):
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)


class ManifestCounts(_Strict):
    """How many of each thing a version holds (``over_window``: chunks embedded truncated)."""

    documents: int
    chunks: int
    embedded: int
    reused: int
    quarantined: int
    files: int
    over_window: int = 0


class DocumentEntry(_Strict):
    """One indexed document: content hash (for diffs), where it came from, how it was decoded."""

    hash: str
    source: str
    chunks: int
    encoding: str | None = Field(
        default=None, description="Text encoding detected (None: PDF, or written before 0.1)."
    )


class QuarantineEntry(_Strict):
    """A file or record the build skipped, and why (the build goes on without it)."""

    path: str
    reason: str


class IndexManifest(_Record):
    """What one published version is: its spec, model, counts, sources and quarantine.

    Written once into the staging folder before publish; never changed afterwards.
    """

    version_id: VersionId
    index: str
    created_at: float
    status: Literal["completed", "completed_with_quarantine"]
    spec: IndexSpec
    model_id: str
    dim: int | None
    backend: str
    counts: ManifestCounts
    sources: dict[str, str] = Field(description="'<source index>:<relative path>' -> sha256.")
    documents: dict[str, DocumentEntry]
    quarantine: list[QuarantineEntry]
    timings: dict[str, float]
    git_commit: str | None


class AliasRecord(_Record):
    """Where an alias points now, and the versions it pointed at before (for rollback)."""

    version: VersionId
    history: list[VersionId] = Field(default_factory=list)
    updated_at: float | None = None


class StagingOwner(_Record):
    """The build that owns a staging folder, so a later build can tell a killed one's debris."""

    pid: int
    started: float


def write_record(path: Path, record: _Record) -> None:
    """Write ``record`` as JSON atomically: temp file, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(record.model_dump_json(indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_record(path: Path, model: type[R]) -> R:
    """Read one record; ``FileNotFoundError`` passes through, anything else wrong is one
    :class:`IndexingError` naming the file and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise IndexingError(f"{path}: unreadable: {e}") from e
    try:
        return model.model_validate_json(text)
    except ValidationError as e:
        problems = format_validation_error(e)
        if any(key == "schema_version" for key, _ in problems):
            raise IndexingError(
                f"{path}: written with a schema this genaiops does not read (it reads"
                f" schema_version 1 to {SCHEMA_VERSION}); upgrade genaiops or rebuild"
            ) from e
        detail = "; ".join(f"{k}: {m}" if k else m for k, m in problems[:5])
        raise IndexingError(f"{path}: not a valid {model.__name__}: {detail}") from e
