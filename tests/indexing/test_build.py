from __future__ import annotations

import json
from pathlib import Path

import pytest

from genaiops.errors import AliasError, VersionNotFound
from indexing import Catalog, IndexSpec, Retriever, build_index

BROKEN = {
    "broken/empty.md": "empty",
    "broken/binary.txt": "binary",
    "broken/truncated.pdf": "truncated",
    "broken/encrypted.pdf": "encrypted",
    "broken/image.png": "unsupported",
    "reference/faq.jsonl:4": "invalid JSON",
    "reference/faq.jsonl:5": "text field",
}


def test_sample_build_quarantines_broken_files_and_indexes_the_rest(spec: IndexSpec) -> None:
    r = build_index(spec, promote="current")
    assert r.status == "completed_with_quarantine"
    assert r.message.startswith(f"completed with {len(BROKEN)} quarantined")
    reasons = {q["path"].split("corpus/")[1]: q["reason"] for q in r.quarantined}
    assert set(reasons) == set(BROKEN)
    for path, word in BROKEN.items():
        assert word.lower() in reasons[path].lower(), (path, reasons[path])
    # 4 guides + html + 3 good jsonl records + the Latin-1 text (decoded, not quarantined)
    assert r.documents == 9
    assert r.chunks >= r.documents and r.embedded == r.chunks and r.reused == 0
    m = Catalog("sample").manifest(r.version_id)
    assert m.counts.quarantined == len(BROKEN)
    assert m.model_id.startswith("sentence-transformers/all-MiniLM-L6-v2")
    assert set(m.documents) >= {"guides/rotation.md", "guides/security.pdf", "faq-metrics"}
    encodings = {d: e.encoding for d, e in m.documents.items()}
    assert encodings["broken/latin1.txt"] == "cp1252"
    assert encodings["guides/rotation.md"] == "utf-8" and encodings["faq-metrics"] == "utf-8"
    assert encodings["guides/security.pdf"] is None
    assert Catalog("sample").aliases() == {"current": r.version_id}


def test_rebuild_unchanged_embeds_nothing(spec: IndexSpec) -> None:
    first = build_index(spec)
    second = build_index(spec)
    assert second.version_id == first.version_id
    assert second.embedded == 0 and second.reused_version


def test_editing_one_document_reembeds_only_its_chunks(spec: IndexSpec, corpus: Path) -> None:
    first = build_index(spec)
    doc = corpus / "guides" / "troubleshooting.txt"
    doc.write_text(doc.read_text() + "\nLumen never ships events older than 7 days.\n")
    second = build_index(spec)
    assert second.version_id != first.version_id
    m = Catalog("sample").manifest(second.version_id)
    assert 0 < second.embedded <= m.documents["guides/troubleshooting.txt"].chunks
    assert second.reused == second.chunks - second.embedded
    d = Catalog("sample").diff(first.version_id, second.version_id)
    assert d["docs_changed"] == ["guides/troubleshooting.txt"]
    assert d["docs_added"] == [] and d["docs_removed"] == []
    assert d["chunks_added"] == second.embedded


def test_deleted_source_is_absent_from_new_version(spec: IndexSpec, corpus: Path) -> None:
    first = build_index(spec, promote="current")
    (corpus / "guides" / "rotation.md").unlink()
    second = build_index(spec, promote="current")
    assert second.embedded == 0
    d = Catalog("sample").diff(first.version_id, second.version_id)
    assert d["docs_removed"] == ["guides/rotation.md"]
    hits = Retriever("sample").retrieve("rotate_size rotate_keep", k=10, mode="lexical")
    assert all(h.doc_id != "guides/rotation.md" for h in hits)
    assert all(h.version_id == second.version_id for h in hits)


