"""Builds over the real corpora in ../shared/datasets (slow; skipped when the data is absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from indexing import Retriever, build_index, load_index_spec
from tests.conftest import REPO, SHARED

PY_DOCS = Path(os.environ.get("PYTHON_DOCS_DIR", SHARED / "python-docs"))
SCIFACT = Path(os.environ.get("SCIFACT_DIR", SHARED / "scifact"))

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").exists(), reason="SciFact data not present")
def test_scifact_build_and_claims_find_their_abstracts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCIFACT_DIR", str(SCIFACT))
    r = build_index(
        load_index_spec(REPO / "indexing" / "specs" / "scifact.yaml"), promote="current"
    )
    assert r.documents == 5183 and not r.quarantined
    qrels: dict[str, set[str]] = {}
    for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        q, d, _ = line.strip().split("\t")
        qrels.setdefault(q, set()).add(d)
    queries = {}
    for line in (SCIFACT / "queries.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["_id"] in qrels:
            queries[rec["_id"]] = rec["text"]
    retriever = Retriever("scifact")
    sample = sorted(queries)[:100]
    found = sum(
        bool({h.doc_id for h in retriever.retrieve(queries[q], k=10)} & qrels[q]) for q in sample
    )
    assert found / len(sample) > 0.7  # recall@10 of hybrid retrieval on 100 train claims


@pytest.mark.skipif(not (PY_DOCS / "corpus.jsonl").exists(), reason="python-docs not present")
def test_python_docs_build_is_incremental(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_DOCS_DIR", str(PY_DOCS))
    spec = load_index_spec(REPO / "indexing" / "specs" / "python-docs.yaml")
    first = build_index(spec, promote="current")
    assert first.documents == 485 and first.chunks > 5000
    again = build_index(spec)
    assert again.embedded == 0 and again.seconds < first.seconds * 0.1
    hits = Retriever("python-docs").retrieve("How do I write a lambda function?", k=5)
    assert any("expressions" in h.doc_id or "tutorial" in h.doc_id for h in hits)
