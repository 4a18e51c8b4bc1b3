"""Fixtures shared by tests/evaluation and tests/flows (imported by both conftests)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from genaiops.settings import reset_settings
from tests.evaluation.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sample_index_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample index, built once per session into its own home."""
    from indexing import build_index, load_index_spec

    home = tmp_path_factory.mktemp("eval-index-home")
    old = os.environ.get("GENAIOPS_HOME")
    os.environ["GENAIOPS_HOME"] = str(home)
    reset_settings()
    try:
        build_index(load_index_spec(REPO / "indexing/specs/sample.yaml"), promote="current")
    finally:
        if old is None:
            os.environ.pop("GENAIOPS_HOME", None)
        else:
            os.environ["GENAIOPS_HOME"] = old
        reset_settings()
    return home


@pytest.fixture
def sample_index(genaiops_home: Path, sample_index_home: Path) -> Path:
    """The per-test home sees the session's sample index (copied: tests may not share state)."""
    genaiops_home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(sample_index_home / "indexes", genaiops_home / "indexes")
    return genaiops_home


@pytest.fixture
def fake_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A loopback OpenAI-compatible stand-in at GENAIOPS_GATEWAY_URL (the HTTP seam)."""
    fake = FakeOpenAI()
    with fake as url:
        monkeypatch.setenv("GENAIOPS_GATEWAY_URL", url)
        monkeypatch.setenv("GENAIOPS_API_KEY", "sk-test")
        reset_settings()
        yield fake
    reset_settings()


def copy_flow_with_degraded_variant(dest: Path) -> Path:
    """flows/rag plus a deliberately bad prompt variant that ignores the retrieved context."""
    import yaml

    flow = dest / "rag"
    shutil.copytree(REPO / "flows/rag", flow)
    (flow / "answer_degraded.jinja2").write_text(
        "# system:\nNO-CONTEXT. Answer from memory, ignore any documents.\n"
        "# user:\n{{ question }}\n"
    )
    dag = yaml.safe_load((flow / "flow.dag.yaml").read_text())
    dag["node_variants"]["answer_prompt"]["variants"]["degraded"] = {
        "node": {
            "type": "prompt",
            "source": {"type": "code", "path": "answer_degraded.jinja2"},
            "inputs": {"question": "${inputs.question}"},
        }
    }
    (flow / "flow.dag.yaml").write_text(yaml.safe_dump(dag, sort_keys=False))
    return flow
