"""The usage examples in evaluation's docstrings run as tests (those marked +SKIP need a
gateway or a built index)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "runtime.dag",
    "runtime.data",
    "runtime.flow",
    "runtime.run_meta",
    "runtime.flowtools",
    "gate",
    "judges",
    "runtime.llm",
    "metrics",
    "stats",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"evaluation.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
