"""The prompt bound admission reserves: every billed field counted, an upper bound of what an
upstream reports, images by OpenAI's tile rule, unboundable content refused."""

from __future__ import annotations

import base64
import io
import json
import random

import pytest

from gateway.config import default_config
from gateway.counting import IMAGE_MAX_TOKENS, admission_tokens_sync, image_tokens, prompt_bound
from gateway.errors import InvalidRequest
from gateway.testing import openai_prompt_tokens
from tests.gateway.support import upstream_config

USER = {"role": "user", "content": "Say hello"}


def _body(*messages, **kw):
    return {"model": "gpt-test", "messages": list(messages) or [USER], **kw}


def test_bound_is_never_below_the_cookbook_count():
    """Random conversations (names, every role, unicode, digits): bound >= OpenAI's count and
    >= the local generator's own formula (4 per message + 2)."""
    rnd = random.Random(7)
    alphabet = ["hello", " world", "123456", "ü", "日本語", "\n", "  ", "<|im_start|>", "{}", "é"]
    for _ in range(300):
        msgs = []
        for _ in range(rnd.randint(1, 6)):
            m = {
                "role": rnd.choice(["system", "user", "assistant", "tool", "developer"]),
                "content": "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30))),
            }
            if rnd.random() < 0.3:
                m["name"] = rnd.choice(["bob", "x_1", "Zoë"])
            msgs.append(m)
        body = _body(*msgs)
        bound = prompt_bound(body)
        assert bound >= openai_prompt_tokens(msgs)
        assert prompt_bound(body, rule="bytes") >= len(json.dumps(msgs).encode()) // 2


def test_every_non_text_field_counts():
    """Today's estimate counted only message text: each of these fields must add to the bound."""
    base = prompt_bound(_body())
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Find a record " * 50,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps({"q": "x" * 400})},
            }
        ],
    }
    cases = {
        "tools": _body(tools=[tool]),
        "functions": _body(functions=[tool["function"]]),
        "tool_calls": _body(
            USER, call, {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
        ),
        "name": _body({**USER, "name": "a_rather_long_participant_name"}),
        "image": _body(
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/i"}}]}
        ),
        "response_format": _body(
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": tool}}
        ),
        "unknown top-level field": _body(prediction={"type": "content", "content": "y" * 300}),
        "unknown message field": _body({**USER, "extra": "z" * 100}),
    }
    for what, body in cases.items():
        least = 6 if what == "name" else 20  # the name is 7 tokens + 1
        assert prompt_bound(body) > base + least, what
    docs = prompt_bound(_body(), ["a document " * 40])
    assert docs > base + 40


def test_a_900kb_tools_definition_is_counted_in_full():
    tool = {"type": "function", "function": {"name": "f", "description": "lorem ipsum " * 75_000}}
    assert len(json.dumps(tool)) > 890_000
    assert prompt_bound(_body(tools=[tool])) > 150_000


def _png(w: int, h: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_image_tokens_follow_the_published_tile_rule():
    # OpenAI's worked examples: 1024x1024 high = 765; 2048x4096 high = 1105; low = 85
    assert image_tokens(1024, 1024, "high") == 765
    assert image_tokens(2048, 4096, "high") == 1105
    assert image_tokens(4096, 8192, "low") == 85
    assert image_tokens(None, None) == IMAGE_MAX_TOKENS == 1445
    assert max(image_tokens(w, h) for w in range(64, 5000, 97) for h in range(64, 5000, 89)) <= (
        IMAGE_MAX_TOKENS
    )

    def part(url, detail=None):
        spec = {"url": url, **({"detail": detail} if detail else {})}
        return _body({"role": "user", "content": [{"type": "image_url", "image_url": spec}]})

    text_only = prompt_bound(_body({"role": "user", "content": []}))
    assert prompt_bound(part(_png(512, 512))) - text_only == 85 + 170 + 1  # read from the header
    assert prompt_bound(part(_png(512, 512), "low")) - text_only == 85 + 1
    assert prompt_bound(part("https://example.com/cat.jpg")) - text_only == 1445 + 1
    assert prompt_bound(part("data:image/png;base64,not-an-image")) - text_only == 1445 + 1


@pytest.mark.parametrize(
    "content, param",
    [
        ([{"type": "file", "file": {"file_data": "JVBERi0x"}}], "messages.0.content.0.type"),
        ([{"type": "video", "video": "x"}], "messages.0.content.0.type"),
        ([{"type": "input_audio", "input_audio": {}}], "messages.0.content.0"),
        (["just a string part"], "messages.0.content.0"),
    ],
)
def test_content_that_cannot_be_bounded_is_refused(content, param):
    with pytest.raises(InvalidRequest) as e:
        prompt_bound(_body({"role": "user", "content": content}))
    assert e.value.param == param and e.value.status == 400
    with pytest.raises(InvalidRequest) as e:
        prompt_bound(_body({"role": "assistant", "content": "", "audio": {"id": "audio_1"}}))
    assert e.value.param == "messages.0.audio"


def test_audio_is_bounded_by_its_data():
    data = base64.b64encode(b"\0" * 3000).decode()
    part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
    assert prompt_bound(_body({"role": "user", "content": [part]})) > len(data)


def test_bytes_rule_bounds_a_tokenizer_that_splits_digits():
    """SmolLM2 makes one token per digit where cl100k makes one per three: the bytes rule
    (the local deployment's) still bounds it."""
    digits = "1234567890 " * 100
    body = _body({"role": "user", "content": digits})
    assert prompt_bound(body) < len(digits)  # cl100k groups digits
    assert prompt_bound(body, rule="bytes") > len(digits)


def test_local_deployment_window_is_smollm2s_and_counts_bytes():
    cfg = default_config()
    local = cfg.deployment("local-smollm2")
    assert local.context_window == 8192 and local.token_rule() == "bytes"
    alias = cfg.alias("genaiops-local")
    ok = _body({"role": "user", "content": "a" * 8000})
    assert admission_tokens_sync(cfg, alias, ok) <= 8192
    with pytest.raises(InvalidRequest) as e:
        admission_tokens_sync(cfg, alias, _body({"role": "user", "content": "word " * 380_000}))
    err = e.value.body()["error"]
    assert err["code"] == "context_length_exceeded" and err["param"] == "messages"
    assert "8192" in err["message"] and "1900" in err["message"]


def test_alias_bound_is_the_largest_over_its_deployments():
    cfg = upstream_config(
        deployments=[
            {"name": "a", "backend": "openai_compatible", "base_url": "http://a/v1"},
            {
                "name": "b",
                "backend": "openai_compatible",
                "base_url": "http://b/v1",
                "prompt_count": "bytes",
            },
        ],
        models=[{"name": "m", "deployments": [{"deployment": "a"}], "fallback": ["b"]}],
    )
    body = _body({"role": "user", "content": "hello world " * 50})
    assert admission_tokens_sync(cfg, cfg.alias("m"), body) == prompt_bound(body, rule="bytes")


def test_deeply_nested_extra_field_is_a_400_not_a_crash():
    deep: list = []
    cur = deep
    for _ in range(100_000):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    with pytest.raises(InvalidRequest):
        prompt_bound(_body(extra=deep))
