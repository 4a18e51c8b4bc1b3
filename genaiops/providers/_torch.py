"""torch process settings shared by the local providers."""

from __future__ import annotations

from genaiops.settings import get_settings

__all__ = ["apply_torch_threads"]


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
