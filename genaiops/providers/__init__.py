"""Model providers behind small interfaces: embeddings and text generation.

>>> from genaiops.providers import EmbedderConfig, make_embedder
>>> emb = make_embedder(EmbedderConfig())          # local all-MiniLM-L6-v2, offline
>>> emb.embed(["hello"]).shape                     # doctest: +SKIP
(1, 384)
"""

from genaiops.providers.embeddings import (
    Embedder,
    EmbedderConfig,
    LocalEmbedder,
    OpenAIEmbedder,
    make_embedder,
)
from genaiops.providers.generator import (
    ChatMessage,
    Generation,
    Generator,
    LocalGenerator,
    get_local_generator,
)

__all__ = [
    "ChatMessage",
    "Embedder",
    "EmbedderConfig",
    "Generation",
    "Generator",
    "LocalEmbedder",
    "LocalGenerator",
    "OpenAIEmbedder",
    "get_local_generator",
    "make_embedder",
]
