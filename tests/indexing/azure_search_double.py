"""A fake Azure AI Search service at the HTTP seam: an azure-core ``HttpTransport``.

The real ``azure-search-documents`` SDK talks to it through ``transport=``; the double checks
each REST request the SDK sends (method, path, ``api-version``, ``api-key``, payload shapes) and
answers as the REST reference documents (status codes, OData error bodies, 207 multi-status).
It keeps indexes, documents and aliases in memory and computes results itself -- cosine kNN for
vector queries, BM25 over an ``en.lucene``-like analyzer (lower case, Lucene's English stop
words, Porter stemming) for simple text queries, RRF (k=60) for hybrid -- so ranking assertions
test the backend's requests, not canned answers.  ``faults`` scripts throttling.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

API_VERSION = "2026-04-01"  # the SDK's default (azure-search-documents 12)
ENDPOINT = "https://genaiops-test.search.windows.net"
API_KEY = "test-admin-key"

# Lucene's EnglishAnalyzer stop set (ENGLISH_STOP_WORDS_SET)
LUCENE_EN_STOP = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is"}
    | {"it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there"}
    | {"these", "they", "this", "to", "was", "will", "with"}
)
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){0,126}[a-z0-9]?$")
ROUTE = re.compile(
    r"^/(?P<coll>indexes|aliases)(?:\('(?P<name>[^']+)'\))?(?P<rest>/docs(?:/.*)?)?$"
)
SEARCH_KEYS = {
    "search",
    "searchFields",
    "searchMode",
    "queryType",
    "filter",
    "top",
    "skip",
    "select",
    "count",
    "vectorQueries",
    "vectorFilterMode",
    "semanticConfiguration",
}
SEARCH_IN = re.compile(r"^search\.in\((\w+),\s*'([^']*)',\s*'([^']*)'\)$")


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method`` + ``path`` (a regex) with
    ``status`` and ``headers``; ``documents`` instead fails that many documents per upload."""

    method: str
    path: str
    status: int
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    documents: int = 0


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any


class _Internal:
    def close(self) -> None:
        pass


class _Index:
    def __init__(self, definition: dict[str, Any]):
        self.definition = definition
        self.docs: dict[str, dict[str, Any]] = {}
        fields = definition["fields"]
        self.fields = {f["name"]: f for f in fields}
        self.key = next(f["name"] for f in fields if f.get("key"))
        sim = definition.get("similarity") or {}
        self.k1 = float(sim.get("k1", 1.2))
        self.b = float(sim.get("b", 0.75))


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": code, "message": message}}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "InvalidRequestParameter"):
        super().__init__(message)
        self.status, self.code = status, code


def analyze(text: str, analyzer: str | None) -> list[str]:
    """Tokens as the field's analyzer makes them (standard.lucene or en.lucene)."""
    tokens = re.findall(r"[0-9a-z]+", text.lower())
    if analyzer == "en.lucene":
        import Stemmer

        stem = Stemmer.Stemmer("porter")
        tokens = stem.stemWords([t for t in tokens if t not in LUCENE_EN_STOP])
    return tokens


