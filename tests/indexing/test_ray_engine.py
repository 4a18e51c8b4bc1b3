"""The ray engine is another executor of the same build: same version id, chunks, ids and
vectors as the local engine; the same quarantine, embedding cache and crash safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from genaiops.cli import app
from genaiops.errors import ConfigError, IndexingError
from indexing import Catalog, IndexSpec, build_index, load_index_spec
from indexing.embedcache import EmbeddingCache
from tests.conftest import REPO, SAMPLE_SPEC, SHARED

pytestmark = pytest.mark.usefixtures("local_ray")


def _content(home: Path, index: str, version: str) -> tuple[list[Any], np.ndarray, Any]:
    """Every chunk row, every stored vector and the manifest of one version."""
    import faiss

    folder = Catalog(index, home=home).version_dir(version)
    db = sqlite3.connect(folder / "chunks.sqlite")
    try:
        rows = list(db.execute("SELECT * FROM chunks ORDER BY row"))
    finally:
        db.close()
    dense = faiss.read_index(str(folder / "dense.faiss"))
    return rows, dense.reconstruct_n(0, dense.ntotal), Catalog(index, home=home).manifest(version)


def assert_same_build(spec: IndexSpec, tmp_path: Path) -> tuple[Any, Any]:
    local = build_index(spec, home=tmp_path / "local", engine="local")
    ray = build_index(spec, home=tmp_path / "ray", engine="ray")
    assert ray.engine == "ray" and local.engine == "local"
    assert ray.version_id == local.version_id
    rows_l, vecs_l, m_l = _content(tmp_path / "local", spec.name, local.version_id)
    rows_r, vecs_r, m_r = _content(tmp_path / "ray", spec.name, ray.version_id)
    assert rows_r == rows_l  # chunk ids, texts, offsets, headings, hashes, row order
    assert np.array_equal(vecs_r, vecs_l)  # bit for bit: same texts per embedder call
    assert m_r.counts == m_l.counts and m_r.documents == m_l.documents
    assert m_r.quarantine == m_l.quarantine and m_r.sources == m_l.sources
    return local, ray


def test_ray_build_is_identical_to_the_local_build(spec: IndexSpec, tmp_path: Path) -> None:
    local, ray = assert_same_build(spec, tmp_path)
    assert ray.status == "completed_with_quarantine" and len(ray.quarantined) == 7
    assert ray.embedded == ray.chunks == local.chunks
    cache = EmbeddingCache(tmp_path / "ray" / "cache" / "embeddings.sqlite")
    try:  # the driver cached every vector the actors made, each chunk once
        assert cache.count() == len(
            {row[9] for row in _content(tmp_path / "ray", "sample", ray.version_id)[0]}
        )
    finally:
        cache.close()


@pytest.mark.slow
def test_ray_build_reuses_the_cache_across_versions(
    spec: IndexSpec, corpus: Path, genaiops_home: Path
) -> None:
    first = build_index(spec, engine="local")
    doc = corpus / "guides" / "troubleshooting.txt"
    doc.write_text(doc.read_text() + "\nLumen never ships events older than 7 days.\n")
    second = build_index(spec, engine="ray")
    m = Catalog("sample").manifest(second.version_id)
    assert 0 < second.embedded <= m.documents["guides/troubleshooting.txt"].chunks
    assert second.reused == second.chunks - second.embedded
    cache = EmbeddingCache(genaiops_home / "cache" / "embeddings.sqlite")
    try:  # every distinct chunk embedded exactly once over both builds and all workers
        assert cache.count() == first.embedded + second.embedded
    finally:
        cache.close()
    again = build_index(spec, engine="ray")
    assert again.reused_version and again.embedded == 0 and again.version_id == second.version_id


def test_engine_from_the_spec_and_the_cli(corpus: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(SAMPLE_SPEC.read_text())
    raw["engine"] = "ray"
    raw["sources"][0]["path"] = str(corpus / "guides")
    spec_file = tmp_path / "ray.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    spec = load_index_spec(spec_file)
    r = build_index(spec)
    assert r.engine == "ray" and r.documents == 4
    local = load_index_spec(spec_file).model_copy(update={"engine": "local"})
    assert build_index(local, home=tmp_path / "h2").version_id == r.version_id  # not in the id
    cli = CliRunner()
    out = cli.invoke(app, ["index", "build", "--spec", str(spec_file), "--engine", "ray", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["version_id"] == r.version_id
    doc = corpus / "guides" / "rotation.md"  # a new version: only the edited chunks embed
    doc.write_text(doc.read_text() + "\nRotation never deletes the newest file.\n")
    out = cli.invoke(app, ["index", "build", "--spec", str(spec_file), "--engine", "ray", "--json"])
    edited = json.loads(out.output)
    assert edited["engine"] == "ray" and edited["version_id"] != r.version_id
    assert 0 < edited["embedded"] < edited["chunks"] == edited["embedded"] + edited["reused"]
    bad = cli.invoke(app, ["index", "build", "--spec", str(spec_file), "--engine", "spark"])
    assert isinstance(bad.exception, ConfigError)  # main() prints it as one line, exit 2
    assert "--engine must be local or ray" in str(bad.exception)


class _BrokenEmbedder:
    """An embedder whose model cannot run where it lands (travels to the actors by value)."""

    model_id = "tests/broken-embedder"
    dim = 4

    def embed(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("the model is not on this worker")


@pytest.mark.slow
def test_a_failing_worker_is_one_indexing_error(spec: IndexSpec) -> None:
    import ray.cloudpickle

    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        with pytest.raises(IndexingError, match="embedding failed in a Ray worker") as e:
            build_index(spec, engine="ray", embedder=_BrokenEmbedder())  # type: ignore[arg-type]
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
    assert "the model is not on this worker" in str(e.value) and "\n" not in str(e.value)
    assert Catalog("sample").versions() == []  # nothing published, like a failed local build


@pytest.mark.slow
def test_ray_build_matches_local_on_a_python_docs_slice(tmp_path: Path) -> None:
    src = SHARED / "python-docs" / "corpus.jsonl"
    if not src.is_file():
        pytest.skip("shared/datasets/python-docs is not here")
    lines = src.read_text(encoding="utf-8").splitlines()[:40]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = yaml.safe_load((REPO / "indexing/specs/python-docs.yaml").read_text())
    raw["sources"][0]["path"] = str(tmp_path / "docs" / "corpus.jsonl")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    local, ray = assert_same_build(load_index_spec(spec_file), tmp_path)
    assert local.documents == 40 and ray.chunks > 256  # more than one embedding part


@pytest.mark.slow
def test_a_killed_ray_build_keeps_its_finished_parts(tmp_path: Path) -> None:
    """SIGKILL a ray build once the driver has cached some parts: nothing is published, and
    the next build (local) embeds only what was missing and yields the same version."""
    from tests.indexing.test_crash_concurrency import make_corpus

    corpus, home = tmp_path / "corpus", tmp_path / "home"
    make_corpus(corpus, 160)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {"name": "crash", "sources": [{"path": str(corpus)}], "embedder": {"batch_size": 1}}
        )
    )
    env = os.environ | {"GENAIOPS_HOME": str(home)}
    cmd = [sys.executable, "-m", "genaiops.cli", "index", "build", "--spec", str(spec_file)]
    proc = subprocess.Popen(
        [*cmd, "--engine", "ray", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cache_file = home / "cache" / "embeddings.sqlite"
    cached = 0
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline and cached == 0:
        time.sleep(0.2)
        if cache_file.exists():
            c = EmbeddingCache(cache_file)
            cached = c.count()
            c.close()
    assert proc.poll() is None, "the build finished before a part was cached"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert Catalog("crash", home=home).versions() == []
    spec = load_index_spec(spec_file)
    r = build_index(spec, home=home, engine="local")
    assert r.reused >= cached > 0 and r.embedded == r.chunks - r.reused
    assert not [p for p in Catalog("crash", home=home).versions_dir.iterdir() if p.name[0] == "."]
