"""Azure AI Search backend: one service-side search index per genaiops version.

The version folder holds only a pointer file, ``azure_search.json`` (the service index name, the
row count, the store parameters); the documents live in the service:

    id (key, = row)   row (Int32, filterable)   text (searchable; en.lucene when stemming)
    doc_id, source, title, url (filterable metadata, from the staging folder's chunks.sqlite)
    vector (Collection(Edm.Single), HNSW profile, cosine)

Queries use the service's own machinery: ``lexical`` is a simple-syntax text query (BM25 with the
spec's k1/b), ``dense`` a vector query (``exhaustive`` for ``dense: flat``, HNSW for ``hnsw``),
``hybrid`` both in one request fused by the service's RRF; ``semantic_ranker: true`` reranks text
and hybrid queries.  Promotion points a service **index alias** (``<prefix>-<index>-<alias>``) at
the version's index; an aliased index is never deleted, and ``gc`` deletes only unaliased ones.

Requests that fail with 429/503 are retried by azure-core's ``RetryPolicy`` (which waits for the
``Retry-After`` header when the service sends one); documents that a batch reports as throttled
or unavailable are re-sent on their own with exponential backoff.

``CLIENT_OPTIONS`` holds extra keyword arguments for every SDK client (tests pass an
``HttpTransport`` double there: the seam is the HTTP transport, nothing above it is faked).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from genaiops.errors import AliasError, ConfigError, IndexingError
from indexing.spec import AzureSearchParams, StoreSpec
from indexing.store.base import Mode

__all__ = [
    "CLIENT_OPTIONS",
    "POINTER",
    "AzureSearchBackend",
    "AzureSearchIndex",
    "service_alias_name",
]

POINTER = "azure_search.json"
CLIENT_OPTIONS: dict[str, Any] = {}
"""Extra keyword arguments for every SearchClient / SearchIndexClient (e.g. ``transport=``)."""

PROFILE = "genaiops-vector"
ALGORITHM = "genaiops-hnsw"
SEMANTIC_CONFIG = "genaiops-semantic"
METADATA = ("doc_id", "source", "title", "url")
RETRYABLE_DOC_STATUS = {409, 422, 429, 503}  # per-document results the service says to retry
_SIMPLE_SPECIAL = re.compile(r'([+\-&|!(){}\[\]^"~*?:\\/])')


def _azure_part(value: str) -> str:
    """``value`` as a service name part (lower case, digits, single dashes), kept unambiguous:
    a hash suffix marks any value that had to change ("My_Index" and "my.index" stay apart)."""
    part = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]", "-", value.lower())).strip("-")
    if part != value:
        part = f"{part}-{hashlib.sha256(value.encode()).hexdigest()[:6]}".strip("-")
    return part


def service_alias_name(cfg: AzureSearchParams, index: str, alias: str) -> str:
    """The service-side alias that mirrors genaiops alias ``alias`` of index ``index``."""
    return f"{cfg.index_prefix}-{_azure_part(index)}-{_azure_part(alias)}"[:128]


def _cfg(params: StoreSpec) -> AzureSearchParams:
    return params.azure or AzureSearchParams()


def _env(name: str, key: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} (store.azure.{key}) is not set")
    return value


def _client_kwargs(cfg: AzureSearchParams) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "retry_total": cfg.max_retries,
        "retry_backoff_factor": 0.8,
        "retry_backoff_max": 60,
    }
    if cfg.api_version:
        kwargs["api_version"] = cfg.api_version
    kwargs.update(CLIENT_OPTIONS)
    return kwargs


def _credential(cfg: AzureSearchParams) -> Any:
    if cfg.api_key_env is None:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as e:  # pragma: no cover (azure-identity is a dependency)
            raise ConfigError("api_key_env: null (Entra ID) needs azure-identity") from e
        return DefaultAzureCredential()
    from azure.core.credentials import AzureKeyCredential

    return AzureKeyCredential(_env(cfg.api_key_env, "api_key_env"))


def _index_client(cfg: AzureSearchParams) -> Any:
    from azure.search.documents.indexes import SearchIndexClient

    endpoint = _env(cfg.endpoint_env, "endpoint_env")
    return SearchIndexClient(endpoint, _credential(cfg), **_client_kwargs(cfg))


def _search_client(cfg: AzureSearchParams, index_name: str) -> Any:
    from azure.search.documents import SearchClient

    endpoint = _env(cfg.endpoint_env, "endpoint_env")
    return SearchClient(endpoint, index_name, _credential(cfg), **_client_kwargs(cfg))


def _sleeper() -> Callable[[float], None]:
    transport = CLIENT_OPTIONS.get("transport")
    return getattr(transport, "sleep", None) or time.sleep


@contextlib.contextmanager
def _service_errors(what: str) -> Any:
    """SDK errors become one-line IndexingErrors (status + the service's message, no key)."""
    from azure.core.exceptions import AzureError, HttpResponseError

    try:
        yield
    except HttpResponseError as e:
        msg = (getattr(e, "message", None) or str(e)).splitlines()[0]
        raise IndexingError(f"Azure AI Search: {what} failed ({e.status_code}): {msg}") from e
    except AzureError as e:
        raise IndexingError(f"Azure AI Search: {what} failed: {e}") from e


def _read_pointer(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / POINTER).read_text(encoding="utf-8")))
    except FileNotFoundError as e:
        raise IndexingError(f"{folder}: no {POINTER} (not an azure_search version)") from e


