"""Test-wide fixtures: network blocked (loopback allowed), state in a temp GENAIOPS_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from genaiops.settings import reset_settings

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "datasets" / "sample" / "corpus"
SAMPLE_SPEC = REPO / "indexing" / "specs" / "sample.yaml"
SHARED = REPO.parent / "shared" / "datasets"

# Dequantized model weights are shared by every test (and kept between runs).
os.environ.setdefault("GENAIOPS_MODEL_CACHE", str(REPO / ".genaiops" / "test-models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def pytest_configure(config: pytest.Config) -> None:
    # Real network is never used by unit tests; loopback servers (gateway, redis) are fine.
    from pytest_socket import socket_allow_hosts

    socket_allow_hosts(["127.0.0.1", "localhost", "::1"], allow_unix_socket=True)


@pytest.fixture(autouse=True)
def genaiops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "genaiops-home"
    monkeypatch.setenv("GENAIOPS_HOME", str(home))
    reset_settings()
    yield home
    reset_settings()


@pytest.fixture(scope="session")
def local_ray() -> Iterator[object]:
    """One local Ray for the whole test run, started only by the tests that ask for it."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from genaiops.ray_runtime import connect

    started = not ray.is_initialized()
    if started:
        os.environ.pop("RAY_ADDRESS", None)  # never a real cluster from the tests
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield connect()
    if started:
        ray.shutdown()
