"""Helpers shared by the benchmark scripts: machine facts, load, percentiles, result files.

Benchmarks keep all their state (GENAIOPS_HOME, indexes, caches) under ``bench/results/``
(gitignored), never in the user's ``.genaiops``; datasets are read in place from ``../shared``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "datasets"

if str(ROOT) not in sys.path:  # run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


def python_docs_dir() -> Path:
    return Path(os.environ.get("PYTHON_DOCS_DIR") or SHARED / "python-docs")


def scifact_dir() -> Path:
    return Path(os.environ.get("SCIFACT_DIR") or SHARED / "scifact")


def machine() -> dict[str, Any]:
    """CPU model, cores and RAM from /proc, plus the load average right now."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        ram = f"{kb / 1024**2:.1f} GiB"
    except (OSError, StopIteration):
        ram = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram": ram,
        "python": platform.python_version(),
        "load": load(),
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "n": len(seconds),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def torch_threads(n: int = 1) -> int:
    """Pin torch's intra-op threads for query-at-a-time embedding.

    On this shared, oversubscribed 2-core machine the default (2 threads) makes one query
    embedding ~15x slower than 1 thread (OpenMP threads wait for each other at every op while
    other processes hold the cores); batch builds are unaffected.  ``BENCH_TORCH_THREADS``
    overrides (0 = torch's default)."""
    import torch

    n = int(os.environ.get("BENCH_TORCH_THREADS", n))
    if n > 0:
        torch.set_num_threads(n)
    return int(torch.get_num_threads())


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
