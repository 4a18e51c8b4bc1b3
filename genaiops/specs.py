"""Load YAML specs into pydantic models; errors name the file, the key and what was expected.

>>> spec = load_yaml_model("indexing/specs/sample.yaml", IndexSpec)   # doctest: +SKIP

A spec is a small, hand-written file, so the reader refuses what no spec looks like before it
can hurt: anything but a regular file (``/dev/zero``, a FIFO), more than :data:`MAX_SPEC_BYTES`,
or YAML nested deeper than :data:`MAX_DEPTH` / with more than :data:`MAX_NODES` values (alias
"billion laughs" expansions count every time they are reached).  Each is one :class:`SpecError`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from genaiops.errors import SpecError

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SPEC_BYTES",
    "format_validation_error",
    "load_yaml_model",
    "read_yaml",
]

M = TypeVar("M", bound=BaseModel)

MAX_SPEC_BYTES = 1 << 20
"""1 MiB: the largest spec file read (real specs are a few KiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings/lists accepted."""
MAX_NODES = 200_000
"""Most values (scalars, lists, mappings; shared aliases counted each time) accepted."""


def _read_spec_bytes(p: Path) -> bytes:
    """At most ``MAX_SPEC_BYTES`` of a regular file; never blocks on a FIFO or device."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as e:
        raise SpecError(str(p), [("", "file not found")]) from e
    except OSError as e:
        raise SpecError(str(p), [("", f"cannot read file: {e.strerror or e}")]) from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise SpecError(str(p), [("", "not a regular file")])
        try:
            data = f.read(MAX_SPEC_BYTES + 1)
        except OSError as e:
            raise SpecError(str(p), [("", f"cannot read file: {e.strerror or e}")]) from e
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(str(p), [("", f"larger than {MAX_SPEC_BYTES // 1024} KiB (not a spec)")])
    return data


def _check_shape(path: str, data: Any) -> None:
    """Refuse data nested deeper than MAX_DEPTH or larger than MAX_NODES (iteratively)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise SpecError(path, [("", f"more than {MAX_NODES} values (not a spec)")])
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise SpecError(path, [("", f"nested deeper than {MAX_DEPTH} levels")])
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def read_yaml(path: str | Path) -> Any:
    """Parse one YAML spec file safely (``yaml.safe_load``) within the limits above."""
    p = Path(path)
    data = _read_spec_bytes(p)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(str(p), [("", f"not UTF-8 text (byte {e.start})")]) from e
    try:
        raw = yaml.safe_load(text)
    except RecursionError as e:
        raise SpecError(str(p), [("", f"nested deeper than {MAX_DEPTH} levels")]) from e
    except yaml.YAMLError as e:
        raise SpecError(str(p), [("", "invalid YAML: " + " ".join(str(e).split()))]) from e
    _check_shape(str(p), raw)
    return raw


def format_validation_error(err: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors as ``(dotted key, message)`` pairs, without the offending values."""
    problems = []
    for item in err.errors():
        key = ".".join(str(x) for x in item["loc"])
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        elif item["type"] == "missing":
            msg = "required key is missing"
        elif item["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        problems.append((key, msg))
    return problems


def load_yaml_model(path: str | Path, model: type[M], data: Any = None) -> M:
    """Validate ``path`` (or already-parsed ``data`` from it) as ``model``."""
    raw = read_yaml(path) if data is None else data
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(str(path), [("", f"expected a mapping, got {type(raw).__name__}")])
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise SpecError(str(path), format_validation_error(e)) from e
