"""The flows under promptflow itself (slow: pf starts a local service and imports a lot)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluation.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
PF = str(Path(sys.executable).parent / "pf")

pytestmark = pytest.mark.slow


GENAIOPS = str(Path(sys.executable).parent / "genaiops")


@pytest.fixture
def pf_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_index: Path, fake_gateway: FakeOpenAI
) -> dict[str, str]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # keyring and promptflow config go here
    monkeypatch.setenv("PF_HOME_DIRECTORY", str(tmp_path / "pf-home"))
    monkeypatch.setenv("PF_DISABLE_TRACING", "true")
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    env = dict(os.environ)
    yield env
    subprocess.run([PF, "service", "stop"], env=env, capture_output=True, timeout=60)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pf_flow_test(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """``pf flow test`` of flows/rag on the TLS question, as a user would type it."""
    question = "question=Which TLS version does Lumen use?"
    return subprocess.run(
        [PF, "flow", "test", "--flow", str(REPO / "flows/rag"), "--inputs", question, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_headless_newcomer_runs_connections_then_pf_flow_test(
    tmp_path: Path, sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    """A clean environment (HOME in a tmp dir, nothing exported about keyrings or promptflow):
    `genaiops flow connections` then a plain `pf flow test` works (issue 12.9)."""
    home = tmp_path / "newcomer"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GENAIOPS_HOME": str(sample_index),
        "GENAIOPS_GATEWAY_URL": fake_gateway.url,
        "GENAIOPS_API_KEY": "sk-test",
    }
    service_was_up = _listening(23333)
    try:
        conn = subprocess.run(
            [GENAIOPS, "flow", "connections", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        assert conn.returncode == 0, conn.stdout[-2000:] + conn.stderr[-2000:]
        info = json.loads(conn.stdout)
        rc = home / ".config/python_keyring/keyringrc.cfg"
        assert str(rc) in info["configured"]
        assert "keyrings.alt.file.PlaintextKeyring" in rc.read_text()
        assert service_was_up or not _listening(23333)  # genaiops stopped what it started
        out = _pf_flow_test(env)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert "StoreConnectionEncryptionKeyError" not in out.stdout + out.stderr
        result = json.loads(out.stdout[out.stdout.index("{") :])
        assert result["citations"][0]["doc_id"] == "guides/security.pdf"
        assert fake_gateway.requests and fake_gateway.requests[-1]["model"] == "genaiops-local"
    finally:
        subprocess.run([PF, "service", "stop"], env=env, capture_output=True, timeout=60)


def test_connection_then_pf_flow_test_and_validate(
    pf_env: dict[str, str], fake_gateway: FakeOpenAI
) -> None:
    from evaluation.runtime.pf_runner import ensure_connection

    info = ensure_connection()
    assert info["base_url"] == fake_gateway.url
    out = _pf_flow_test(pf_env, "--variant", "${answer_prompt.terse}")
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
    # each line's own latency from promptflow's line records (not the total divided evenly)
    assert all(ln.latency_s > 0 for ln in lines)
    assert lines[0].latency_s != lines[1].latency_s


def test_chat_and_eval_flows_run_under_pf(pf_env: dict[str, str], fake_gateway: FakeOpenAI) -> None:
    """The other two real flows load under promptflow too (the genaiops runner's tests run
    them in tests/flows/test_flow_definition.py)."""
    # the connection is made by the CLI in this test's promptflow home (promptflow fixes its
    # home when first imported, so an in-process call could write to an earlier test's home)
    conn = subprocess.run(
        [GENAIOPS, "flow", "connections"], env=pf_env, capture_output=True, text=True, timeout=300
    )
    assert conn.returncode == 0, conn.stdout[-2000:] + conn.stderr[-2000:]
    history = json.dumps(
        [{"inputs": {"question": "How do I install Lumen?"}, "outputs": {"answer": "Run it."}}]
    )
    chat = subprocess.run(
        [PF, "flow", "test", "--flow", str(REPO / "flows/chat"), "--inputs",
         "question=Does Lumen run on Windows?", f"chat_history={history}"],
        env=pf_env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert chat.returncode == 0, chat.stdout[-2000:] + chat.stderr[-2000:]
    out = json.loads(chat.stdout[chat.stdout.index("{") :])
    assert out["answer"] and out["standalone_question"]
    assert len(fake_gateway.requests) == 2  # the rewrite (history given) and the answer
    ev = subprocess.run(
        [PF, "flow", "test", "--flow", str(REPO / "flows/eval_rag"), "--inputs",
         "question=Which TLS version?", "answer=Lumen uses TLS 1.3.", "ground_truth=TLS 1.3"],
        env=pf_env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    scores = json.loads(ev.stdout[ev.stdout.index("{") :])["scores"]
    assert 0 < scores["rougeL"] <= 1
