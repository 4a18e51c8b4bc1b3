"""The shared YAML spec reader refuses what no spec looks like, each as one SpecError line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from genaiops.errors import SpecError
from genaiops.specs import MAX_DEPTH, MAX_SPEC_BYTES, load_yaml_model, read_yaml


class Small(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    items: list[str] = []


def one_line_error(path: Path | str) -> str:
    with pytest.raises(SpecError) as e:
        read_yaml(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_dev_zero_is_refused_without_reading() -> None:
    assert "not a regular file" in one_line_error("/dev/zero")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in one_line_error(fifo)


def test_oversized_spec_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_text("name: x\n# " + "x" * MAX_SPEC_BYTES + "\n")
    assert "larger than 1024 KiB" in one_line_error(p)


@pytest.mark.parametrize(
    "text",
    [
        "sources: " + "[" * 5000 + "]" * 5000 + "\n",  # flow style
        "a:\n  " + "- " * 5000 + "x\n",  # block style
        "a: " + "{b: " * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1) + "\n",  # parses, too deep
    ],
    ids=["flow-5000", "block-5000", "just-over-limit"],
)
def test_deep_nesting_is_one_clear_error(tmp_path: Path, text: str) -> None:
    p = tmp_path / "deep.yaml"
    p.write_text(text)
    assert "nested deeper than" in one_line_error(p)


def test_alias_expansion_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    assert "more than" in one_line_error(p)


def test_invalid_yaml_and_encoding_are_one_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\nother: 1\n")
    assert "invalid YAML" in one_line_error(p)
    p.write_bytes(b"name: caf\xe9\n")
    assert "not UTF-8" in one_line_error(p)
    assert "file not found" in one_line_error(tmp_path / "missing.yaml")


def test_ordinary_spec_still_loads(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text("name: x\nitems: [a, b]\n")
    assert load_yaml_model(p, Small) == Small(name="x", items=["a", "b"])
