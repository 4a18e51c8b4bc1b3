"""ONNX Runtime backend for the local MiniLM embedder (``embedder: {backend: onnx|onnx-int8}``).

Why not sentence-transformers' own ``backend="onnx"``: it loads through ``optimum-onnx``, whose
only release (0.1.0) requires ``transformers<4.58`` while this project runs transformers 5
(``optimum.exporters`` fails to import there).  So the export is done here with
``torch.onnx.export`` from the packaged weights (offline), the int8 variant with
``onnxruntime.quantization.quantize_dynamic`` (per-channel, MatMul weights), and inference
replicates the model's sentence-transformers pipeline exactly (Transformer -> mean pooling ->
L2 normalise, max 256 wordpieces); the tests hold it to cosine >= 0.99 / 0.97 against torch.

Exports are cached beside the other derived weights, under
``$GENAIOPS_MODEL_CACHE`` (default ``$GENAIOPS_HOME/cache/models``)
``/onnx/<model>@<package version>/<backend>/``, and
published by renaming a finished temporary folder, so a killed export never leaves a half model
behind.  One ``InferenceSession`` per (backend, model) per process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from genaiops.errors import ProviderUnavailable
from genaiops.providers._torch import model_loading
from genaiops.settings import get_settings

__all__ = ["ONNX_BACKENDS", "OnnxSession", "export_dir", "get_session", "onnx_threads"]

ONNX_BACKENDS = ("onnx", "onnx-int8")
_MODEL_FILE = "model.onnx"
_MAX_LEN = 256

_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str, str, str], OnnxSession] = {}


def onnx_threads() -> int:
    """Intra-op threads: ``GENAIOPS_TORCH_THREADS`` if set, else min(physical cores, 4).

    More threads than physical cores (or than 4 for a 22M-parameter model) only adds
    synchronisation cost on the small shared CPUs this runs on.
    """
    n = get_settings().torch_threads
    if n:
        return n
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover - psutil comes with accelerate
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def export_dir(backend: str, model_key: str) -> Path:
    """Where the exported model for ``backend`` lives (``model_key`` names weights + version)."""
    return get_settings().model_cache_dir / "onnx" / model_key / backend


def _publish(final: Path, build: Any) -> None:
    """Run ``build(tmpdir)`` and rename the finished folder to ``final`` (atomic on one fs)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _MODEL_FILE).exists():  # lost a race only if the winner finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _export_fp32(weights: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    class _Hidden(torch.nn.Module):
        """Keyword call into the HF model (its positional order changes between releases)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = AutoModel.from_pretrained(str(weights), local_files_only=True).eval()

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    model = _Hidden().eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    axes = {0: "batch", 1: "seq"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape-dependent Python branches
        torch.onnx.export(
            model,
            args,
            str(out / _MODEL_FILE),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=17,
            dynamo=False,
        )


def ensure_export(backend: str, model_key: str, weights: Path) -> Path:
    """The exported model file for ``backend``, exporting (once) if the cache lacks it."""
    final = export_dir(backend, model_key)
    path = final / _MODEL_FILE
    if path.exists():
        return path
    if backend == "onnx":
        _publish(final, lambda tmp: _export_fp32(weights, tmp))
    elif backend == "onnx-int8":
        fp32 = ensure_export("onnx", model_key, weights)

        def build(tmp: Path) -> None:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # per-channel weights on the MatMuls only: per-tensor int8 (or quantizing the
            # embedding Gather) drops cosine to torch to ~0.96; this keeps it >= 0.99
            quantize_dynamic(
                str(fp32),
                str(tmp / _MODEL_FILE),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )

        _publish(final, build)
    else:  # pragma: no cover - EmbedderConfig validates the backend
        raise ValueError(f"unknown onnx backend {backend!r}")
    return path


class OnnxSession:
    """One ONNX Runtime session plus the model's tokenizer; encodes like the ST pipeline."""

    def __init__(self, path: Path, tokenizer: Any):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - onnxruntime is a dependency
            msg = "onnxruntime is not installed (pip install onnxruntime)"
            raise ProviderUnavailable(msg) from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = onnx_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if os.environ.get("GENAIOPS_ONNX_SPIN", "0") != "1":
            # idle workers sleep instead of spinning: on a small shared CPU spinning threads
            # burn the cores other processes (and this one's next op) need
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = tokenizer
        # a fast tokenizer's padding/truncation state is mutable: one caller at a time
        self._tok_lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, float32, one row per text (in order)."""
        out: list[np.ndarray] = []
        # sort by length so each batch pads little; restore the order at the end
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            with self._tok_lock:
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=_MAX_LEN,
                    return_tensors="np",
                )
            feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self._inputs}
            hidden = self.session.run(None, feed)[0]
            mask = enc["attention_mask"].astype(np.float32)[:, :, None]
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            out.append(pooled)
        vecs = np.empty((len(texts), out[0].shape[1]), dtype=np.float32)
        vecs[order] = np.vstack(out)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(vecs / norms, dtype=np.float32)


def get_session(backend: str, model_key: str, weights: Path) -> OnnxSession:
    """The process-wide session for (backend, model), exporting on first use."""
    key = (backend, model_key, str(export_dir(backend, model_key)))
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            with model_loading():
                from transformers import AutoTokenizer

                # its own tokenizer, not shared with the torch path
                tokenizer = AutoTokenizer.from_pretrained(str(weights), local_files_only=True)
                sess = OnnxSession(ensure_export(backend, model_key, weights), tokenizer)
            _SESSIONS[key] = sess
        return sess
