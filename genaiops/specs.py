"""Load YAML specs into pydantic models; errors name the file, the key and what was expected.

>>> spec = load_yaml_model("indexing/specs/sample.yaml", IndexSpec)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from genaiops.errors import SpecError

__all__ = ["format_validation_error", "load_yaml_model", "read_yaml"]

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SpecError(str(p), [("", "file not found")]) from e
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(str(p), [("", f"cannot read file: {e}")]) from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(str(p), [("", f"invalid YAML: {e}")]) from e


def format_validation_error(err: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in err.errors():
        key = ".".join(str(x) for x in item["loc"])
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        elif item["type"] == "missing":
            msg = "required key is missing"
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