class FakeSearchService(HttpTransport):
    """In-memory Azure AI Search behind the SDK's HTTP transport seam."""

    def __init__(self, api_key: str = API_KEY, api_version: str = API_VERSION):
        self.api_key = api_key
        self.api_version = api_version
        self.indexes: dict[str, _Index] = {}
        self.aliases: dict[str, list[str]] = {}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.sleeps: list[float] = []
        self._lock = threading.RLock()

    # -- HttpTransport ------------------------------------------------------------------
    def __enter__(self) -> FakeSearchService:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def sleep(self, duration: float) -> None:
        """Record the wait instead of waiting (azure-core's RetryPolicy calls this)."""
        with self._lock:
            self.sleeps.append(float(duration))

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlsplit(request.url)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = getattr(request, "content", None)
        if raw is None:
            raw = getattr(request, "data", None)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        body = json.loads(raw) if raw else None
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = unquote(url.path)
        with self._lock:
            self.requests.append(Recorded(request.method, path, params, headers, body))
            status, payload, extra = self._answer(request.method, path, params, headers, body)
        return self._response(request, status, payload, extra)

    # -- plumbing ------------------------------------------------------------------------
    @staticmethod
    def _response(request: Any, status: int, payload: Any, extra: dict[str, str]) -> Any:
        content = b"" if payload is None else json.dumps(payload).encode()
        headers = case_insensitive_dict(extra)
        if payload is not None:
            headers["Content-Type"] = "application/json; odata.metadata=minimal; charset=utf-8"
        resp = HttpResponseImpl(
            request=request,
            internal_response=_Internal(),
            status_code=status,
            reason={200: "OK", 201: "Created", 204: "No Content", 207: "Multi-Status"}.get(
                status, "Error"
            ),
            content_type=headers.get("Content-Type"),
            headers=headers,
            stream_download_generator=None,
        )
        resp._content = content  # a fully read body, as after a non-streamed request
        return resp

    def _fault(self, method: str, path: str) -> Fault | None:
        for f in self.faults:
            if f.times > 0 and f.method == method and re.search(f.path, path):
                f.times -= 1
                return f
        return None

    def _answer(
        self, method: str, path: str, params: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if params.get("api-version") != self.api_version:
            return (
                *_error(400, "InvalidApiVersion", f"api-version {params.get('api-version')}"),
                {},
            )
        if headers.get("api-key") != self.api_key and not headers.get(
            "authorization", ""
        ).startswith("Bearer "):
            return (*_error(403, "Forbidden", "Authorization failed."), {})
        fault = self._fault(method, path)
        if fault is not None and not fault.documents:
            return (*_error(fault.status, "Throttled", "Too many requests"), dict(fault.headers))
        m = ROUTE.match(path)
        if not m:
            return (*_error(404, "NotFound", f"no route {method} {path}"), {})
        try:
            status, payload = self._route(method, m, body, fault)
        except BadRequest as e:
            return (*_error(e.status, e.code, str(e)), {})
        return status, payload, {}

    def _route(self, method: str, m: re.Match[str], body: Any, fault: Fault | None) -> Any:
        coll, name, rest = m.group("coll"), m.group("name"), m.group("rest")
        if coll == "aliases":
            return self._aliases(method, name, body)
        if rest is None:
            return self._indexes(method, name, body)
        index = self._resolve(name)
        if method == "POST" and rest == "/docs/search.index":
            return self._index_docs(index, body, fault)
        if method == "POST" and rest == "/docs/search.post.search":
            return 200, self._search(index, body)
        if method == "GET" and rest == "/docs/$count":
            return 200, len(index.docs)
        raise BadRequest(f"unsupported {method} {rest}", 404, "NotFound")

    def _resolve(self, name: str | None) -> _Index:
        if name in self.indexes:
            return self.indexes[name]
        if name in self.aliases:  # aliases work for document operations
            return self.indexes[self.aliases[name][0]]
        raise BadRequest(f"The index '{name}' for service was not found.", 404, "NotFound")

    # -- indexes -------------------------------------------------------------------------
    def _indexes(self, method: str, name: str | None, body: Any) -> tuple[int, Any]:
        if name is None:
            if method == "GET":
                return 200, {"value": [i.definition for i in self.indexes.values()]}
            raise BadRequest(f"unsupported {method} /indexes", 404, "NotFound")
        if method == "PUT":
            self._check_definition(name, body)
            old = self.indexes.get(name)
            if old is not None:
                if old.definition["fields"] != body["fields"]:
                    raise BadRequest("Existing field definitions cannot be changed.")
                old.definition = {**body, "@odata.etag": '"0x2"'}
                return 200, old.definition
            self.indexes[name] = _Index({**body, "@odata.etag": '"0x1"'})
            return 201, self.indexes[name].definition
        if name not in self.indexes:
            raise BadRequest(f"No index with the name '{name}' was found", 404, "ResourceNotFound")
        if method == "GET":
            return 200, self.indexes[name].definition
        if method == "DELETE":
            mapped = [a for a, targets in self.aliases.items() if name in targets]
            if mapped:  # documented: 400 while an alias maps to the index
                raise BadRequest(
                    f"Index '{name}' cannot be deleted: aliases {mapped} map to it; delete them"
                    " or map them to a different index first.",
                    400,
                    "CannotDeleteIndexWithAlias",
                )
            del self.indexes[name]
            return 204, None
        raise BadRequest(f"unsupported {method}", 405, "MethodNotAllowed")

    def _check_definition(self, name: str, body: Any) -> None:
        if not isinstance(body, dict) or body.get("name") != name or not NAME_RE.match(name):
            raise BadRequest(f"invalid index name {name!r} or body name")
        fields = body.get("fields") or []
        keys = [f for f in fields if f.get("key")]
        if len(keys) != 1 or keys[0].get("type") != "Edm.String":
            raise BadRequest("an index needs exactly one Edm.String key field")
        vs = body.get("vectorSearch") or {}
        algos = {a["name"]: a for a in vs.get("algorithms", [])}
        profiles = {p["name"]: p for p in vs.get("profiles", [])}
        for a in algos.values():
            if a.get("kind") not in ("hnsw", "exhaustiveKnn"):
                raise BadRequest(f"unknown algorithm kind {a.get('kind')!r}")
            p = a.get("hnswParameters") or {}
            for key, lo, hi in (
                ("m", 4, 10),
                ("efConstruction", 100, 1000),
                ("efSearch", 100, 1000),
            ):
                if key in p and not lo <= int(p[key]) <= hi:
                    raise BadRequest(f"hnswParameters.{key} must be in [{lo}, {hi}]")
            if p.get("metric", "cosine") not in ("cosine", "euclidean", "dotProduct"):
                raise BadRequest(f"unknown metric {p.get('metric')!r}")
        for f in fields:
            if f.get("type") == "Collection(Edm.Single)":
                dims = f.get("dimensions")
                prof = profiles.get(f.get("vectorSearchProfile"))
                if not isinstance(dims, int) or not 2 <= dims <= 4096:
                    raise BadRequest(f"field {f['name']}: dimensions must be in [2, 4096]")
                if prof is None or prof.get("algorithm") not in algos:
                    raise BadRequest(f"field {f['name']}: unknown vectorSearchProfile")
            elif f.get("analyzer") not in (None, "standard.lucene", "en.lucene"):
                raise BadRequest(f"unknown analyzer {f.get('analyzer')!r}")
        sem = body.get("semantic")
        if sem is not None:
            names = {c["name"] for c in sem.get("configurations", [])}
            if sem.get("defaultConfiguration") not in names | {None}:
                raise BadRequest("semantic.defaultConfiguration is not a configuration")

    # -- aliases -------------------------------------------------------------------------
    def _aliases(self, method: str, name: str | None, body: Any) -> tuple[int, Any]:
        if name is None:
            if method == "GET":
                return 200, {"value": [{"name": a, "indexes": t} for a, t in self.aliases.items()]}
            raise BadRequest(f"unsupported {method} /aliases", 404, "NotFound")
        if method == "PUT":
            targets = (body or {}).get("indexes")
            if body.get("name") != name or not NAME_RE.match(name):
                raise BadRequest(f"invalid alias name {name!r}")
            if not isinstance(targets, list) or len(targets) != 1:
                raise BadRequest("an alias maps to exactly one index")
            if targets[0] not in self.indexes:
                raise BadRequest(f"index {targets[0]!r} does not exist", 404, "ResourceNotFound")
            if name in self.indexes:
                raise BadRequest(f"{name!r} is already an index name")
            created = name not in self.aliases
            self.aliases[name] = list(targets)
            return (201 if created else 200), {"name": name, "indexes": targets}
        if name not in self.aliases:
            raise BadRequest(f"No alias with the name '{name}' was found", 404, "ResourceNotFound")
        if method == "GET":
            return 200, {"name": name, "indexes": self.aliases[name]}
        if method == "DELETE":
            del self.aliases[name]
            return 204, None
        raise BadRequest(f"unsupported {method}", 405, "MethodNotAllowed")

    # -- documents -----------------------------------------------------------------------
    def _index_docs(self, index: _Index, body: Any, fault: Fault | None) -> tuple[int, Any]:
        actions = (body or {}).get("value")
        if not isinstance(actions, list) or not 1 <= len(actions) <= 1000:
            raise BadRequest("value must hold 1 to 1000 actions")
        results = []
        throttle = fault.documents if fault is not None else 0
        for doc in actions:
            action = doc.get("@search.action")
            key = doc.get(index.key)
            if action not in ("upload", "merge", "mergeOrUpload", "delete"):
                raise BadRequest(f"unknown @search.action {action!r}")
            unknown = set(doc) - set(index.fields) - {"@search.action"}
            if unknown or not isinstance(key, str):
                raise BadRequest(f"unknown fields {sorted(unknown)} or missing key")
            for name, f in index.fields.items():
                is_vector = f.get("type") == "Collection(Edm.Single)" and name in doc
                if is_vector and len(doc[name]) != f["dimensions"]:
                    raise BadRequest(f"field {name}: expected {f['dimensions']} dimensions")
            if throttle > 0:
                throttle -= 1
                results.append(
                    {"key": key, "status": False, "errorMessage": "Service busy", "statusCode": 503}
                )
                continue
            existed = key in index.docs
            if action == "delete":
                index.docs.pop(key, None)
            else:
                index.docs[key] = {k: v for k, v in doc.items() if k != "@search.action"}
            results.append(
                {
                    "key": key,
                    "status": True,
                    "errorMessage": None,
                    "statusCode": 200 if existed else 201,
                }
            )
        ok = all(r["status"] for r in results)
        return (200 if ok else 207), {"value": results}

    def _filter(self, index: _Index, expr: str | None) -> set[str]:
        if not expr:
            return set(index.docs)
        m = SEARCH_IN.match(expr.strip())
        if (
            not m
            or m.group(1) not in index.fields
            or not index.fields[m.group(1)].get("filterable")
        ):
            raise BadRequest(f"Invalid expression: {expr!r} (the double knows search.in only)")
        values = set(m.group(2).split(m.group(3))) if m.group(2) else set()
        return {k for k, d in index.docs.items() if str(d.get(m.group(1))) in values}

    def _text_ranking(
        self, index: _Index, body: dict[str, Any], keys: set[str]
    ) -> list[tuple[str, float]]:
        text = body.get("search")
        if text is None or text.strip() in ("", "*"):
            return []
        text = re.sub(r"\\(.)", r"\1", text)  # simple syntax: backslash escapes a special char
        fields = body.get("searchFields")
        names = (
            fields.split(",")
            if fields
            else [
                n
                for n, f in index.fields.items()
                if f.get("searchable") and f["type"] == "Edm.String"
            ]
        )
        for n in names:
            if not index.fields.get(n, {}).get("searchable"):
                raise BadRequest(f"searchFields: {n!r} is not searchable")
        analyzer = index.fields[names[0]].get("analyzer")
        terms = analyze(text, analyzer)
        if not terms:
            return []
        docs = {
            k: analyze(" ".join(str(index.docs[k].get(n, "")) for n in names), analyzer)
            for k in index.docs
        }
        n_docs = len(docs)
        avgdl = sum(map(len, docs.values())) / max(n_docs, 1)
        scores: dict[str, float] = {}
        for key in keys:
            toks = docs[key]
            matched = [t for t in set(terms) if t in toks]
            if not matched or (body.get("searchMode") == "all" and len(matched) < len(set(terms))):
                continue
            s = 0.0
            for t in matched:
                df = sum(1 for d in docs.values() if t in d)
                idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
                tf = toks.count(t)
                s += (
                    idf
                    * tf
                    * (index.k1 + 1)
                    / (tf + index.k1 * (1 - index.b + index.b * len(toks) / avgdl))
                )
            scores[key] = s
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))

    def _vector_ranking(
        self, index: _Index, vq: dict[str, Any], keys: set[str]
    ) -> list[tuple[str, float]]:
        if vq.get("kind") != "vector":
            raise BadRequest(f"vectorQueries.kind {vq.get('kind')!r} (expected 'vector')")
        field_name = vq.get("fields")
        f = index.fields.get(field_name or "")
        if f is None or f.get("type") != "Collection(Edm.Single)":
            raise BadRequest(f"vectorQueries.fields {field_name!r} is not a vector field")
        vector = vq.get("vector")
        k = vq.get("k")
        if not isinstance(vector, list) or len(vector) != f["dimensions"]:
            raise BadRequest(f"vector must have {f['dimensions']} dimensions")
        if not isinstance(k, int) or k < 1:
            raise BadRequest("vectorQueries.k must be a positive integer")
        q = np.asarray(vector, dtype=np.float64)
        q = q / (np.linalg.norm(q) or 1.0)
        scored = []
        for key in keys:
            d = np.asarray(index.docs[key][field_name], dtype=np.float64)
            cos = float(d @ q / (np.linalg.norm(d) or 1.0))
            scored.append((key, 1.0 / (1.0 + (1.0 - cos))))  # documented cosine @search.score
        scored.sort(key=lambda kv: (-kv[1], kv[0]))
        return scored[:k]

    def _search(self, index: _Index, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - SEARCH_KEYS:
            raise BadRequest(f"unknown search parameters {sorted(set(body or {}) - SEARCH_KEYS)}")
        if body.get("vectorFilterMode", "preFilter") != "preFilter":
            raise BadRequest("the double implements vectorFilterMode preFilter only")
        keys = self._filter(index, body.get("filter"))
        rankings = []
        has_text = body.get("search") not in (None, "", "*")
        if has_text:
            rankings.append(self._text_ranking(index, body, keys))
        for vq in body.get("vectorQueries") or []:
            rankings.append(self._vector_ranking(index, vq, keys))
        if not rankings:
            ranked = [(k, 1.0) for k in sorted(keys)]
        elif len(rankings) == 1:
            ranked = rankings[0]
        else:  # hybrid: the service fuses with RRF, k = 60
            fused: dict[str, float] = {}
            for r in rankings:
                for rank, (key, _) in enumerate(r, start=1):
                    fused[key] = fused.get(key, 0.0) + 1.0 / (60 + rank)
            ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        ranked = ranked[int(body.get("skip", 0)) :][: int(body.get("top", 50))]
        semantic = body.get("queryType") == "semantic"
        if semantic:
            sem = (index.definition.get("semantic") or {}).get("configurations") or []
            if body.get("semanticConfiguration") not in {c["name"] for c in sem}:
                raise BadRequest("semanticConfiguration is not defined in the index")
        select = body.get("select")
        chosen = (
            select.split(",")
            if select
            else [n for n, f in index.fields.items() if f.get("retrievable", True)]
        )
        out = []
        terms = set(analyze(body.get("search") or "", "en.lucene"))
        for key, score in ranked:
            doc = index.docs[key]
            item = {"@search.score": score, **{n: doc.get(n) for n in chosen}}
            if semantic:  # a stand-in reranker: share of query terms in the text, 0..4
                toks = set(analyze(str(doc.get("text", "")), "en.lucene"))
                item["@search.rerankerScore"] = 4.0 * len(terms & toks) / max(len(terms), 1)
            out.append(item)
        return {"value": out}
