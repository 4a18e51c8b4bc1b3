"""Index specs: what to index and how, as YAML validated with ``extra="forbid"``.

    name: sample
    env: [GENAIOPS_SAMPLE_CORPUS]          # the only variables the paths below may read
    sources:
      - path: ${GENAIOPS_SAMPLE_CORPUS:-../../datasets/sample/corpus}
        glob: "**/*"
    max_file_size: 100 MiB                 # larger source files are quarantined
    chunker: {size: 256, overlap: 32}
    embedder: {provider: local}
    store: {kind: faiss, dense: flat}

Relative source paths resolve against the spec file's folder.  ``${VAR}`` and ``${VAR:-default}``
in a source path expand from the environment, so specs for data outside the repo take the path
from an env var -- but only variables the spec lists under ``env:``, and only names that say they
hold a location (``*_DIR``, ``*_PATH``, ``*_ROOT``, ``*_CORPUS``).  A spec handed to someone else
can therefore not pull their ``GENAIOPS_ADMIN_KEY`` into a path, and errors about an interpolated
path show the spec's text and the variable's *name*, never its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from genaiops.errors import SpecError
from genaiops.providers.embeddings import EmbedderConfig
from genaiops.specs import format_validation_error, load_yaml_model

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "ChunkerSpec",
    "IndexSpec",
    "JsonlFields",
    "SourceSpec",
    "StoreSpec",
    "adhoc_spec",
    "is_name",
    "load_index_spec",
    "shown",
]

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Index and alias names: also folder and file names, so no '/', no leading '.', no controls."""
ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*_(?:DIR|PATH|ROOT|CORPUS)")
"""Environment variables a spec may list under ``env:``: names of data locations only."""
DEFAULT_MAX_FILE_SIZE = ByteSize(100 * 2**20)


def is_name(value: str) -> bool:
    """Whether ``value`` is a valid index or alias name (whole-string match: no trailing '\\n')."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def shown(value: object, limit: int = 70) -> str:
    """``repr`` of a user-given value for a one-line error: control characters escaped, cut."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


Format = Literal["auto", "markdown", "text", "html", "pdf", "jsonl"]


class JsonlFields(BaseModel):
    """Which keys of a JSONL record hold the id, title, text and url (corpora disagree)."""

    model_config = ConfigDict(extra="forbid")

    id: str = "id"
    title: str | None = "title"
    text: str = "text"
    url: str | None = "url"


class SourceSpec(BaseModel):
    """One file or folder to index, and how its files are read."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="A file or folder; relative to the spec file.")
    glob: str = "**/*"
    exclude: list[str] = Field(default_factory=list)
    format: Format = "auto"
    jsonl: JsonlFields = Field(default_factory=JsonlFields)


class ChunkerSpec(BaseModel):
    """Chunk size and overlap in project tokens (they decide the chunks, so the version id)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=256, ge=16, le=8192, description="Chunk size in tokens.")
    overlap: int = Field(default=32, ge=0, description="Overlap in tokens.")
    header_aware: bool = True

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkerSpec:
        if self.overlap >= self.size:
            raise ValueError("overlap must be smaller than size")
        return self


# -- Azure AI Search store (kind: azure_search) ------------------------------------------------
AZURE_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){0,38}[a-z0-9]?")
"""An Azure AI Search name part: lower-case letters, digits, single dashes (service rule)."""


