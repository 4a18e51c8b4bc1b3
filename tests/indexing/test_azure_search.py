"""The Azure AI Search store: the shared contract, the REST it sends, retries, aliases, gc.

Everything runs the real ``azure-search-documents`` SDK against
:class:`~tests.indexing.azure_search_double.FakeSearchService`, an azure-core ``HttpTransport``
(the HTTP seam); the ``integration`` class at the end runs the contract against a real service
when ``AZURE_SEARCH_ENDPOINT`` and ``AZURE_SEARCH_API_KEY`` are set.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from genaiops.errors import AliasError, ConfigError, IndexingError, SpecError
from indexing import Catalog, IndexSpec, Retriever, build_index
from indexing.spec import StoreSpec
from indexing.store import azure_search as az
from indexing.store import get_backend
from indexing.testing import TEXTS, SearchBackendContract, _vectors
from tests.indexing.azure_search_double import API_KEY, API_VERSION, ENDPOINT, Fault
from tests.indexing.azure_search_double import FakeSearchService as Service


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Service:
    svc = Service()
    monkeypatch.setenv("AZURE_SEARCH_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("AZURE_SEARCH_API_KEY", API_KEY)
    monkeypatch.setattr(az, "CLIENT_OPTIONS", {"transport": svc})
    return svc


AZ = StoreSpec(kind="azure_search")


class TestAzureSearchExhaustive(SearchBackendContract):
    @pytest.fixture
    def backend(self, service: Service) -> az.AzureSearchBackend:
        return az.AzureSearchBackend()

    @pytest.fixture
    def params(self) -> StoreSpec:
        return AZ


class TestAzureSearchHNSW(TestAzureSearchExhaustive):
    @pytest.fixture
    def params(self) -> StoreSpec:
        return StoreSpec(kind="azure_search", dense="hnsw")


def _written(tmp_path: Path, params: StoreSpec = AZ) -> az.AzureSearchIndex:
    backend = az.AzureSearchBackend()
    backend.write(tmp_path, TEXTS, _vectors(), params)
    return backend.open(tmp_path, params)


def test_rest_requests_have_the_documented_shapes(service: Service, tmp_path: Path) -> None:
    index = _written(tmp_path)
    vecs = _vectors()
    index.search("apples", vecs[0], 3, "hybrid", allowed=[0, 3])
    assert all(r.params["api-version"] == API_VERSION for r in service.requests)
    assert all(r.headers["api-key"] == API_KEY for r in service.requests)
    create, upload, search = service.requests
    name = az._read_pointer(tmp_path)["index"]
    assert (create.method, create.path) == ("PUT", f"/indexes('{name}')")
    fields = {f["name"]: f for f in create.body["fields"]}
    assert fields["id"]["key"] and fields["id"]["type"] == "Edm.String"
    assert fields["text"]["searchable"] and fields["text"]["analyzer"] == "en.lucene"
    assert all(fields[m]["filterable"] for m in ("doc_id", "source", "title", "url"))
    vec = fields["vector"]
    assert vec["type"] == "Collection(Edm.Single)" and vec["dimensions"] == 16
    (profile,) = create.body["vectorSearch"]["profiles"]
    (algo,) = create.body["vectorSearch"]["algorithms"]
    assert vec["vectorSearchProfile"] == profile["name"] and profile["algorithm"] == algo["name"]
    assert algo["kind"] == "hnsw" and algo["hnswParameters"]["metric"] == "cosine"
    assert create.body["similarity"]["@odata.type"] == "#Microsoft.Azure.Search.BM25Similarity"

    assert (upload.method, upload.path) == ("POST", f"/indexes('{name}')/docs/search.index")
    docs = upload.body["value"]
    assert [d["@search.action"] for d in docs] == ["upload"] * len(TEXTS)
    assert docs[1]["id"] == "1" and docs[1]["text"] == TEXTS[1] and len(docs[1]["vector"]) == 16

    assert (search.method, search.path) == ("POST", f"/indexes('{name}')/docs/search.post.search")
    body = search.body
    assert body["search"] == "apples" and body["searchFields"] == "text"
    assert body["filter"] == "search.in(id, '0,3', ',')"
    (vq,) = body["vectorQueries"]
    assert vq["kind"] == "vector" and vq["fields"] == "vector" and vq["k"] == len(TEXTS)
    assert vq["exhaustive"] is True  # dense: flat = exact kNN over the HNSW field


def test_lexical_query_text_is_escaped_not_parsed(service: Service, tmp_path: Path) -> None:
    index = _written(tmp_path)
    # '-' would be NOT and '+' AND in the simple syntax: a user's words must stay words
    assert index.search("kernel -panic", None, 2, "lexical")[0][0] == 2
    assert service.requests[-1].body["search"] == r"kernel \-panic"
    assert index.search("", None, 3, "lexical") == []  # no match-all query is sent


def test_throttled_upload_honours_retry_after(service: Service, tmp_path: Path) -> None:
    service.faults.append(
        Fault("POST", r"/docs/search\.index$", 429, times=2, headers={"Retry-After": "7"})
    )
    index = _written(tmp_path)
    assert service.sleeps == [7.0, 7.0]
    uploads = [r for r in service.requests if r.path.endswith("search.index")]
    assert len(uploads) == 3 and index.size == len(TEXTS)
    assert len(next(iter(service.indexes.values())).docs) == len(TEXTS)


def test_unavailable_search_is_retried_after_the_given_wait(
    service: Service, tmp_path: Path
) -> None:
    index = _written(tmp_path)
    service.faults.append(
        Fault("POST", r"search\.post\.search$", 503, headers={"Retry-After": "3"})
    )
    assert index.search("", _vectors()[2], 1, "dense")[0][0] == 2
    assert service.sleeps == [3.0]


def test_documents_a_batch_reports_throttled_are_resent_alone(
    service: Service, tmp_path: Path
) -> None:
    service.faults.append(Fault("POST", r"/docs/search\.index$", 207, documents=2))
    _written(tmp_path)
    uploads = [r for r in service.requests if r.path.endswith("search.index")]
    assert [len(u.body["value"]) for u in uploads] == [len(TEXTS), 2]
    assert [d["id"] for d in uploads[1].body["value"]] == ["0", "1"]
    assert len(service.sleeps) == 1  # backoff between the two attempts


def test_throttling_that_never_ends_fails_the_build(service: Service, tmp_path: Path) -> None:
    params = StoreSpec(kind="azure_search", azure={"max_retries": 2})
    service.faults.append(Fault("POST", r"/docs/search\.index$", 207, times=10, documents=99))
    with pytest.raises(IndexingError, match="still throttled after 2 retries"):
        az.AzureSearchBackend().write(tmp_path, TEXTS, _vectors(), params)
    with pytest.raises(IndexingError, match="did not finish"):
        az.AzureSearchBackend().open(tmp_path, params)


def test_promote_creates_then_repoints_the_service_alias(service: Service, tmp_path: Path) -> None:
    backend = az.AzureSearchBackend()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    backend.write(a, TEXTS, _vectors(), AZ)
    backend.write(b, TEXTS[:3], _vectors()[:3], AZ)
    ia, ib = az._read_pointer(a)["index"], az._read_pointer(b)["index"]
    assert ia != ib
    alias = backend.promote(a, "My_Docs", "current")
    assert alias == service_alias() and service.aliases == {alias: [ia]}
    puts = [r for r in service.requests if r.path == f"/aliases('{alias}')"]
    assert puts[-1].method == "PUT" and puts[-1].body == {"name": alias, "indexes": [ia]}
    backend.promote(b, "My_Docs", "current")
    assert service.aliases == {alias: [ib]}


def service_alias() -> str:
    return az.service_alias_name(AZ.azure, "My_Docs", "current")  # type: ignore[arg-type]


def test_service_names_are_valid_and_distinct() -> None:
    cfg = AZ.azure
    assert cfg is not None
    names = {az.service_alias_name(cfg, i, "current") for i in ("my_docs", "my.docs", "my-docs")}
    assert len(names) == 3
    assert all(n == n.lower() and "--" not in n and "_" not in n for n in names)


def test_delete_refuses_an_aliased_index_and_the_service_refuses_too(
    service: Service, tmp_path: Path
) -> None:
    backend = az.AzureSearchBackend()
    backend.write(tmp_path, TEXTS, _vectors(), AZ)
    name = az._read_pointer(tmp_path)["index"]
    backend.promote(tmp_path, "docs", "prod")
    with pytest.raises(AliasError, match="aliased by genaiops-docs-prod"):
        backend.delete(tmp_path)
    assert name in service.indexes
    # the double answers a direct DELETE as the REST reference says: 400 while aliased
    with pytest.raises(IndexingError, match=r"\(400\)"), az._service_errors("delete"):
        az._index_client(AZ.azure).delete_index(name)  # type: ignore[arg-type]
    del service.aliases["genaiops-docs-prod"]
    backend.delete(tmp_path)
    assert name not in service.indexes
    backend.delete(tmp_path)  # already gone: nothing to do


def test_missing_endpoint_or_key_names_the_variable(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_SEARCH_API_KEY")
    params = StoreSpec(kind="azure_search", azure={"api_key_env": "MY_SEARCH_KEY"})
    with pytest.raises(ConfigError, match=r"MY_SEARCH_KEY \(store.azure.api_key_env\)"):
        az.AzureSearchBackend().write(tmp_path, TEXTS, _vectors(), params)
    monkeypatch.delenv("AZURE_SEARCH_ENDPOINT")
    with pytest.raises(ConfigError, match="AZURE_SEARCH_ENDPOINT"):
        az.AzureSearchBackend().write(tmp_path, TEXTS, _vectors(), AZ)


def test_wrong_key_is_an_error_without_the_key(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_SEARCH_API_KEY", "wrong-secret-value")
    with pytest.raises(IndexingError, match=r"\(403\)") as e:
        az.AzureSearchBackend().write(tmp_path, TEXTS, _vectors(), AZ)
    assert "wrong-secret-value" not in str(e.value)


def test_entra_id_when_no_key_variable_is_named() -> None:
    from azure.identity import DefaultAzureCredential

    cfg = StoreSpec(kind="azure_search", azure={"api_key_env": None}).azure
    assert isinstance(az._credential(cfg), DefaultAzureCredential)  # type: ignore[arg-type]


def test_spec_selects_the_backend_and_keeps_faiss_fingerprints() -> None:
    assert get_backend(AZ).name == "azure_search"
    assert "azure" not in StoreSpec().model_dump()  # faiss version ids do not move
    with pytest.raises(ValueError, match="kind: azure_search"):
        StoreSpec(azure={})
    with pytest.raises(ValueError, match="rrf_k"):
        StoreSpec(kind="azure_search", rrf_k=10)
    with pytest.raises(ValueError, match="index_prefix"):
        StoreSpec(kind="azure_search", azure={"index_prefix": "Bad_Prefix"})


def test_spec_file_with_azure_store(tmp_path: Path) -> None:
    from indexing import load_index_spec

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nhello\n")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "name: az\nsources: [{path: docs}]\nstore:\n  kind: azure_search\n  dense: hnsw\n"
        "  azure: {endpoint_env: SEARCH_URL, api_key_env: null, semantic_ranker: true}\n"
    )
    store = load_index_spec(spec_file).store
    assert store.azure is not None and store.azure.endpoint_env == "SEARCH_URL"
    spec_file.write_text("name: az\nsources: [{path: docs}]\nstore: {kind: azure_search, x: 1}\n")
    with pytest.raises(SpecError, match="store"):
        load_index_spec(spec_file)


def test_semantic_ranker_reranks_text_queries(service: Service, tmp_path: Path) -> None:
    params = StoreSpec(kind="azure_search", azure={"semantic_ranker": True})
    index = _written(tmp_path, params)
    hits = index.search("fruit apples", _vectors()[4], 2, "hybrid")
    body = service.requests[-1].body
    assert body["queryType"] == "semantic" and body["semanticConfiguration"]
    assert {r for r, _ in hits} == {0, 3} and hits[0][1] >= hits[1][1]


# -- end to end: build, retrieve, promote, gc through the catalog -------------------------------
def test_build_retrieve_promote_and_gc_on_the_service(
    service: Service, spec: IndexSpec, corpus: Path
) -> None:
    spec = spec.model_copy(update={"store": StoreSpec(kind="azure_search")})
    r1 = build_index(spec, promote="current")
    alias = "genaiops-sample-current"
    (idx1,) = service.indexes
    assert idx1.startswith("genaiops-sample-") and service.aliases == {alias: [idx1]}
    docs = service.indexes[idx1].docs
    assert len(docs) == r1.chunks
    assert {d["doc_id"] for d in docs.values()} >= {"guides/rotation.md", "faq-metrics"}

    retriever = Retriever("sample")
    hits = retriever.retrieve("How are log files rotated?", k=3, mode="hybrid")
    assert hits and hits[0].version_id == r1.version_id
    filtered = retriever.retrieve("rotation", k=5, mode="dense", filters={"doc_id": "faq-metrics"})
    assert filtered and {h.doc_id for h in filtered} == {"faq-metrics"}

    (corpus / "guides" / "rotation.md").write_text("# Rotation\n\nLogs rotate hourly now.\n")
    r2 = build_index(spec, promote="current")
    idx2 = next(n for n in service.indexes if n != idx1)
    assert service.aliases == {alias: [idx2]}  # repointed, not a second alias
    Catalog("sample").rollback("current")
    assert service.aliases == {alias: [idx1]}
    Catalog("sample").promote(r2.version_id, "current")

    # an alias set on the service by someone else keeps v1 alive; gc says so by keeping it
    service.aliases["external-reader"] = [idx1]
    out = Catalog("sample").gc(keep=0)
    assert out["deleted"] == [] and r1.version_id in out["kept"]
    assert set(service.indexes) == {idx1, idx2}
    del service.aliases["external-reader"]
    out = Catalog("sample").gc(keep=0)
    assert out["deleted"] == [r1.version_id]
    assert set(service.indexes) == {idx2}  # only the unaliased version went
    assert retriever.retrieve("rotate hourly", k=1, mode="lexical")[0].version_id == r2.version_id


def test_killed_build_leaves_no_service_index_after_cleanup(
    service: Service, spec: IndexSpec
) -> None:
    catalog = Catalog("sample")
    staging = catalog.staging_dir()
    az.AzureSearchBackend().write(staging, TEXTS, _vectors(), AZ)
    (staging / "owner.json").write_text('{"pid": 999999999, "started": 0}')  # a dead builder
    dead = staging.with_name(".tmp-999999999-killed")  # staging folders carry the builder's pid
    staging = staging.rename(dead)
    assert len(service.indexes) == 1
    catalog.clean_leftovers()
    assert not staging.exists() and service.indexes == {}


# -- live service (integration) ------------------------------------------------------------------
LIVE = bool(os.environ.get("AZURE_SEARCH_ENDPOINT") and os.environ.get("AZURE_SEARCH_API_KEY"))
_HOST = urlsplit(os.environ.get("AZURE_SEARCH_ENDPOINT", "")).hostname or "localhost"


@pytest.mark.integration
@pytest.mark.allow_hosts([_HOST])
@pytest.mark.skipif(not LIVE, reason="AZURE_SEARCH_ENDPOINT and AZURE_SEARCH_API_KEY not set")
class TestAzureSearchLive(SearchBackendContract):
    """The same contract against a real service (indexes are deleted afterwards)."""

    @pytest.fixture
    def backend(self) -> az.AzureSearchBackend:
        return az.AzureSearchBackend()

    @pytest.fixture
    def params(self) -> StoreSpec:
        prefix = f"genaiops-test-{uuid.uuid4().hex[:8]}"
        return StoreSpec(kind="azure_search", azure={"index_prefix": prefix})

    @pytest.fixture
    def written(  # type: ignore[override]
        self, backend: az.AzureSearchBackend, params: StoreSpec, tmp_path: Path
    ) -> Path:
        import time

        backend.write(tmp_path, TEXTS, _vectors(), params)
        time.sleep(2)  # the service indexes near-real-time
        yield tmp_path
        backend.delete(tmp_path)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_vectors_are_uploaded_as_float_lists(service: Service, tmp_path: Path) -> None:
    _written(tmp_path)
    doc = next(iter(service.indexes.values())).docs["3"]
    assert np.allclose(doc["vector"], _vectors()[3], atol=1e-6)
