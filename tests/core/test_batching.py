"""The continuous batcher (issue #9): requests join and leave the running batch, on the real model.

Greedy decoding must not depend on the company a request keeps: the tokens of each request
decoded inside a batch (joined at different steps, prompts of different lengths, so the cache
is left-padded both ways) equal those of the same request run alone; each request's own
``max_tokens`` is honoured; a cancelled one leaves at the next step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from genaiops.providers import ChatMessage, get_local_generator
from genaiops.providers.batching import BatchRequest
from genaiops.providers.generator import LocalGenerator

COUNT = [ChatMessage("user", "Count from 1 to 2000, one number per line.")]
PROMPTS = [
    [ChatMessage("user", "Say hi.")],
    [
        ChatMessage("system", "Answer using only the context."),
        ChatMessage(
            "user",
            "Context: The capital of Freedonia is Zorbatown. It lies on the river Zor, which "
            "floods each spring; the old town was rebuilt twice.\n\n"
            "Question: What is the capital of Freedonia?",
        ),
    ],
    [ChatMessage("user", "Name three colours.")],
    [ChatMessage("user", "What is 2 + 2? Explain briefly.")],
]
MAX_TOKENS = [5, 6, 1, 4]


def _until(cond: Callable[[], bool], timeout: float = 60) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "condition never held"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def fp32() -> LocalGenerator:
    """A float32 copy of the model: in bfloat16 batched matmuls round differently."""
    return LocalGenerator(dtype="float32")


def test_batched_greedy_output_equals_alone_and_max_tokens_is_per_request(
    fp32: LocalGenerator,
) -> None:
    gen = fp32
    alone = [
        gen.submit(p, max_tokens=m).wait().completion_ids
        for p, m in zip(PROMPTS, MAX_TOKENS, strict=True)
    ]
    sched = gen.batcher()
    steps, rows = sched.steps, sched.rows_decoded
    # a long request is decoding when the others arrive: they join the running batch
    long = gen.submit(COUNT, max_tokens=12)
    _until(lambda: sched.running > 0)
    together = [gen.submit(p, max_tokens=m) for p, m in zip(PROMPTS, MAX_TOKENS, strict=True)]
    done = [r.wait(timeout=300) for r in together]
    long.wait(timeout=300)
    assert [r.completion_ids for r in done] == alone
    for r, m in zip(done, MAX_TOKENS, strict=True):
        assert len(r.completion_ids) <= m
        assert r.finish_reason == ("length" if len(r.completion_ids) == m else "stop")
    assert len(long.completion_ids) == 12 and long.finish_reason == "length"
    assert sched.rows_decoded - rows > sched.steps - steps  # some steps decoded several rows


def test_cancelled_request_leaves_the_batch_and_the_others_go_on() -> None:
    gen = get_local_generator()
    stop = threading.Event()
    long = gen.submit(COUNT, max_tokens=2000, cancel=stop)
    short = gen.submit(COUNT, max_tokens=3)
    short.wait(timeout=300)
    assert len(short.completion_ids) == 3 and short.finish_reason == "length"
    stop.set()
    long.wait(timeout=30)
    assert 0 < len(long.completion_ids) < 2000
    _until(lambda: not gen.busy, timeout=30)


def test_a_request_cancelled_while_queued_costs_no_forward_pass() -> None:
    gen = get_local_generator()
    sched = gen.batcher()
    gone = threading.Event()
    gone.set()
    req = sched.submit(BatchRequest(ids=[1, 2, 3], max_tokens=50, cancel=gone))
    req.wait(timeout=30)
    assert req.completion_ids == [] and req.text == ""


def test_dtype_auto_is_float32_on_a_cpu_without_bf16_instructions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without AVX512-BF16/AMX torch emulates bf16 matmuls (prefill measured 6.8x slower than
    float32 on an AVX2-only EPYC): ``auto`` must pick float32 there, bfloat16 where it is native."""
    import torch

    from genaiops.providers.generator import resolve_dtype
    from genaiops.settings import reset_settings

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_dtype("auto", "cpu") == "float32"
    assert LocalGenerator().dtype == "float32"  # the default is auto; nothing is loaded here
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    assert LocalGenerator().dtype == "bfloat16"
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    assert resolve_dtype("float32", "cuda") == "float32"  # an explicit choice is kept
    monkeypatch.setenv("GENAIOPS_GENERATOR_DTYPE", "float32")
    reset_settings()
    assert LocalGenerator().dtype == "float32"


def test_roomy_cache_layer_writes_each_step_in_place_and_takes_tensors_assigned_to_it() -> None:
    """A decoding step must not copy the whole cache (transformers' DynamicLayer concatenates:
    a new storage every step); tensors the batcher assigns (merge, drop) are taken over."""
    import torch

    from genaiops.providers.batching import _roomy_layer_class

    layer = _roomy_layer_class()()
    room = layer.ROOM
    k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    keys, values = layer.update(k, v)
    assert torch.equal(keys, k) and torch.equal(values, v)
    storage = layer.keys.data_ptr()
    for _ in range(3):
        k1, v1 = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
        k, v = torch.cat([k, k1], dim=2), torch.cat([v, v1], dim=2)
        keys, values = layer.update(k1, v1)
        assert torch.equal(keys, k) and torch.equal(values, v)
        assert keys.data_ptr() == storage  # written in place
    assert layer.get_seq_length() == 8
    # the batcher drops row 0 by assigning: the next step continues from what it assigned
    layer.keys, layer.values = layer.keys[1:].clone(), layer.values[1:].clone()
    k, v = k[1:], v[1:]
    for _ in range(room + 2):  # runs out of room once on the way
        k1, v1 = torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4)
        k, v = torch.cat([k, k1], dim=2), torch.cat([v, v1], dim=2)
        keys, values = layer.update(k1, v1)
    assert torch.equal(keys, k) and torch.equal(values, v)
    assert layer.get_seq_length() == 8 + room + 2


def test_roomy_cache_layer_assembles_row_groups_right_aligned_with_zero_padding() -> None:
    import torch

    from genaiops.providers.batching import _roomy_layer_class, _runs

    layer = _roomy_layer_class()()
    a = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    b = torch.randn(1, 3, 6, 5), torch.randn(1, 3, 6, 5)
    layer.assemble([a, b], 6)
    assert layer.keys.shape == (3, 3, 6, 5) and layer.get_seq_length() == 6
    assert torch.equal(layer.keys[:2, :, 2:], a[0]) and torch.equal(layer.values[2:], b[1])
    assert not layer.keys[:2, :, :2].any() and not layer.values[:2, :, :2].any()
    k1, v1 = torch.randn(3, 3, 1, 5), torch.randn(3, 3, 1, 5)
    keys, _ = layer.update(k1, v1)
    assert keys.shape[-2] == 7 and torch.equal(keys[:, :, -1:], k1)
    assert _runs([0, 1, 2, 5, 6, 8]) == [(0, 3), (5, 7), (8, 9)] and _runs([]) == []