class AzureSearchParams(BaseModel):
    """Where the Azure AI Search service is and how the genaiops version indexes look there.

    Secrets are named, never written: ``endpoint_env`` and ``api_key_env`` are environment
    variable *names*; ``api_key_env: null`` signs in with Entra ID (``DefaultAzureCredential``).
    """

    model_config = ConfigDict(extra="forbid")

    endpoint_env: str = Field(default="AZURE_SEARCH_ENDPOINT", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_key_env: str | None = Field(
        default="AZURE_SEARCH_API_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="null: Entra ID via azure-identity's DefaultAzureCredential.",
    )
    index_prefix: str = Field(default="genaiops", description="Service-side index/alias prefix.")
    api_version: str | None = Field(default=None, description="REST api-version; SDK default.")
    hnsw_m: int = Field(default=4, ge=4, le=10)
    hnsw_ef_construction: int = Field(default=400, ge=100, le=1000)
    hnsw_ef_search: int = Field(default=500, ge=100, le=1000)
    semantic_ranker: bool = Field(default=False, description="Rerank text/hybrid queries.")
    upload_batch: int = Field(default=500, ge=1, le=1000, description="Documents per request.")
    upload_concurrency: int = Field(default=4, ge=1, le=32)
    max_retries: int = Field(default=6, ge=0, le=20, description="Per request and per document.")

    @field_validator("index_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not AZURE_NAME_RE.fullmatch(v):
            raise ValueError("index_prefix: 1-40 lower-case letters, digits and single dashes")
        return v


class StoreSpec(BaseModel):
    """Search-structure parameters, stored in the manifest so a reader opens what was built."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["faiss", "azure_search"] = "faiss"
    dense: Literal["flat", "hnsw"] = "flat"
    hnsw_m: int = Field(default=32, ge=4, le=256)
    hnsw_ef_construction: int = Field(default=80, ge=8)
    hnsw_ef_search: int = Field(default=64, ge=8)
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    stemming: bool = True
    rrf_k: int = Field(default=60, ge=1)
    hybrid_depth: int = Field(default=100, ge=1, description="Candidates per side fused by RRF.")
    azure: AzureSearchParams | None = Field(default=None, description="kind: azure_search only.")

    @model_validator(mode="after")
    def _azure_block(self) -> StoreSpec:
        if self.kind == "azure_search":
            if self.azure is None:
                self.azure = AzureSearchParams()
            if self.rrf_k != 60:
                raise ValueError("azure_search fuses with the service's own RRF (k=60): rrf_k: 60")
        elif self.azure is not None:
            raise ValueError("azure: settings need kind: azure_search")
        return self

    @model_serializer(mode="wrap")
    def _drop_unused_azure(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, object]:
        # a faiss spec dumps as before the azure block existed: same fingerprint, same version id
        data: dict[str, object] = handler(self)
        if self.azure is None:
            data.pop("azure", None)
        return data


class IndexSpec(BaseModel):
    """A whole index spec: what to read, how to chunk, embed and store it.

    ``fingerprint()`` is the part that decides the built content (and so the version id).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    description: str = ""
    env: list[str] = Field(
        default_factory=list,
        description="Environment variables source paths may read (names ending _DIR, _PATH,"
        " _ROOT or _CORPUS).",
    )
    sources: list[SourceSpec] = Field(min_length=1)
    max_file_size: ByteSize = Field(
        default=DEFAULT_MAX_FILE_SIZE,
        gt=0,
        description="Source files larger than this are quarantined ('100 MiB', '2 GB', bytes).",
    )
    chunker: ChunkerSpec = Field(default_factory=ChunkerSpec)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    store: StoreSpec = Field(default_factory=StoreSpec)
    engine: Literal["local", "ray"] = Field(
        default="local",
        description="Who runs parse/chunk/embed: this process, or Ray (the [ray] extra; a"
        " cluster when RAY_ADDRESS is set). Same version id and content either way.",
    )
    base_dir: str = Field(default=".", description="Set by the loader: the spec file's folder.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not is_name(v):
            raise ValueError(
                "name must be 1-64 of letters, digits, '_', '.', '-' (starting with a letter"
                " or digit)"
            )
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not ENV_NAME_RE.fullmatch(n)]
        if bad:
            raise ValueError(
                f"{shown(bad[0])} cannot be read: only variables that name a data location"
                " (upper case, ending _DIR, _PATH, _ROOT or _CORPUS) may be listed"
            )
        return names

    def source_root(self, source: SourceSpec) -> Path:
        """The absolute file or folder ``source`` names (after ``${VAR}`` expansion)."""
        p = Path(expand_env(source.path, self.env)[0]).expanduser()
        return (p if p.is_absolute() else (Path(self.base_dir) / p)).resolve()

    def fingerprint(self) -> dict[str, object]:
        """What decides the built content (folders excluded: moving the corpus changes nothing;
        ``env`` and ``max_file_size`` only choose files, which the file hashes already record;
        ``engine`` only says who computes the same content)."""
        data = self.model_dump(
            exclude={"base_dir", "description", "env", "max_file_size", "engine"}
        )
        for s in data["sources"]:
            s.pop("path")
        # the backend is in the embedder's model id (which the version id hashes); leaving it
        # out here keeps every version id built before backends existed unchanged
        data["embedder"].pop("backend", None)
        return data


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str, allowed: Collection[str]) -> tuple[str, list[str]]:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` expanded, and the names read from the
    environment.  Only names in ``allowed`` are looked up; the error for any other names the
    variable (never a value), so a hostile spec cannot print a secret."""
    used: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name not in allowed:
            raise SpecError(
                "<spec>",
                [("", f"${{{name}}} is not listed under env: (a spec reads only what it lists)")],
            )
        v = os.environ.get(name)
        if v:
            used.append(name)
            return v
        if default is not None:
            return default
        raise SpecError("<spec>", [("", f"environment variable {name} is not set")])

    return _ENV_RE.sub(sub, value), used


def _check_root(spec: IndexSpec, i: int, where: str) -> None:
    """One source's root exists and is a regular file or a folder; errors show no env values."""
    source = spec.sources[i]
    key = f"sources.{i}.path"
    try:
        _, used = expand_env(source.path, spec.env)
        root = spec.source_root(source)
    except SpecError as e:
        raise SpecError(where, [(key, e.problems[0][1])]) from e
    shown_path = (
        f"{source.path!r} (with {', '.join(used)} from the environment)" if used else str(root)
    )
    if not root.exists():
        raise SpecError(where, [(key, f"{shown_path} does not exist")])
    if not (root.is_dir() or root.is_file()):
        raise SpecError(where, [(key, f"{shown_path} is not a regular file or a folder")])


def load_index_spec(path: str | Path) -> IndexSpec:
    """Read and validate an index spec file; its relative paths resolve against its folder."""
    spec = load_yaml_model(path, IndexSpec)
    spec.base_dir = str(Path(path).resolve().parent)
    for i in range(len(spec.sources)):
        _check_root(spec, i, str(path))
    return spec


def adhoc_spec(
    paths: list[str], name: str = "default", max_file_size: int | str | None = None
) -> IndexSpec:
    """The spec behind ``genaiops index build --source PATH``: defaults for everything else."""
    raw: dict[str, object] = {
        "name": name,
        "sources": [{"path": str(Path(p).resolve())} for p in paths],
    }
    if max_file_size is not None:
        raw["max_file_size"] = max_file_size
    try:
        spec = IndexSpec.model_validate(raw)
    except ValidationError as e:
        option = {"name": "--index", "max_file_size": "--max-file-size"}
        problems = [
            (option.get(k.split(".")[0], "--source"), m) for k, m in format_validation_error(e)
        ]
        raise SpecError("command line", problems) from e
    for i in range(len(spec.sources)):
        _check_root(spec, i, "--source")
    return spec
