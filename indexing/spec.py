"""Index specs: what to index and how, as YAML validated with ``extra="forbid"``.

    name: sample
    sources:
      - path: ${GENAIOPS_SAMPLE_DIR:-../../datasets/sample/corpus}
        glob: "**/*"
    chunker: {size: 256, overlap: 32}
    embedder: {provider: local}
    store: {kind: faiss, dense: flat}

Relative source paths resolve against the spec file's folder; ``${VAR}`` and ``${VAR:-default}``
expand from the environment, so specs for data outside the repo take the path from an env var.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from genaiops.errors import SpecError
from genaiops.providers.embeddings import EmbedderConfig
from genaiops.specs import load_yaml_model

__all__ = ["ChunkerSpec", "IndexSpec", "JsonlFields", "SourceSpec", "StoreSpec", "load_index_spec"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Format = Literal["auto", "markdown", "text", "html", "pdf", "jsonl"]


class JsonlFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = "id"
    title: str | None = "title"
    text: str = "text"
    url: str | None = "url"


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="A file or folder; relative to the spec file.")
    glob: str = "**/*"
    exclude: list[str] = Field(default_factory=list)
    format: Format = "auto"
    jsonl: JsonlFields = Field(default_factory=JsonlFields)


class ChunkerSpec(BaseModel):
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
    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    description: str = ""
    sources: list[SourceSpec] = Field(min_length=1)
    chunker: ChunkerSpec = Field(default_factory=ChunkerSpec)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    store: StoreSpec = Field(default_factory=StoreSpec)
    base_dir: str = Field(default=".", description="Set by the loader: the spec file's folder.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("name must be 1-64 of letters, digits, '_', '.', '-'")
        return v

    def source_root(self, source: SourceSpec) -> Path:
        p = Path(expand_env(source.path)).expanduser()
        return (p if p.is_absolute() else (Path(self.base_dir) / p)).resolve()

    def fingerprint(self) -> dict[str, object]:
        """What decides the built content (folders excluded: moving the corpus changes nothing)."""
        data = self.model_dump(exclude={"base_dir", "description"})
        for s in data["sources"]:
            s.pop("path")
        return data


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        v = os.environ.get(name)
        if v:
            return v
        if default is not None:
            return default
        raise SpecError("<spec>", [("sources.path", f"environment variable {name} is not set")])

    return _ENV_RE.sub(sub, value)


def load_index_spec(path: str | Path) -> IndexSpec:
    spec = load_yaml_model(path, IndexSpec)
    spec.base_dir = str(Path(path).resolve().parent)
    for i, s in enumerate(spec.sources):
        try:
            root = spec.source_root(s)
        except SpecError as e:
            raise SpecError(str(path), [(f"sources.{i}.path", e.problems[0][1])]) from e
        if not root.exists():
            raise SpecError(str(path), [(f"sources.{i}.path", f"{root} does not exist")])
    return spec


def adhoc_spec(paths: list[str], name: str = "default") -> IndexSpec:
    """The spec behind ``genaiops index build --source PATH``: defaults for everything else."""
    for p in paths:
        if not Path(p).exists():
            raise SpecError("--source", [("", f"{p} does not exist")])
    return IndexSpec(name=name, sources=[SourceSpec(path=str(Path(p).resolve())) for p in paths])