def test_promote_rollback_and_gc(spec: IndexSpec, corpus: Path) -> None:
    cat = Catalog("sample")
    v1 = build_index(spec, promote="prod").version_id
    (corpus / "guides" / "new.md").write_text("# New page\n\nLumen supports syslog input.\n")
    v2 = build_index(spec).version_id
    (corpus / "guides" / "newer.md").write_text("# Newer page\n\nLumen supports kafka output.\n")
    v3 = build_index(spec).version_id
    assert len({v1, v2, v3}) == 3
    cat.promote(v2, "prod")
    assert cat.resolve("prod") == v2
    cat.rollback("prod")
    assert cat.resolve("prod") == v1
    with pytest.raises(AliasError):
        cat.rollback("prod")
    result = cat.gc(keep=1)
    assert v1 not in result["deleted"]  # aliased
    assert result["deleted"] == [v2]
    assert {m.version_id for m in cat.versions()} == {v1, v3}
    assert Retriever("sample", "prod").retrieve("rotation", k=1)[0].version_id == v1
    # the chunks only v2 had ("new.md") leave the embedding cache; shared ones stay
    from indexing.catalog import prune_embedding_cache

    pruned = prune_embedding_cache()
    assert pruned["removed"] == 0  # v3 still has every chunk v2 had
    cat.gc(keep=0)  # v3 goes too (v1 is aliased)
    pruned = prune_embedding_cache()
    assert pruned["removed"] >= 2 and pruned["kept"] == len(cat.chunk_keys())
    with pytest.raises(VersionNotFound):
        cat.resolve("v-doesnotexist")


def test_retriever_notices_alias_move(spec: IndexSpec, corpus: Path) -> None:
    v1 = build_index(spec, promote="current").version_id
    r = Retriever("sample", "current")
    assert r.retrieve("metrics port", k=1)[0].version_id == v1
    (corpus / "guides" / "ports.md").write_text("# Ports\n\nLumen's admin API listens on 7701.\n")
    v2 = build_index(spec, promote="current").version_id
    hits = r.retrieve("which port does the admin API listen on", k=3)
    assert hits[0].version_id == v2
    assert "guides/ports.md" in {h.doc_id for h in hits}


def test_retrieval_provenance_and_filters(spec: IndexSpec, corpus: Path) -> None:
    build_index(spec, promote="current")
    r = Retriever("sample")
    for mode in ("dense", "lexical", "hybrid"):
        hits = r.retrieve("How do I rotate log files?", k=3, mode=mode)  # type: ignore[arg-type]
        assert hits[0].doc_id == "guides/rotation.md", mode
    hit = r.retrieve("Prometheus metrics port", k=1)[0]
    assert hit.doc_id == "faq-metrics" and hit.url == "https://lumen.example/faq#metrics"
    md = r.retrieve("copytruncate", k=1, mode="lexical")[0]
    text = (corpus / "guides" / "rotation.md").read_text()
    assert text[md.start : md.end] == md.text
    assert md.headings == ("Log rotation", "Copytruncate")
    only = r.retrieve("rotate", k=5, filters={"doc_id_prefix": "reference/"})
    assert only and all(h.doc_id.startswith("reference/") for h in only)


def test_manifest_is_json_and_has_provenance(spec: IndexSpec) -> None:
    r = build_index(spec)
    path = Catalog("sample").version_dir(r.version_id) / "manifest.json"
    m = json.loads(path.read_text())
    for key in ("spec", "model_id", "counts", "sources", "timings", "quarantine", "git_commit"):
        assert key in m
    assert m["schema_version"] == 1
    assert not list(path.parent.rglob("*.pkl")) and not list(path.parent.rglob("*.pickle"))


def test_chunks_longer_than_the_model_window_are_reported(tmp_path: Path) -> None:
    from indexing import adhoc_spec

    words = " ".join(f"term{i} alpha beta gamma" for i in range(400))
    (tmp_path / "long.md").write_text(f"# Long\n\n{words}\n")
    spec = adhoc_spec([str(tmp_path)], name="long")
    spec.chunker.size, spec.chunker.overlap = 1024, 0
    r = build_index(spec)
    assert r.over_window >= 1 and "exceed the embedder's input window" in r.message
    spec.chunker.size = 128
    assert build_index(spec).over_window == 0