def _write_pointer(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / f".{POINTER}.tmp"
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, folder / POINTER)


def _metadata(folder: Path, n: int) -> list[dict[str, str]]:
    """Per-row metadata from the staging folder's chunks.sqlite (empty strings without one)."""
    db_path = folder / "chunks.sqlite"
    rows: list[dict[str, str]] = [dict.fromkeys(METADATA, "") for _ in range(n)]
    if not db_path.is_file():
        return rows
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        for row, *values in db.execute("SELECT row, doc_id, source, title, url FROM chunks"):
            if 0 <= int(row) < n:
                rows[int(row)] = {k: str(v or "") for k, v in zip(METADATA, values, strict=True)}
    finally:
        db.close()
    return rows


def _content_name(
    folder: Path,
    texts: Sequence[str],
    vectors: np.ndarray,
    meta: list[dict[str, str]],
    params: StoreSpec,
) -> str:
    """A deterministic service index name: prefix, genaiops index name, content hash.

    Re-running a crashed build reaches the same index (uploads are upserts), and two genaiops
    indexes never share a service index."""
    h = hashlib.sha256(params.model_dump_json().encode())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    for text, m in zip(texts, meta, strict=True):
        h.update(json.dumps([text, m], sort_keys=True).encode())
    cfg = _cfg(params)
    parts = [cfg.index_prefix]
    if folder.parent.name == "versions":  # <home>/indexes/<name>/versions/<staging>
        parts.append(_azure_part(folder.parent.parent.name))
    return "-".join([*parts, h.hexdigest()[:16]])[:128]


def _index_definition(name: str, dim: int, params: StoreSpec) -> Any:
    from azure.search.documents.indexes.models import (
        BM25SimilarityAlgorithm,
        HnswAlgorithmConfiguration,
        HnswParameters,
        SearchableField,
        SearchField,
        SearchFieldDataType,
        SearchIndex,
        SemanticConfiguration,
        SemanticField,
        SemanticPrioritizedFields,
        SemanticSearch,
        SimpleField,
        VectorSearch,
        VectorSearchProfile,
    )

    cfg = _cfg(params)
    fields = [
        SimpleField(name="id", type=SearchFieldDataType.STRING, key=True, filterable=True),
        SimpleField(name="row", type=SearchFieldDataType.INT32, filterable=True, sortable=True),
        SearchableField(
            name="text", analyzer_name="en.lucene" if params.stemming else "standard.lucene"
        ),
        *(SimpleField(name=k, type=SearchFieldDataType.STRING, filterable=True) for k in METADATA),
        SearchField(
            name="vector",
            type="Collection(Edm.Single)",
            searchable=True,
            retrievable=False,
            vector_search_dimensions=dim,
            vector_search_profile_name=PROFILE,
        ),
    ]
    semantic = None
    if cfg.semantic_ranker:
        semantic = SemanticSearch(
            default_configuration_name=SEMANTIC_CONFIG,
            configurations=[
                SemanticConfiguration(
                    name=SEMANTIC_CONFIG,
                    prioritized_fields=SemanticPrioritizedFields(
                        content_fields=[SemanticField(field_name="text")]
                    ),
                )
            ],
        )
    return SearchIndex(
        name=name,
        fields=fields,
        similarity=BM25SimilarityAlgorithm(k1=params.bm25_k1, b=params.bm25_b),
        vector_search=VectorSearch(
            algorithms=[
                HnswAlgorithmConfiguration(
                    name=ALGORITHM,
                    parameters=HnswParameters(
                        m=cfg.hnsw_m,
                        ef_construction=cfg.hnsw_ef_construction,
                        ef_search=cfg.hnsw_ef_search,
                        metric="cosine",
                    ),
                )
            ],
            profiles=[VectorSearchProfile(name=PROFILE, algorithm_configuration_name=ALGORITHM)],
        ),
        semantic_search=semantic,
    )


