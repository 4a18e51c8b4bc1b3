"""torch process settings and the model-loading lock shared by the local providers."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from genaiops.settings import get_settings

__all__ = ["apply_torch_threads", "model_loading"]

_LOADING = threading.RLock()


@contextlib.contextmanager
def model_loading() -> Iterator[None]:
    """Held while a local model or tokenizer loads: one load at a time per process.

    transformers resolves its names lazily on first access, and two threads doing that at once
    race: a gateway loading the base generator while a request loaded a candidate failed with
    "cannot import name 'AutoModelForCausalLM' from 'transformers'".  Two loads at once would
    also only compete for the same cores.  Re-entrant, and taken innermost (after a caller's own
    cache lock), so it never sits inside another lock's wait.
    """
    with _LOADING:
        yield


def apply_torch_threads() -> None:
    """Honour ``GENAIOPS_TORCH_THREADS`` (once per process) before a local model loads.

    On a small shared CPU, one thread per process keeps single-query latency low when other
    processes compete for the cores; torch's default is one thread per core.
    """
    n = get_settings().torch_threads
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
