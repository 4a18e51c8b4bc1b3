"""The flows under promptflow itself (slow: pf starts a local service and imports a lot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluation.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
PF = str(Path(sys.executable).parent / "pf")

pytestmark = pytest.mark.slow


@pytest.fixture
def pf_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_index: Path, fake_gateway: FakeOpenAI
) -> dict[str, str]:
    monkeypatch.setenv("PF_HOME_DIRECTORY", str(tmp_path / "pf-home"))
    monkeypatch.setenv("PF_DISABLE_TRACING", "true")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "evaluation.runtime.pf_keyring.FileKeyring")
    env = dict(os.environ)
    yield env
    subprocess.run([PF, "service", "stop"], env=env, capture_output=True, timeout=60)


def test_connection_then_pf_flow_test_and_validate(
    pf_env: dict[str, str], fake_gateway: FakeOpenAI
) -> None:
    from evaluation.runtime.pf_runner import ensure_connection

    info = ensure_connection()
    assert info["base_url"] == fake_gateway.url
    out = subprocess.run(
        [
            PF,
            "flow",
            "test",
            "--flow",
            str(REPO / "flows/rag"),
            "--inputs",
            "question=Which TLS version does Lumen use?",
            "--variant",
            "${answer_prompt.terse}",
        ],
        env=pf_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["citations"][0]["doc_id"] == "guides/security.pdf"
    assert fake_gateway.requests and fake_gateway.requests[-1]["model"] == "genaiops-local"
    v = subprocess.run(
        [PF, "flow", "validate", "--source", str(REPO / "flows/chat")],
        env=pf_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert v.returncode == 0 and "Succeeded" in v.stdout


def test_pf_batch_feeds_the_same_scoring(
    pf_env: dict[str, str], tmp_path: Path, fake_gateway: FakeOpenAI
) -> None:
    from evaluation.runtime.pf_runner import ensure_connection, pf_batch

    ensure_connection()
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": q}) + "\n"
            for q in ("Which TLS version does Lumen use?", "Does Lumen run on Windows?")
        )
    )
    lines = pf_batch(
        REPO / "flows/rag", data, {"question": "${data.question}"}, "answer_prompt.cited"
    )
    assert [ln.index for ln in lines] == [0, 1]
    assert all(ln.error is None and ln.outputs["answer"] for ln in lines)
    assert lines[1].retrieved[0]["doc_id"] == "faq-windows"