def _upload(client: Any, docs: list[dict[str, Any]], cfg: AzureSearchParams) -> None:
    """Upload one batch; re-send the documents the service reports as retryable."""
    sleep = _sleeper()
    pending = docs
    for attempt in range(cfg.max_retries + 1):
        with _service_errors("upload"):
            results = client.upload_documents(documents=pending)
        by_key = {d["id"]: d for d in pending}
        failed = [r for r in results if not r.succeeded]
        retry = [r for r in failed if r.status_code in RETRYABLE_DOC_STATUS]
        if len(retry) < len(failed):
            bad = next(r for r in failed if r.status_code not in RETRYABLE_DOC_STATUS)
            raise IndexingError(
                f"Azure AI Search rejected document {bad.key} ({bad.status_code}):"
                f" {bad.error_message}"
            )
        if not retry:
            return
        pending = [by_key[r.key] for r in retry]
        if attempt < cfg.max_retries:
            sleep(min(60.0, 0.5 * 2**attempt))
    raise IndexingError(
        f"Azure AI Search: {len(pending)} documents still throttled after"
        f" {cfg.max_retries} retries (raise the service's capacity or lower upload_concurrency)"
    )


class AzureSearchIndex:
    """One version's service index, opened for queries (rows are the documents' ``id``)."""

    def __init__(self, folder: Path, params: StoreSpec):
        self.params = params
        self.cfg = _cfg(params)
        pointer = _read_pointer(folder)
        if not pointer.get("complete"):
            raise IndexingError(f"{folder / POINTER}: the upload did not finish")
        self.index_name: str | None = pointer.get("index")
        self._n = int(pointer.get("count", 0))
        self._client = _search_client(self.cfg, self.index_name) if self.index_name else None

    @property
    def size(self) -> int:
        return self._n

    def search(
        self,
        text: str,
        vector: np.ndarray | None,
        k: int,
        mode: Mode,
        allowed: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Best ``k`` rows; dense scores are cosine similarities (as FAISS gives them), lexical
        BM25, hybrid the service's RRF (or the semantic reranker's score when enabled)."""
        from azure.search.documents.models import VectorizedQuery

        if mode != "lexical" and vector is None:
            raise ValueError(f"mode {mode!r} needs a query vector")
        if self._client is None or self._n == 0 or k <= 0 or (allowed is not None and not allowed):
            return []
        kwargs: dict[str, Any] = {"top": min(k, self._n), "select": ["id"]}
        if allowed is not None:
            ids = ",".join(str(int(r)) for r in sorted(set(allowed)))
            kwargs["filter"] = f"search.in(id, '{ids}', ',')"
        query_text: str | None = None
        if mode in ("lexical", "hybrid"):
            query_text = _SIMPLE_SPECIAL.sub(r"\\\1", text).strip()
            if not query_text and mode == "lexical":
                return []  # an empty query would match every document
            kwargs.update(search_fields=["text"], search_mode="any", query_type="simple")
            if self.cfg.semantic_ranker and query_text:
                kwargs.update(query_type="semantic", semantic_configuration_name=SEMANTIC_CONFIG)
        if mode in ("dense", "hybrid"):
            depth = k if mode == "dense" else max(k, self.params.hybrid_depth)
            kwargs["vector_queries"] = [
                VectorizedQuery(
                    vector=[float(x) for x in np.asarray(vector, dtype=np.float32).ravel()],
                    k_nearest_neighbors=min(depth, self._n),
                    fields="vector",
                    exhaustive=self.params.dense == "flat",
                )
            ]
        with _service_errors("search"):
            results = list(self._client.search(query_text or None, **kwargs))
        semantic = kwargs.get("query_type") == "semantic"
        hits: list[tuple[int, float]] = []
        for r in results:
            score = float(r["@search.score"])
            if semantic and r.get("@search.reranker_score") is not None:
                score = float(r["@search.reranker_score"])
            elif mode == "dense":
                score = 2.0 - 1.0 / score  # the service's cosine score is 1 / (1 + (1 - cos))
            hits.append((int(r["id"]), score))
        if semantic:
            hits.sort(key=lambda h: -h[1])
        return hits[:k]


class AzureSearchBackend:
    """Writes a version as one service index, opens it, mirrors aliases, deletes unaliased."""

    name = "azure_search"

    def write(
        self, folder: Path, texts: Sequence[str], vectors: np.ndarray, params: StoreSpec
    ) -> None:
        cfg = _cfg(params)
        n = len(texts)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        record: dict[str, Any] = {"params": params.model_dump(mode="json"), "count": n, "dim": dim}
        if n == 0:  # nothing to search: no service index (nothing to alias or delete either)
            _write_pointer(folder, {**record, "index": None, "complete": True})
            return
        if vectors.shape[0] != n or dim < 2:
            raise IndexingError(f"{n} texts need {n} vectors of 2 or more dimensions")
        meta = _metadata(folder, n)
        name = _content_name(folder, texts, vectors, meta, params)
        # intent first: a killed build leaves a pointer, so leftover cleanup can delete the index
        _write_pointer(folder, {**record, "index": name, "complete": False})
        with _service_errors(f"create index {name}"):
            _index_client(cfg).create_or_update_index(_index_definition(name, dim, params))
        client = _search_client(cfg, name)
        docs = [
            {"id": str(i), "row": i, "text": t, **meta[i], "vector": vectors[i].tolist()}
            for i, t in enumerate(texts)
        ]
        batches = [docs[i : i + cfg.upload_batch] for i in range(0, n, cfg.upload_batch)]
        if cfg.upload_concurrency > 1 and len(batches) > 1:
            with ThreadPoolExecutor(cfg.upload_concurrency) as pool:
                list(pool.map(lambda b: _upload(client, b, cfg), batches))
        else:
            for b in batches:
                _upload(client, b, cfg)
        _write_pointer(folder, {**record, "index": name, "complete": True})

    def open(self, folder: Path, params: StoreSpec) -> AzureSearchIndex:
        return AzureSearchIndex(folder, params)

    def promote(self, folder: Path, index: str, alias: str) -> str:
        """Create or repoint the service alias for (index, alias) at this version's index."""
        from azure.search.documents.indexes.models import SearchAlias

        pointer = _read_pointer(folder)
        cfg = _cfg(_pointer_params(pointer))
        target = pointer.get("index")
        if not target:
            raise AliasError(f"{folder.name} has no service index (empty corpus): cannot alias")
        alias_name = service_alias_name(cfg, index, alias)
        with _service_errors(f"alias {alias_name} -> {target}"):
            _index_client(cfg).create_or_update_alias(
                SearchAlias(name=alias_name, indexes=[target])
            )
        return alias_name

    def aliases_of(self, params: StoreSpec, index_name: str) -> list[str]:
        """Service aliases that map to ``index_name`` (set anywhere, not only by us)."""
        with _service_errors("list aliases"):
            return sorted(
                a.name
                for a in _index_client(_cfg(params)).list_aliases()
                if index_name in a.indexes
            )

    def delete(self, folder: Path) -> None:
        """Delete the version's service index unless an alias maps to it (then AliasError).

        Another version folder of the same genaiops index that points at the same service
        index (identical content) keeps it alive too."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            pointer = _read_pointer(folder)
        except IndexingError:
            return
        name = pointer.get("index")
        if not name:
            return
        params = _pointer_params(pointer)
        siblings = [  # other versions of the same genaiops index (catalog layout only)
            p
            for p in folder.parent.glob(f"*/{POINTER}")
            if folder.parent.name == "versions"
            and p.parent != folder
            and not p.parent.name.startswith(".del-")
        ]
        if any(json.loads(p.read_text(encoding="utf-8")).get("index") == name for p in siblings):
            return
        aliased = self.aliases_of(params, name)
        if aliased:
            raise AliasError(
                f"service index {name} is aliased by {', '.join(aliased)}: repoint or delete"
                " those aliases first"
            )
        try:
            with _service_errors(f"delete index {name}"):
                _index_client(_cfg(params)).delete_index(name)
        except IndexingError as e:
            if isinstance(e.__cause__, ResourceNotFoundError):
                return
            raise


def _pointer_params(pointer: dict[str, Any]) -> StoreSpec:
    """The store spec recorded in a pointer (endpoint and key variable names included)."""
    return StoreSpec.model_validate(pointer.get("params") or {"kind": "azure_search"})
