from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from indexing import IndexSpec, load_index_spec
from tests.conftest import SAMPLE_CORPUS, SAMPLE_SPEC


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A private copy of the sample corpus that tests may edit."""
    dst = tmp_path / "corpus"
    shutil.copytree(SAMPLE_CORPUS, dst)
    return dst


@pytest.fixture
def spec(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> IndexSpec:
    monkeypatch.setenv("GENAIOPS_SAMPLE_CORPUS", str(corpus))
    return load_index_spec(SAMPLE_SPEC)
